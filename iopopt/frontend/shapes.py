"""Input shapes a model cannot take: one line saying so, and the shape its first layer asks for."""

from __future__ import annotations

import torch
import torch.fx
from torch import nn

__all__ = ["InputShapeError", "expected_input", "shape_error"]


class InputShapeError(ValueError):
    """Raised when :func:`trace` runs a module on an input shape it cannot take (a one-line message).

    Attributes: ``input_shape`` (the shape tried), ``reason`` (torch's own
    message, first line), ``layer`` and ``expected``: the first conv or linear
    layer's module path and the input shape it asks for (``(None, 3, None,
    None)``: 3 channels, other dimensions free; ``(None, F)``: F features
    after flattening), or None when that cannot be told.
    """

    def __init__(self, message: str, input_shape: tuple = (), reason: str = "", layer: str | None = None,
                 expected: tuple | None = None):
        super().__init__(message)
        self.input_shape = tuple(input_shape)
        self.reason = reason
        self.layer = layer
        self.expected = expected


def expected_input(gm: torch.fx.GraphModule, mods: dict | None = None) -> tuple[str, tuple] | None:
    """``(layer, shape)``: the first conv or linear layer of ``gm`` and the input shape it asks for.

    ``shape`` has None for free dimensions: ``(None, C, None, None)`` for a
    ``Conv2d`` with ``C`` input channels, ``(None, F)`` for a ``Linear`` with
    ``F`` input features (C·H·W when a flatten comes first). None when the
    graph has neither.
    """
    mods = dict(gm.named_modules()) if mods is None else mods
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        m = mods[node.target]
        if isinstance(m, nn.Conv2d):
            return str(node.target), (None, m.in_channels, None, None)
        if isinstance(m, nn.Linear):
            return str(node.target), (None, m.in_features)
    return None


def _first_line(exc: BaseException) -> str:
    """The innermost cause's message, first line (fx wraps a failing node's error in a dump of the node)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def shape_error(module: nn.Module, gm, mods: dict, input_shape: tuple, exc: BaseException) -> InputShapeError:
    reason = _first_line(exc)
    found = expected_input(gm, mods)
    layer, expected = found if found is not None else (None, None)
    msg = f"{type(module).__name__} cannot run on an input of shape {list(input_shape)}"
    if expected is not None and len(expected) == 4 and expected[1] == input_shape[1]:
        msg += f"; the channel count fits its first conv ({layer}), so the height and width do not"
    elif expected is not None and len(expected) == 4:
        msg += f"; its first conv ({layer}) takes {expected[1]} input channels"
    elif expected is not None:
        msg += f"; its first linear layer ({layer}) takes {expected[1]} input features (C·H·W)"
    return InputShapeError(f"{msg} ({reason})", input_shape, reason, layer, expected)
