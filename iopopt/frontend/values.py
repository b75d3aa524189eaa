"""What the capture walk knows about each value of an exported graph, and how a rule turns it down.

Every value of the exported (ATen) graph becomes one of:

* :class:`T` -- a tensor of the :class:`~iopopt.model.graph.OpGraph` (the
  output of one of its nodes), possibly seen through a permutation of its
  axes: ConvNeXt computes in channels-last order, and a permute is a
  relabelling of axes, not an operator;
* :class:`Weight` -- a parameter or buffer of the module (by qualified name);
* :class:`Grouped` -- a channel-shuffle in progress (``view`` to
  (N, g, C/g, H, W), then ``transpose(1, 2)``);
* :class:`Chunk` -- a channel range of a tensor not yet taken
  (``chunk``/``split`` outputs become nodes only when used);
* :class:`Opaque` -- the output of an operator that was turned down, kept so
  that the walk goes on and reports every unsupported operator at once;
* a Python scalar, None, or a list/tuple of these.

A rule that cannot represent a node raises :class:`Reject` with the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["T", "Weight", "Grouped", "Chunk", "Opaque", "Reject", "normalize_args", "identity", "pair"]


class Reject(Exception):
    """A rule cannot represent this node; the message says why (and what would be supported)."""


def identity(n: int) -> tuple[int, ...]:
    return tuple(range(n))


@dataclass(frozen=True)
class T:
    """Output of OpGraph node ``name``: canonical ``shape``; actual axis i is canonical axis ``perm[i]``."""

    name: str
    shape: tuple[int, ...]
    perm: tuple[int, ...]

    @property
    def actual_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[p] for p in self.perm)

    @property
    def plain(self) -> bool:
        """True when the model sees the tensor in its canonical axis order."""
        return self.perm == identity(len(self.perm))

    def with_perm(self, perm: tuple[int, ...]) -> T:
        return T(self.name, self.shape, perm)


@dataclass(frozen=True)
class Weight:
    """A parameter or buffer the forward reads (``fqn`` None: a constant made inside forward)."""

    fqn: str | None
    shape: tuple[int, ...]
    buffer: bool = False

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Grouped:
    """``base`` (plain (N, C, H, W)) viewed as (N, groups, C/groups, H, W); ``swapped`` after transpose(1, 2)."""

    base: T
    groups: int
    swapped: bool = False


@dataclass(frozen=True)
class Chunk:
    """Channels ``[start, stop)`` of the plain tensor ``base``, not yet a node."""

    base: T
    start: int
    stop: int


@dataclass(frozen=True)
class Opaque:
    """The output of a rejected operator (its actual shape, or None for a non-tensor value)."""

    shape: tuple[int, ...] | None


def pair(v: Any) -> tuple[int, int]:
    """``v`` as an (h, w) pair (an int, or a one- or two-element list)."""
    if isinstance(v, int):
        return (v, v)
    v = tuple(v)
    return (v[0], v[0]) if len(v) == 1 else (v[0], v[1])


def normalize_args(node) -> dict[str, Any]:
    """The arguments of an ATen call as a dict by schema name, defaults filled in (raw fx values)."""
    schema = node.target._schema
    out: dict[str, Any] = {}
    for i, arg in enumerate(schema.arguments):
        if i < len(node.args):
            out[arg.name] = node.args[i]
        elif arg.name in node.kwargs:
            out[arg.name] = node.kwargs[arg.name]
        elif arg.has_default_value():
            out[arg.name] = arg.default_value
        else:
            out[arg.name] = None
    return out
