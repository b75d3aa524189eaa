"""Cost terms: every node term and edge term of a problem, computed once and cached.

The latency of a plan is a sum of *node terms* (a node under one strategy:
its output distribution, the inputs it needs, its work, weights and output
bytes per device, and its compute time) and *edge terms* (the resharding of a
producer's layout into what a consumer needs, with its time). Solvers read
these terms through :func:`terms`; the compiler assembles a plan's terms into a
:class:`~iopopt.compile.program.Program`.

The typed API solvers are meant to use::

    t = terms(problem)
    t.node(name, strategy)                  # NodeTerm: .compute_s, .device_compute_s, .weight_bytes, ...
    t.edge(src, dst, index, s_src, s_dst)   # Resharding, or None when the pair is infeasible
    t.edge_time_s(src, dst, index, s_src, s_dst)   # seconds; inf when the pair is infeasible

An edge is infeasible exactly when the consumer needs a partial-sum input and
the producer makes none (:func:`iopopt.model.layouts.edge_feasible`).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Collection
from dataclasses import dataclass

from ..model.cluster import pricing_kind
from ..model.fused import breaks_stack, fused_depth, stack_rows
from ..model.graph import OpNode
from ..model.layouts import ChannelBlocks, Dist, Layout, Region, full_region, halo_rows, placement, subset
from ..model.problem import Problem
from .channels import group_blocks, restrict
from .channels import merge as _merge
from .reshard import Resharding, blocks, reshard

__all__ = ["NodeTerm", "CostTerms", "terms"]


@dataclass(frozen=True)
class NodeTerm:
    """A node under one strategy: output distribution, inputs it needs, work and memory per device.

    Per device d: ``flops[d]`` of its share, ``active[d]`` (it computes a
    part), ``device_compute_s[d]`` (:meth:`~iopopt.model.cluster.Device.compute_s`
    of its share, 0 when idle), ``weight_bytes[d]`` of its weight shard,
    ``out_bytes[d]`` of its output part and ``moved_bytes[d]``, the bytes its
    share reads and writes: its input buffers (the regions in ``required``;
    in ``partial``, the partial sums it holds), its output part and its
    weight shard. ``compute_s`` is the max over active devices.
    """

    node: str
    strategy: str
    out: Dist
    required: tuple[Dist, ...]
    flops: tuple[float, ...]
    active: tuple[bool, ...]
    compute_s: float
    device_compute_s: tuple[float, ...]
    weight_bytes: tuple[int, ...]
    out_bytes: tuple[int, ...]
    moved_bytes: tuple[int, ...] = ()


class CostTerms:
    """Every node and edge term of one problem, computed on demand and cached.

    Holds the problem's graph, cluster and network, not the problem itself, so
    that the per-problem cache of :func:`terms` can let go of a problem.
    """

    def __init__(self, problem: Problem):
        self.g = problem.graph
        self.cluster = problem.cluster
        self.network = problem.network
        self.k = problem.cluster.k
        self.host = problem.cluster.host
        self.dtype_bytes = problem.graph.dtype_bytes
        self._canon_c: dict[tuple[str, int | None], ChannelBlocks] = {}
        self._canon_s: dict[tuple[str, int | None], tuple[tuple[int, int] | None, ...]] = {}
        self._out: dict[tuple, Dist] = {}
        self._req: dict[tuple, Dist] = {}
        self._node: dict[tuple, NodeTerm] = {}
        self._edge: dict[tuple, Resharding | None] = {}
        # one tensor feeding many consumers that need the same layout (DenseNet's concatenations: each
        # layer's output joins every later concat of its block) reshards the same way on every edge
        self._reshard: dict[tuple, Resharding | None] = {}
        self._dists: dict[Dist, Dist] = {}  # one object per distinct distribution: edges key reshardings by id

    # canonical splits, fixed per tensor ---------------------------------------------
    def _fresh(self, n: int, m: int | None) -> ChannelBlocks:
        return blocks(self.cluster.counts(n, m))

    def _devices(self, m: int | None) -> frozenset:
        """The devices a split over ``m`` devices uses (every device when ``m`` is None)."""
        return frozenset(range(self.k) if m is None else self.cluster.fastest(m))

    def canon_c(self, name: str, m: int | None = None) -> ChannelBlocks:
        """Per-device channel intervals of node ``name``'s output under a channel split (over the m fastest)."""
        got = self._canon_c.get((name, m))
        if got is not None:
            return got
        op = self.g[name]
        kind = op.kind
        if kind in ("conv", "linear", "input", "layernorm", "shuffle"):
            got = self._fresh(op.out_shape[1], m)
        elif kind == "gconv":  # by whole groups, each where most of its input channels are
            got = group_blocks(op, self.canon_c(op.inputs[0], m))[1]
        elif kind == "split":
            got = restrict(self.canon_c(op.inputs[0], m), op.params["start"], op.params["stop"])
        elif kind == "eltwise":  # the big operand's split (the small one follows it)
            got = self.canon_c(op.inputs[op.params.get("big", 0)], m)
        elif kind == "flatten":
            unit = 1
            for s in op.in_shapes[0][2:]:
                unit *= s
            got = tuple(tuple((a * unit, b * unit) for a, b in iv) for iv in self.canon_c(op.inputs[0], m))
        elif kind == "cat":
            per_dev: list[list[tuple[int, int]]] = [[] for _ in range(self.k)]
            offset = 0
            for src, shp in zip(op.inputs, op.in_shapes):
                for d, iv in enumerate(self.canon_c(src, m)):
                    per_dev[d].extend((a + offset, b + offset) for a, b in iv)
                offset += shp[1]
            got = tuple(_merge(iv) for iv in per_dev)
        else:  # channel-wise ops, add, output: the first input's split
            got = self.canon_c(op.inputs[0], m)
        self._canon_c[(name, m)] = got
        return got

    def canon_s(self, name: str, m: int | None = None) -> tuple[tuple[int, int] | None, ...]:
        """Per-device row interval of node ``name``'s output under a row split (None: no rows)."""
        got = self._canon_s.get((name, m))
        if got is None:
            rows = self.g[name].out_shape[2]
            got = tuple(iv[0] if iv else None for iv in self._fresh(rows, m))
            self._canon_s[(name, m)] = got
        return got

    def rows_of(self, name: str, strategy: str, m: int | None) -> tuple[tuple[int, int] | None, ...]:
        """Per-device output rows of ``name`` in a ``rows`` strategy: the canonical split, or in a fused stack
        (``rows_fused<d>``) the rows its stack's end needs (:func:`~iopopt.model.fused.stack_rows`)."""
        if fused_depth(strategy) is None:
            return self.canon_s(name, m)
        return stack_rows(self.g, name, strategy, self.canon_s)

    def _dist_c(self, shape: tuple[int, ...], ivs: ChannelBlocks) -> Dist:
        rows = (0, shape[2]) if len(shape) == 4 else None
        return Dist(Layout.CHANNELS, tuple(Region(iv, rows) if iv else None for iv in ivs), shape)

    def _dist_full(self, kind: Layout, shape: tuple[int, ...], devices: Collection[int]) -> Dist:
        full = full_region(shape)
        return Dist(kind, tuple(full if d in devices else None for d in range(self.k)), shape)

    def _dist_bcast(self, shape: tuple[int, ...], devices: Collection[int]) -> Dist:
        """The whole tensor on ``devices`` (a broadcast operand): ``R`` when that is every device.

        On fewer devices it is labelled ``C`` (each holder's region is the
        whole tensor), so that a partial-sum source is reduced to each holder
        rather than all-reduced to every device.
        """
        kind = Layout.REPLICATED if len(devices) == self.k else Layout.CHANNELS
        return self._dist_full(kind, shape, devices)

    def _req_channel(self, op: OpNode, index: int, shape: tuple[int, ...], m: int | None) -> Dist:
        """Input ``index`` of ``op`` in ``channel``: what each device needs for its output channels."""
        if op.kind == "add":
            return self._dist_c(shape, self.canon_c(op.name, m))
        if op.kind == "eltwise":
            if shape[1] == op.out_shape[1]:  # the big operand, or a small one with every channel
                return self._dist_c(shape, self.canon_c(op.name, m))
            # one channel broadcast over all: whole, on every device holding a part of the output
            return self._dist_bcast(shape, self.out_dist(op.name, "channel" if m is None else f"channel@{m}").holders())
        if op.kind == "gconv":
            return self._dist_c(shape, group_blocks(op, self.canon_c(op.inputs[0], m))[0])
        own = self.canon_c(op.inputs[index], m)
        if op.kind == "split":  # a device reads its own part of the input, if it has channels of the range
            own = tuple(iv if out else () for iv, out in zip(own, self.canon_c(op.name, m)))
        return self._dist_c(shape, own)

    # distributions -----------------------------------------------------------------------
    def p_holders(self, name: str, m: int | None = None) -> frozenset:
        """Devices holding a partial sum of ``name``'s output when it produces one (split over the m fastest)."""
        op = self.g[name]
        if op.kind in ("conv", "linear"):
            holders = {d for d, iv in enumerate(self.canon_c(op.inputs[0], m)) if iv}
            if op.bias_shape is not None:
                holders.add(self.host)
            return frozenset(holders)
        if op.kind == "add":
            return frozenset().union(*(self.p_holders(i, m) for i in op.inputs))
        return frozenset()

    def out_dist(self, name: str, strategy: str) -> Dist:
        key = (name, strategy)
        got = self._out.get(key)
        if got is not None:
            return got
        op = self.g[name]
        shape = op.out_shape
        on = placement(strategy)
        base, m = subset(strategy)
        if strategy == "host":
            got = self._dist_full(Layout.HOST, shape, {self.host})
        elif on is not None:
            got = self._dist_full(Layout.DEVICE, shape, {on})
        elif base == "replicate":
            got = self._dist_bcast(shape, self._devices(m))
        elif base in ("oc", "channel"):
            got = self._dist_c(shape, self.canon_c(name, m))
        elif base == "rows":
            c = shape[1]
            rows = self.rows_of(name, strategy, m)
            got = Dist(Layout.ROWS, tuple(Region(((0, c),), r) if r else None for r in rows), shape)
        elif base in ("ic", "partial"):
            got = self._dist_full(Layout.PARTIAL, shape, self.p_holders(name, m))
        else:
            raise ValueError(f"unknown strategy {strategy!r} for node {name!r}")
        got = self._out[key] = self._dists.setdefault(got, got)
        return got

    def req_dist(self, name: str, strategy: str, index: int) -> Dist:
        """The distribution node ``name`` in ``strategy`` needs for its input ``index``."""
        key = (name, strategy, index)
        got = self._req.get(key)
        if got is not None:
            return got
        op = self.g[name]
        shape = op.in_shapes[index]
        on = placement(strategy)
        base, m = subset(strategy)
        if strategy == "host":
            got = self._dist_full(Layout.HOST, shape, {self.host})
        elif on is not None:
            got = self._dist_full(Layout.DEVICE, shape, {on})
        elif base in ("replicate", "oc"):
            got = self._dist_bcast(shape, self._devices(m))
        elif base == "ic":
            got = self._dist_c(shape, self.canon_c(op.inputs[index], m))
        elif base == "channel":
            got = self._req_channel(op, index, shape, m)
        elif base == "rows":
            parts: list[Region | None] = []
            for r in self.rows_of(name, strategy, m):
                if r is None:
                    parts.append(None)
                    continue
                lo, hi, _, _ = halo_rows(op, r[0], r[1])
                if op.kind == "eltwise" and shape[2] != op.out_shape[2]:
                    lo, hi = 0, shape[2]  # a small operand broadcast over the rows: whole on every device
                # hi == lo: the device's window is all padding; it needs no real row
                parts.append(Region(((0, shape[1]),), (lo, hi)))
            got = Dist(Layout.ROWS, tuple(parts), shape)
        elif base == "partial":
            got = Dist(Layout.PARTIAL, (None,) * self.k, shape)
        else:
            raise ValueError(f"unknown strategy {strategy!r} for node {name!r}")
        got = self._req[key] = self._dists.setdefault(got, got)
        return got

    # terms ------------------------------------------------------------------------------
    def edge(self, src: str, dst: str, index: int, s_src: str, s_dst: str) -> Resharding | None:
        """Resharding of ``src``'s output (in ``s_src``) into input ``index`` of ``dst`` (in ``s_dst``)."""
        key = (src, dst, index, s_src, s_dst)
        if key in self._edge:
            return self._edge[key]
        if breaks_stack(s_src, s_dst):
            self._edge[key] = None
            return None
        a = self.out_dist(src, s_src)
        b = self.req_dist(dst, s_dst, index)
        ivs = self.canon_c(src, subset(s_src)[1]) if a.kind == Layout.PARTIAL and b.kind == Layout.REPLICATED else None
        got = self._edge[key] = self.between(a, b, ivs)
        return got

    def between(self, a: Dist, b: Dist, ivs: ChannelBlocks | None = None) -> Resharding | None:
        """The resharding of distribution ``a`` into ``b`` (both from :meth:`out_dist` / :meth:`req_dist`:
        interned, so cached by identity); ``ivs``: a partial sum's channel blocks, when ``b`` is replicated."""
        same = (id(a), id(b), None if ivs is None else id(ivs))  # a, b interned; ivs cached per node
        if same in self._reshard:
            return self._reshard[same]
        got = self._reshard[same] = reshard(a, b, self.dtype_bytes, self.network, ivs)
        return got

    def edge_time_s(self, src: str, dst: str, index: int, s_src: str, s_dst: str) -> float:
        """Seconds of the edge term (``inf`` when the strategy pair is infeasible)."""
        e = self.edge(src, dst, index, s_src, s_dst)
        return math.inf if e is None else e.time_s

    def node(self, name: str, strategy: str) -> NodeTerm:
        """The term of node ``name`` under ``strategy`` (see :class:`NodeTerm`)."""
        key = (name, strategy)
        got = self._node.get(key)
        if got is not None:
            return got
        op = self.g[name]
        out = self.out_dist(name, strategy)
        required = tuple(self.req_dist(name, strategy, i) for i in range(len(op.inputs)))
        base, m = subset(strategy)
        k = self.k
        flops = [0.0] * k
        rows = [1.0] * k  # the fraction of the output rows each device computes (row shares: below 1)
        if op.kind in ("input", "output"):
            active = (False,) * k
        else:
            active = tuple(r is not None for r in out.parts)
            total = float(op.flops)
            for d in range(k):
                part = out.parts[d]
                if part is None or total == 0:
                    continue
                if base in ("host", "replicate", "partial") or placement(strategy) is not None:
                    flops[d] = total
                elif base == "ic":
                    r = required[0].parts[d]
                    flops[d] = total * (r.n_ch if r is not None else 0) / op.in_shapes[0][1]
                elif base == "rows":
                    rows[d] = part.n_rows / op.out_shape[2]
                    flops[d] = total * rows[d]
                else:  # oc, channel
                    flops[d] = total * part.n_ch / op.out_shape[1]
        weights = tuple(self._weight_elems(op, base, d, out, required) * self.dtype_bytes for d in range(k))
        if op.kind == "output":
            out_bytes = (0,) * k
        else:
            out_bytes = tuple(out.nbytes(d, self.dtype_bytes) for d in range(k))
        moved = tuple(
            self._input_bytes(op, base, m, d, required) + out_bytes[d] + weights[d] if active[d] else 0
            for d in range(k)
        )
        devices = self.cluster.devices
        kind = pricing_kind(str(op.kind), op.params)
        spills = any(dev.spill_weight_bytes is not None for dev in devices)
        producer = self._producer_weight_bytes(op) if spills else 0.0
        device_s = tuple(
            devices[d].compute_s(kind, flops[d], moved[d], weights[d], rows[d], producer) if active[d] else 0.0
            for d in range(k)
        )
        compute_s = max((device_s[d] for d in range(k) if active[d]), default=0.0)
        got = NodeTerm(
            name, strategy, out, required, tuple(flops), active, compute_s, device_s, weights, out_bytes, moved
        )
        self._node[key] = got
        return got

    def _producer_weight_bytes(self, op: OpNode) -> float:
        """The most weight bytes an operator writing one of ``op``'s inputs holds computed whole (its ``host``
        term): what :attr:`Device.spill_weight_bytes` is set against. Whatever the producer's strategy in a plan (a
        static figure, so that every solver's terms stay per operator): a channel share of a split producer holds
        fewer."""
        return float(max((max(self.node(src, "host").weight_bytes) for src in op.inputs), default=0.0))

    def _input_bytes(self, op: OpNode, strategy: str, m: int | None, d: int, required: tuple[Dist, ...]) -> int:
        """Bytes of the input buffers device ``d`` reads for its share of ``op`` (``strategy`` without subset)."""
        if strategy == "partial":  # the full-size partial sums of its inputs that d holds
            return sum(
                math.prod(shape) * self.dtype_bytes
                for src, shape in zip(op.inputs, op.in_shapes)
                if d in self.p_holders(src, m)
            )
        return sum(r.nbytes(d, self.dtype_bytes) for r in required)

    def _weight_elems(self, op: OpNode, strategy: str, d: int, out: Dist, required: tuple[Dist, ...]) -> int:
        """Weight elements device ``d`` holds for ``op`` in ``strategy`` (without its device subset)."""
        if not op.weight_elems:
            return 0
        if strategy == "host":
            return op.weight_elems if d == self.host else 0
        on = placement(strategy)
        if on is not None:
            return op.weight_elems if d == on else 0
        if strategy in ("replicate", "rows"):
            # a device with no output rows computes nothing and holds no weights
            return op.weight_elems if out.parts[d] is not None else 0
        if op.kind in ("conv", "linear", "gconv"):
            wshape = op.weight_shape
            assert wshape is not None  # a conv/linear has weights
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
        if strategy == "channel" and op.params.get("weight_broadcast"):
            return op.weight_elems if out.parts[d] is not None else 0  # one value for every channel
        if strategy == "channel":  # per-channel weights: depthwise and grouped conv, batchnorm, layer scale
            part = out.parts[d]
            n = part.n_ch if part is not None else 0
            return op.weight_elems // op.out_shape[1] * n
        raise AssertionError(f"no weight rule for {op.kind} in {strategy}")  # pragma: no cover


_CACHE: weakref.WeakKeyDictionary[Problem, CostTerms] = weakref.WeakKeyDictionary()


def terms(problem: Problem) -> CostTerms:
    """The cost terms of ``problem``, built on first use and cached per problem object.

    The cache is keyed by the problem itself (problems compare by identity),
    so a problem made with ``dataclasses.replace(problem, network=...)`` never
    sees the terms of the one it was copied from.
    """
    got = _CACHE.get(problem)
    if got is None:
        got = CostTerms(problem)
        _CACHE[problem] = got
    return got
