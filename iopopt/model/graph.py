"""Operator graphs: the model's operators, their shapes, work and weights.

An :class:`OpGraph` is what :func:`iopopt.trace` makes of a torch module: one
:class:`OpNode` per operator, recording what the cost model and the executors
need (the op kind, its shapes, FLOPs, weight and output bytes), in a fixed
topological order. This module knows nothing of torch: graphs can be built
by hand (tests do) or by any front end.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import networkx as nx

__all__ = [
    "OpKind",
    "OpNode",
    "OpGraph",
    "HEAVY_KINDS",
    "CHANNELWISE_KINDS",
    "WINDOWED_KINDS",
    "JOIN_KINDS",
    "GROUPED_KINDS",
    "MIXING_KINDS",
    "WEIGHTED_KINDS",
]


class OpKind(StrEnum):
    """What an operator does, as far as partitioning is concerned (the values are what YAML and JSON hold)."""

    INPUT = "input"
    OUTPUT = "output"
    CONV = "conv"
    DWCONV = "dwconv"
    LINEAR = "linear"
    ACT = "act"
    BN = "bn"
    MAXPOOL = "maxpool"
    AVGPOOL = "avgpool"
    ADAPTIVE_AVGPOOL = "adaptive_avgpool"
    ADAPTIVE_MAXPOOL = "adaptive_maxpool"
    DROPOUT = "dropout"
    FLATTEN = "flatten"
    ADD = "add"
    CAT = "cat"
    GCONV = "gconv"
    ELTWISE = "eltwise"
    MEAN = "mean"
    LAYERNORM = "layernorm"
    SHUFFLE = "shuffle"
    SPLIT = "split"
    UPSAMPLE = "upsample"

    def __repr__(self) -> str:
        return repr(self.value)


HEAVY_KINDS = frozenset({OpKind.CONV, OpKind.LINEAR})
#: Channel-wise kinds: output channel c depends on input channel c only.
CHANNELWISE_KINDS = frozenset(
    {
        OpKind.ACT,
        OpKind.BN,
        OpKind.MAXPOOL,
        OpKind.AVGPOOL,
        OpKind.ADAPTIVE_AVGPOOL,
        OpKind.ADAPTIVE_MAXPOOL,
        OpKind.DROPOUT,
        OpKind.DWCONV,
        OpKind.FLATTEN,
        OpKind.MEAN,
        OpKind.UPSAMPLE,
    }
)
#: Channel-wise kinds whose output rows depend on a window of input rows (conv-like halos).
WINDOWED_KINDS = frozenset(
    {OpKind.MAXPOOL, OpKind.AVGPOOL, OpKind.ADAPTIVE_AVGPOOL, OpKind.ADAPTIVE_MAXPOOL, OpKind.DWCONV}
)
#: Grouped convolution: output channels of group g need the input channels of group g only.
GROUPED_KINDS = frozenset({OpKind.GCONV})
#: Channel-mixing but spatially local kinds: split by rows, never by channels.
MIXING_KINDS = frozenset({OpKind.LAYERNORM, OpKind.SHUFFLE})
#: Joins: same-shape ``add``, broadcasting elementwise ops, channel ``cat`` and its inverse ``split``.
JOIN_KINDS = frozenset({OpKind.ADD, OpKind.CAT, OpKind.ELTWISE, OpKind.SPLIT})
#: Kinds that may carry weight tensors (the tensors a node reads are named in ``params["tensors"]``).
WEIGHTED_KINDS = frozenset(
    {OpKind.CONV, OpKind.GCONV, OpKind.DWCONV, OpKind.LINEAR, OpKind.BN, OpKind.LAYERNORM, OpKind.ELTWISE}
)


@dataclass(frozen=True)
class OpNode:
    """One operator of a traced graph.

    Shapes are full tensor shapes including the batch dimension. ``params``
    holds the operator's hyper-parameters (``kernel``, ``stride``,
    ``padding``, ``dilation`` as (h, w) pairs and ``groups`` for convs and
    pools, ``act`` for activations, ``eps`` for batchnorm and layer norm,
    ``output_size`` for adaptive pools, ``start``/``stop`` channels of a
    ``split``, ``groups`` of a channel ``shuffle``, ``op`` and ``operands`` of
    an ``eltwise`` op, ``mode``/``scales``/``align_corners`` of an
    ``upsample``) and, for a traced model, ``tensors``: the qualified names of
    the parameters and buffers it reads, by role (``weight``, ``bias``,
    ``running_mean``, ``running_var``, ``operand``). ``module`` is the
    qualified name of the innermost submodule the operator ran in (empty for
    the root) and ``target`` a readable name of the operator; ``source`` the
    model's source line that called it.

    Shapes are *canonical*: 4-D tensors are (N, C, H, W) even where the model
    computes in channels-last order (a permute is a relabelling of the axes,
    not an operator), 2-D tensors are (N, features).
    """

    name: str
    kind: str
    target: str
    module: str
    inputs: tuple[str, ...]
    in_shapes: tuple[tuple[int, ...], ...]
    out_shape: tuple[int, ...]
    weight_shape: tuple[int, ...] | None = None
    bias_shape: tuple[int, ...] | None = None
    flops: int = 0
    weight_elems: int = 0
    params: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    source: str = ""

    def __post_init__(self):
        object.__setattr__(self, "kind", OpKind(self.kind))

    @property
    def is_channelwise(self) -> bool:
        return self.kind in CHANNELWISE_KINDS

    @property
    def is_windowed(self) -> bool:
        return self.kind in WINDOWED_KINDS


class OpGraph:
    """A traced operator graph with a fixed topological order.

    Attributes
    ----------
    g : networkx.DiGraph
        Nodes are op names with attribute ``op`` (:class:`OpNode`); an edge
        u→v carries ``index``, the position(s) of u among v's inputs.
    order : tuple of str
        Topological order used by execution and the cost model (the order of
        captured graph, which is a valid topological order).
    dtype_bytes : int
        Bytes per element of activations and weights (4 for float32).
    """

    def __init__(self, nodes: list[OpNode], dtype_bytes: int = 4, name: str = ""):
        self.name = name
        self.dtype_bytes = dtype_bytes
        self.g = nx.DiGraph()
        self._nodes: dict[str, OpNode] = {}
        for op in nodes:
            if op.name in self._nodes:
                raise ValueError(f"duplicate node name {op.name!r}")
            self._nodes[op.name] = op
            self.g.add_node(op.name, op=op)
            for src in op.inputs:
                if src not in self._nodes:
                    raise ValueError(f"node {op.name!r} uses {src!r} before it is defined")
                self.g.add_edge(src, op.name)
        self.order: tuple[str, ...] = tuple(op.name for op in nodes)
        self.position = {n: i for i, n in enumerate(self.order)}
        inputs = [op.name for op in nodes if op.kind == "input"]
        outputs = [op.name for op in nodes if op.kind == "output"]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(
                f"an OpGraph needs exactly one input and one output node, got inputs={inputs} outputs={outputs}"
            )
        self.input_name, self.output_name = inputs[0], outputs[0]
        self._consumers: dict[str, list[tuple[str, int]]] = {n: [] for n in self.order}
        for op in nodes:
            for i, src in enumerate(op.inputs):
                self._consumers[src].append((op.name, i))

    # -- access -----------------------------------------------------------------
    def __getitem__(self, name: str) -> OpNode:
        try:
            return self._nodes[name]
        except KeyError:
            raise KeyError(f"no node {name!r} in graph {self.name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._nodes

    def __iter__(self):
        return (self._nodes[n] for n in self.order)

    def __len__(self) -> int:
        return len(self.order)

    def consumers(self, name: str) -> list[tuple[str, int]]:
        """(consumer, input index) pairs of ``name``'s output, in topological order."""
        return self._consumers[name]

    def edges(self) -> list[tuple[str, str, int]]:
        """Every (producer, consumer, input index), consumers in topological order."""
        return [(src, op.name, i) for op in self for i, src in enumerate(op.inputs)]

    def last_use(self, name: str) -> int:
        """Position of the last consumer of ``name`` (its own position if none)."""
        cons = self._consumers[name]
        return max((self.position[c] for c, _ in cons), default=self.position[name])

    def free_schedule(self, keep: Collection[str | None] = ()) -> dict[int, tuple[str, ...]]:
        """When each tensor is freed: position p → the nodes whose output goes once step p has run.

        A node's output is freed after its last consumer (:meth:`last_use`),
        or right after its own step when nothing consumes it; names in
        ``keep`` are never freed. The executors and
        :func:`iopopt.cost.memory.memory_profile` all free by this schedule.
        """
        out: dict[int, list[str]] = {}
        for n in self.order:
            if n not in keep:
                out.setdefault(self.last_use(n), []).append(n)
        return {p: tuple(names) for p, names in out.items()}

    @property
    def total_flops(self) -> int:
        return sum(op.flops for op in self)

    @property
    def total_weight_elems(self) -> int:
        return sum(op.weight_elems for op in self)

    def parameter_count(self) -> int:
        """Learnable parameters (as ``sum(p.numel())``; buffers such as batchnorm running statistics excluded).

        A node's ``params["buffer_elems"]`` says how many of its weight
        elements are buffers; a batchnorm without it holds two (mean and
        variance) per channel.
        """
        total = 0
        for op in self:
            default = 2 * op.in_shapes[0][1] if op.kind == "bn" else 0
            total += op.weight_elems - op.params.get("buffer_elems", default)
        return total

    def macs(self, kinds: Iterable[str] = ("conv", "linear", "dwconv", "gconv")) -> int:
        """Multiply-accumulates of the given kinds (FLOPs / 2)."""
        wanted = set(kinds)
        return sum(op.flops // 2 for op in self if op.kind in wanted)

    def is_chain(self) -> bool:
        """True when every node has at most one consumer and one input."""
        return all(len(self._consumers[n]) <= 1 and len(self[n].inputs) <= 1 for n in self.order)

    def summary(self) -> str:
        lines = [f"{'node':<28}{'kind':<18}{'out shape':<24}{'MFLOPs':>10}"]
        for op in self:
            lines.append(f"{op.name:<28}{op.kind:<18}{str(op.out_shape):<24}{op.flops / 1e6:>10.2f}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"OpGraph({self.name!r}, {len(self)} nodes, {self.total_flops / 1e9:.3f} GFLOPs)"


