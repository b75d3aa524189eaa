"""Plan → Program: what each device computes and which messages travel.

:class:`Tables` computes, once per problem, every node term (the output
distribution, per-device FLOPs, weights and output bytes of a node under one
strategy) and every edge term (the resharding between a producer's layout and
what a consumer needs). :func:`compile_plan` picks the terms of one plan into
a :class:`Program`; the cost model, the simulated executor and the distributed
executor all consume that Program.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .cluster import split_counts
from .graph import OpNode
from .layouts import Dist, Region, full_region, halo_rows
from .network import Message

if TYPE_CHECKING:  # pragma: no cover
    from .problem import Plan, Problem

__all__ = ["Transfer", "Resharding", "NodeTerm", "Step", "Program", "Tables", "reshard", "compile_plan"]


@dataclass(frozen=True)
class Transfer:
    """Device ``src`` sends ``region`` of a tensor to device ``dst``."""

    src: int
    dst: int
    region: Region
    nbytes: int


@dataclass(frozen=True)
class Resharding:
    """Messages that turn a producer's distribution into the one a consumer needs.

    ``phases`` run one after the other; ``staging_bytes[d]`` is the size of the
    buffer device d assembles for the consumer (0 when it reads its stored
    part as is).
    """

    src: Dist
    dst: Dist
    phases: tuple[tuple[Transfer, ...], ...]
    staging_bytes: tuple[int, ...]
    time_s: float

    @property
    def identity(self) -> bool:
        return not self.phases and not any(self.staging_bytes)

    @property
    def transfers(self) -> tuple[Transfer, ...]:
        return tuple(t for p in self.phases for t in p)

    @property
    def n_messages(self) -> int:
        return sum(len(p) for p in self.phases)

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for p in self.phases for t in p)


@dataclass(frozen=True)
class NodeTerm:
    """A node under one strategy: output distribution, inputs it needs, work and memory per device."""

    node: str
    strategy: str
    out: Dist
    required: tuple[Dist, ...]
    flops: tuple[float, ...]
    active: tuple[bool, ...]
    compute_s: float
    weight_bytes: tuple[int, ...]
    out_bytes: tuple[int, ...]


@dataclass(frozen=True)
class Step:
    """One operator of the Program: its node term and the reshardings of its inputs (in input order)."""

    op: OpNode
    strategy: str
    term: NodeTerm
    inputs: tuple[Resharding, ...]

    @property
    def comm_s(self) -> float:
        return sum(r.time_s for r in self.inputs)


@dataclass(frozen=True)
class Program:
    """A compiled plan: steps in the graph's topological order."""

    problem: "Problem"
    plan: "Plan"
    steps: tuple[Step, ...]

    def messages(self) -> list[tuple[int, int, int]]:
        """Every message as (src, dst, bytes), in program order."""
        return [(t.src, t.dst, t.nbytes) for s in self.steps for r in s.inputs for t in r.transfers]


# -- resharding -------------------------------------------------------------------


def _blocks(counts) -> tuple[tuple[tuple[int, int], ...], ...]:
    """Consecutive intervals of the given sizes, one per device (empty for a zero count)."""
    out, start = [], 0
    for c in counts:
        out.append(((start, start + c),) if c else ())
        start += c
    return tuple(out)


