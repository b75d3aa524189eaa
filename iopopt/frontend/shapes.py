"""Input shapes a model cannot take: one line saying so, and the shape its first layer asks for."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["InputShapeError", "expected_input", "run_or_explain"]


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


def _asks(mod: nn.Module) -> tuple:
    if isinstance(mod, nn.Conv2d):
        return (None, mod.in_channels, None, None)
    return (None, mod.in_features)


def _run(module: nn.Module, x: torch.Tensor) -> tuple[tuple[str, tuple] | None, BaseException | None]:
    """Run ``module`` on ``x``: (the first conv or linear layer it called and what it asks for, the error or None)."""
    names = {id(m): n for n, m in module.named_modules()}
    first: list[tuple[str, tuple]] = []

    def hook(mod, _args):
        if not first:
            first.append((names.get(id(mod), "?"), _asks(mod)))

    handles = [m.register_forward_pre_hook(hook) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            module(x)
        error = None
    except Exception as exc:  # the model's own error, whatever it is
        error = exc
    finally:
        for h in handles:
            h.remove()
    return (first[0] if first else None), error


def expected_input(module: nn.Module, x: torch.Tensor) -> tuple[str, tuple] | None:
    """``(layer, shape)``: the first conv or linear layer ``module`` calls on ``x`` and the input shape it asks for.

    ``shape`` has None for free dimensions: ``(None, C, None, None)`` for a
    ``Conv2d`` with ``C`` input channels, ``(None, F)`` for a ``Linear`` with
    ``F`` input features (C·H·W when a flatten comes first). None when it
    calls neither.
    """
    return _run(module, x)[0]


def _first_line(exc: BaseException) -> str:
    """The innermost cause's message, first line."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def run_or_explain(module: nn.Module, x: torch.Tensor) -> InputShapeError | None:
    """None when ``module`` runs on ``x``; else the :class:`InputShapeError` saying why, in one line."""
    found, exc = _run(module, x)
    if exc is None:
        return None
    input_shape = tuple(x.shape)
    reason = _first_line(exc)
    layer, expected = found if found is not None else (None, None)
    msg = f"{type(module).__name__} cannot run on an input of shape {list(input_shape)}"
    if expected is not None and len(expected) == 4 and expected[1] == input_shape[1]:
        msg += f"; the channel count fits its first conv ({layer}), so the height and width do not"
    elif expected is not None and len(expected) == 4:
        msg += f"; its first conv ({layer}) takes {expected[1]} input channels"
    elif expected is not None:
        msg += f"; its first linear layer ({layer}) takes {expected[1]} input features (C·H·W)"
    return InputShapeError(f"{msg} ({reason})", input_shape, reason, layer, expected)
