"""The partitioning problem and plans."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from .cluster import Cluster, pricing_kind
from .fused import fused_chain, fused_strategies
from .graph import OpGraph
from .layouts import check_strategy, edge_feasible, fused_depth, output_layout, strategies_for
from .network import NetworkModel

__all__ = ["Problem", "Plan", "InvalidPlan"]


class InvalidPlan(ValueError):
    """A plan that does not fit its problem (missing node, unknown node, bad strategy or edge)."""


@dataclass(frozen=True, eq=False)
class Problem:
    """An operator graph, a cluster and a network model.

    Immutable, and compared by identity: the cost terms of a problem
    (:func:`iopopt.compile.terms`) are cached per problem object, so a copy
    made with ``dataclasses.replace`` (say, another network) gets terms of its own.
    """

    graph: OpGraph
    cluster: Cluster
    network: NetworkModel
    name: str = ""

    def __post_init__(self):
        if not isinstance(self.graph, OpGraph):
            raise ValueError(f"Problem: graph must be an OpGraph, got {type(self.graph).__name__}")
        if not isinstance(self.cluster, Cluster):
            raise ValueError(f"Problem: cluster must be a Cluster, got {type(self.cluster).__name__}")
        if not isinstance(self.network, NetworkModel):
            raise ValueError(f"Problem: network must be a NetworkModel, got {type(self.network).__name__}")

    @property
    def k(self) -> int:
        return self.cluster.k

    @property
    def host(self) -> int:
        return self.cluster.host

    @property
    def dtype_bytes(self) -> int:
        return self.graph.dtype_bytes

    def strategies(self, node: str) -> tuple[str, ...]:
        """The strategies of ``node`` on this cluster: the splits (with the cluster's ``subsets``, also on the m
        fastest devices), then one placement ``dev<j>`` per non-host device; with the cluster's ``fused_depth``,
        last, the fused-stack strategies ``rows_fused<d>`` (d ≤ fused_depth) the graph allows at ``node``."""
        out = strategies_for(self.graph[node], self.k, self.host, self.cluster.subsets)
        if self.cluster.fused_depth and self.k > 1:
            out += fused_strategies(self.graph, node, self.cluster.fused_depth)
        return out

    def lower_bound_s(self) -> float:
        """A lower bound on any plan's latency: no communication, perfect balance, no overheads.

        Σ FLOPs / Σ device FLOP/s when no device is a roofline; otherwise, per
        node, the larger of its FLOPs over the devices' summed rates for its
        kind and the bytes every plan must move (its output and weights) over
        their summed memory bandwidths.
        """
        devices = self.cluster.devices
        if not any(d.is_roofline for d in devices):
            return self.graph.total_flops / self.cluster.total_flops_per_s
        total = 0.0
        for op in self.graph:
            if op.kind in ("input", "output"):
                continue
            kind = pricing_kind(str(op.kind), op.params)
            t = op.flops / sum(d.rate(kind) for d in devices)
            bandwidth = sum(_or_inf(d.bandwidth(kind)) for d in devices)
            nbytes = (math.prod(op.out_shape) + op.weight_elems) * self.dtype_bytes
            total += max(t, nbytes / bandwidth)
        return total

    def plan(self, strategies: Mapping[str, str], default: str | None = None) -> Plan:
        """A validated plan; nodes not in ``strategies`` get ``default`` where applicable, else ``host``."""
        full = {}
        for op in self.graph:
            s = strategies.get(op.name)
            if s is None:
                valid = self.strategies(op.name)
                s = default if default in valid else "host"
            full[op.name] = s
        unknown = sorted(set(strategies) - set(full))
        if unknown:
            raise InvalidPlan(f"plan names nodes that are not in the graph: {unknown[:5]}")
        plan = Plan(full)
        plan.validate(self)
        return plan

    def describe(self) -> str:
        return f"{self.graph.name} on {self.cluster.name or f'{self.k} devices'} ({self.network.name})"


def _or_inf(value: float | None) -> float:
    return math.inf if value is None else value


class Plan(Mapping):
    """A strategy per node (node name → strategy name); immutable and hashable."""

    __slots__ = ("_s", "_hash")

    def __init__(self, strategies: Mapping[str, str]):
        self._s = MappingProxyType(dict(strategies))
        self._hash: int | None = None

    def __getitem__(self, node: str) -> str:
        return self._s[node]

    def __iter__(self):
        return iter(self._s)

    def __len__(self) -> int:
        return len(self._s)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._s.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Plan) and dict(self._s) == dict(other._s)

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for s in self._s.values():
            counts[s] = counts.get(s, 0) + 1
        return f"Plan({len(self)} nodes: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) + ")"

    def replace(self, **changes: str) -> Plan:
        """A copy with the given node strategies changed (keyword form of :meth:`with_`)."""
        return self.with_(changes)

    def with_(self, changes: Mapping[str, str]) -> Plan:
        d = dict(self._s)
        d.update(changes)
        return Plan(d)

    def to_dict(self) -> dict[str, str]:
        return dict(self._s)

    def validate(self, problem: Problem) -> None:
        """Raise :class:`InvalidPlan` unless every node has an applicable strategy and every edge is feasible."""
        g = problem.graph
        missing = [n for n in g.order if n not in self._s]
        if missing:
            raise InvalidPlan(f"plan has no strategy for {len(missing)} node(s), e.g. {missing[:5]}")
        extra = sorted(set(self._s) - set(g.order))
        if extra:
            raise InvalidPlan(f"plan names nodes that are not in the graph: {extra[:5]}")
        for op in g:
            depth = fused_depth(self._s[op.name])
            if depth is not None:  # valid wherever the graph allows the stack, whatever the space option
                if problem.k < 2 or fused_chain(g, op.name, depth) is None:
                    raise InvalidPlan(
                        f"strategy {self._s[op.name]!r} is not applicable to node {op.name!r}: it needs a chain of "
                        f"{depth} fusable single-consumer spatial ops after it on 2 or more devices"
                    )
                continue
            try:
                check_strategy(op, self._s[op.name], problem.k, problem.host, problem.cluster.subsets)
            except ValueError as exc:
                raise InvalidPlan(str(exc)) from None
        for src, dst, _ in g.edges():
            if not edge_feasible(self._s[src], self._s[dst]):
                if fused_depth(self._s[src]) is not None:
                    raise InvalidPlan(
                        f"edge {src} → {dst}: {src!r} in {self._s[src]!r} is inside a fused stack, so {dst!r} must "
                        f"continue it, not be in {self._s[dst]!r}"
                    )
                raise InvalidPlan(
                    f"edge {src} → {dst}: {dst!r} in {self._s[dst]!r} needs a partial-sum input over its own devices, "
                    f"but {src!r} in {self._s[src]!r} produces layout {output_layout(self._s[src])}"
                )