def reshard(src: Dist, dst: Dist, dtype_bytes: int, network=None, blocks=None) -> Resharding | None:
    """Compile the messages turning ``src`` into ``dst`` (None when impossible).

    Direct algorithms, no relays: a device that lacks part of its target
    region receives each missing piece from the device that holds it; a
    partial sum is reduced by every holder sending its copy of the target
    region; ``P → R`` is a reduce-scatter over ``blocks`` (per-device channel
    intervals; an even split when None) followed by an all-gather.
    """
    k = len(src.parts)
    shape = src.shape
    if dst.kind == "P":
        if src.kind != "P":
            return None
        return Resharding(src, src, (), (0,) * k, 0.0)
    phases: list[tuple[Transfer, ...]] = []
    staging = [0] * k
    if src.kind == "P":
        holders = src.holders()
        if dst.kind == "R":
            if blocks is None:
                blocks = _blocks(split_counts(shape[1], [1.0] * k))
            rows = (0, shape[2]) if len(shape) == 4 else None
            regions = [Region(b, rows) if b else None for b in blocks]
            p1, p2 = [], []
            for d, r in enumerate(regions):
                if r is None:
                    continue
                nb = r.elems(shape) * dtype_bytes
                p1.extend(Transfer(e, d, r, nb) for e in holders if e != d)
                p2.extend(Transfer(d, f, r, nb) for f in range(k) if f != d)
            phases = [tuple(p1), tuple(p2)]
        else:
            p1 = []
            for d, r in enumerate(dst.parts):
                if r is None or r.is_empty():
                    continue
                nb = r.elems(shape) * dtype_bytes
                p1.extend(Transfer(e, d, r, nb) for e in holders if e != d)
            phases = [tuple(p1)]
        for d, r in enumerate(dst.parts):
            if r is not None:
                staging[d] = r.elems(shape) * dtype_bytes
    else:
        p1 = []
        for d, r in enumerate(dst.parts):
            if r is None:
                continue
            own = src.parts[d]
            if own == r:
                continue
            staging[d] = r.elems(shape) * dtype_bytes
            if own is not None and own.contains(r):
                continue  # local slicing
            for e, held in enumerate(src.parts):
                if e == d or held is None:
                    continue
                piece = held.intersect(r)
                if piece is not None:
                    p1.append(Transfer(e, d, piece, piece.elems(shape) * dtype_bytes))
        phases = [tuple(p1)]
    phases_t = tuple(p for p in phases if p)
    time_s = 0.0
    if network is not None:
        time_s = network.time([[Message(t.src, t.dst, t.nbytes) for t in p] for p in phases_t])
    return Resharding(src, dst, phases_t, tuple(staging), time_s)


# -- tables -------------------------------------------------------------------------


class Tables:
    """Every node and edge term of one problem, computed on demand and cached."""

    def __init__(self, problem: "Problem"):
        self.problem = problem
        self.g = problem.graph
        self.k = problem.cluster.k
        self.host = problem.cluster.host
        self.dtype_bytes = problem.graph.dtype_bytes
        self._canon_c: dict[str, tuple] = {}
        self._canon_s: dict[str, tuple] = {}
        self._out: dict[tuple, Dist] = {}
        self._req: dict[tuple, Dist] = {}
        self._node: dict[tuple, NodeTerm] = {}
        self._edge: dict[tuple, Resharding | None] = {}

    # canonical splits, fixed per tensor ---------------------------------------------
    def _fresh(self, n: int) -> tuple:
        return _blocks(self.problem.cluster.counts(n))

    def canon_c(self, name: str) -> tuple:
        """Per-device channel intervals of node ``name``'s output under a channel split."""
        got = self._canon_c.get(name)
        if got is not None:
            return got
        op = self.g[name]
        kind = op.kind
        if kind in ("conv", "linear", "input"):
            got = self._fresh(op.out_shape[1])
        elif kind == "flatten":
            unit = 1
            for s in op.in_shapes[0][2:]:
                unit *= s
            got = tuple(tuple((a * unit, b * unit) for a, b in iv) for iv in self.canon_c(op.inputs[0]))
        elif kind == "cat":
            per_dev: list[list] = [[] for _ in range(self.k)]
            offset = 0
            for src, shp in zip(op.inputs, op.in_shapes):
                for d, iv in enumerate(self.canon_c(src)):
                    per_dev[d].extend((a + offset, b + offset) for a, b in iv)
                offset += shp[1]
            got = tuple(_merge(iv) for iv in per_dev)
        else:  # channel-wise ops, add, output: the first input's split
            got = self.canon_c(op.inputs[0])
        self._canon_c[name] = got
        return got

    def canon_s(self, name: str) -> tuple:
        """Per-device row interval of node ``name``'s output under a row split (None: no rows)."""
        got = self._canon_s.get(name)
        if got is None:
            rows = self.g[name].out_shape[2]
            got = tuple(iv[0] if iv else None for iv in self._fresh(rows))
            self._canon_s[name] = got
        return got

    def _dist_c(self, shape, ivs) -> Dist:
        rows = (0, shape[2]) if len(shape) == 4 else None
        return Dist("C", tuple(Region(iv, rows) if iv else None for iv in ivs), shape)

    def _dist_full(self, kind: str, shape, devices) -> Dist:
        full = full_region(shape)
        return Dist(kind, tuple(full if d in devices else None for d in range(self.k)), shape)

    # distributions -----------------------------------------------------------------------
    def p_holders(self, name: str) -> frozenset:
        """Devices holding a partial sum of ``name``'s output when it produces one."""
        op = self.g[name]
        if op.kind in ("conv", "linear"):
            holders = {d for d, iv in enumerate(self.canon_c(op.inputs[0])) if iv}
            if op.bias_shape is not None:
                holders.add(self.host)
            return frozenset(holders)
        if op.kind == "add":
            return frozenset().union(*(self.p_holders(i) for i in op.inputs))
        return frozenset()

    def out_dist(self, name: str, strategy: str) -> Dist:
        key = (name, strategy)
        got = self._out.get(key)
        if got is not None:
            return got
        op = self.g[name]
        shape = op.out_shape
        if strategy == "host":
            got = self._dist_full("H", shape, {self.host})
        elif strategy == "replicate":
            got = self._dist_full("R", shape, set(range(self.k)))
        elif strategy in ("oc", "channel"):
            got = self._dist_c(shape, self.canon_c(name))
        elif strategy == "rows":
            c = shape[1]
            got = Dist("S", tuple(Region(((0, c),), r) if r else None for r in self.canon_s(name)), shape)
        elif strategy in ("ic", "partial"):
            got = self._dist_full("P", shape, self.p_holders(name))
        else:
            raise ValueError(f"unknown strategy {strategy!r} for node {name!r}")
        self._out[key] = got
        return got

    def req_dist(self, name: str, strategy: str, index: int) -> Dist:
        """The distribution node ``name`` in ``strategy`` needs for its input ``index``."""
        key = (name, strategy, index)
        got = self._req.get(key)
        if got is not None:
            return got
        op = self.g[name]
        shape = op.in_shapes[index]
        if strategy == "host":
            got = self._dist_full("H", shape, {self.host})
        elif strategy in ("replicate", "oc"):
            got = self._dist_full("R", shape, set(range(self.k)))
        elif strategy == "ic":
            got = self._dist_c(shape, self.canon_c(op.inputs[index]))
        elif strategy == "channel":
            src = name if op.kind == "add" else op.inputs[index]
            got = self._dist_c(shape, self.canon_c(src))
        elif strategy == "rows":
            parts = []
            for r in self.canon_s(name):
                if r is None:
                    parts.append(None)
                    continue
                lo, hi, _, _ = halo_rows(op, r[0], r[1])
                # hi == lo: the device's window is all padding; it needs no real row
                parts.append(Region(((0, shape[1]),), (lo, hi)))
            got = Dist("S", tuple(parts), shape)
        elif strategy == "partial":
            got = Dist("P", (None,) * self.k, shape)
        else:
            raise ValueError(f"unknown strategy {strategy!r} for node {name!r}")
        self._req[key] = got
        return got

    # terms ------------------------------------------------------------------------------
    def edge(self, src: str, dst: str, index: int, s_src: str, s_dst: str) -> Resharding | None:
        """Resharding of ``src``'s output (in ``s_src``) into input ``index`` of ``dst`` (in ``s_dst``)."""
        key = (src, dst, index, s_src, s_dst)
        if key in self._edge:
            return self._edge[key]
        a = self.out_dist(src, s_src)
        b = self.req_dist(dst, s_dst, index)
        blocks = self.canon_c(src) if a.kind == "P" and b.kind == "R" else None
        got = reshard(a, b, self.dtype_bytes, self.problem.network, blocks)
        self._edge[key] = got
        return got

    def node(self, name: str, strategy: str) -> NodeTerm:
        key = (name, strategy)
        got = self._node.get(key)
        if got is not None:
            return got
        op = self.g[name]
        out = self.out_dist(name, strategy)
        required = tuple(self.req_dist(name, strategy, i) for i in range(len(op.inputs)))
        k = self.k
        flops = [0.0] * k
        if op.kind in ("input", "output"):
            active = (False,) * k
        else:
            active = tuple(r is not None for r in out.parts)
            total = float(op.flops)
            for d in range(k):
                part = out.parts[d]
                if part is None or total == 0:
                    continue
                if strategy in ("host", "replicate", "partial"):
                    flops[d] = total
                elif strategy == "ic":
                    r = required[0].parts[d]
                    flops[d] = total * (r.n_ch if r is not None else 0) / op.in_shapes[0][1]
                elif strategy == "rows":
                    flops[d] = total * part.n_rows / op.out_shape[2]
                else:  # oc, channel
                    flops[d] = total * part.n_ch / op.out_shape[1]
        devices = self.problem.cluster.devices
        compute_s = max(
            (flops[d] / devices[d].flops_per_s + devices[d].op_overhead_s for d in range(k) if active[d]),
            default=0.0,
        )
        weights = tuple(self._weight_elems(op, strategy, d, out, required) * self.dtype_bytes for d in range(k))
        if op.kind == "output":
            out_bytes = (0,) * k
        else:
            out_bytes = tuple(out.nbytes(d, self.dtype_bytes) for d in range(k))
        got = NodeTerm(name, strategy, out, required, tuple(flops), active, compute_s, weights, out_bytes)
        self._node[key] = got
        return got

    def _weight_elems(self, op: OpNode, strategy: str, d: int, out: Dist, required) -> int:
        if not op.weight_elems:
            return 0
        if strategy == "host":
            return op.weight_elems if d == self.host else 0
        if strategy in ("replicate", "rows"):
            # a device with no output rows computes nothing and holds no weights
            return op.weight_elems if out.parts[d] is not None else 0
        if op.kind in ("conv", "linear"):
            wshape = op.weight_shape
            cout, cin = wshape[0], wshape[1]
            bias = op.bias_shape[0] if op.bias_shape is not None else 0
            per_pair = (op.weight_elems - bias) // (cout * cin)
            if strategy == "oc":
                part = out.parts[d]
                n = part.n_ch if part is not None else 0
                return n * cin * per_pair + (n if bias else 0)
            if strategy == "ic":
                r = required[0].parts[d]
                n = r.n_ch if r is not None else 0
                return cout * n * per_pair + (bias if d == self.host else 0)
        if strategy == "channel":  # per-channel weights: depthwise conv, batchnorm
            part = out.parts[d]
            n = part.n_ch if part is not None else 0
            return op.weight_elems // op.out_shape[1] * n
        raise AssertionError(f"no weight rule for {op.kind} in {strategy}")  # pragma: no cover


def _merge(ivs) -> tuple:
    out: list[list[int]] = []
    for a, b in sorted(ivs):
        if a == b:
            continue
        if out and out[-1][1] == a:
            out[-1][1] = b
        else:
            out.append([a, b])
    return tuple((a, b) for a, b in out)


def compile_plan(problem: "Problem", plan, validate: bool = True) -> Program:
    """Compile ``plan`` (a :class:`~iopopt.problem.Plan` or a mapping node → strategy) into a :class:`Program`."""
    from .problem import Plan

    if not isinstance(plan, Plan):
        if not isinstance(plan, Mapping):
            raise TypeError(f"a plan must be an iopopt.Plan or a mapping node → strategy, got {type(plan).__name__}")
        plan = Plan(plan)
    if validate:
        plan.validate(problem)
    t = problem.tables
    steps = []
    for op in problem.graph:
        s = plan[op.name]
        inputs = tuple(t.edge(src, op.name, i, plan[src], s) for i, src in enumerate(op.inputs))
        steps.append(Step(op, s, t.node(op.name, s), inputs))
    return Program(problem, plan, tuple(steps))
