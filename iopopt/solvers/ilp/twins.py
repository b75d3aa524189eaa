"""Exact reduction of the ILP's full space: placements on interchangeable devices ("twins").

A cluster of 16 boards of three kinds offers every op 15 placements ``dev<j>``
besides ``host``; the edge variables of two placements grow with k², and most
of them describe the same plans up to renaming equal boards. The dominance
reduction (:mod:`.reduce`) cannot remove them, because ``dev4`` is the best
strategy of a node whose neighbour is on device 4; renaming has to happen on
every node at once.

Let σ map some devices j to a twin r (same :class:`~iopopt.model.cluster.Device`
figures but the name) and act on plans by replacing every placement ``dev j``
with ``dev σ(j)`` (``host`` when σ(j) is the host), other strategies unchanged.
σ(P) is never worse than P when:

1. every node runs no slower on σ(j) than on j: C[n, σ(j)] ≤ C[n, j];
2. every edge from a split strategy s into a placement, and from a placement
   into a split strategy q, costs no more towards σ(j):
   R[s, σ(j)] ≤ R[s, j] and R[σ(j), q] ≤ R[j, q], feasible wherever the
   original pair is;
3. a tensor moved between two placements (one message, DESIGN §3) takes no
   longer between the images: T(σx → σy) ≤ T(x → y) for x ≠ y, σx ≠ σy, at
   every tensor size the graph moves (0 when σx = σy).

Each condition is checked numerically on the cost terms (2. over every
distinct producer distribution and tensor shape, 3. with the network model on
the message the resharding compiles), so the reduction is exact whatever the
network or split rule: a device whose rows sit at the edge of a row split
needs a different halo than one in the middle, and then it is simply kept.
Only for the latency objective with no memory rows (σ piles every placement
of j onto σ(j), which memory rows would see).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from ...compile.terms import terms as cost_terms
from ...model.fused import fused_depth
from ...model.layouts import placement, placement_name
from ...model.network import Message
from ...model.problem import Problem
from .reduce import Removal

__all__ = ["collapse"]


def collapse(
    problem: Problem, domains: Mapping[str, Sequence[str]]
) -> tuple[dict[str, tuple[str, ...]], list[Removal]]:
    """``domains`` without the placements on devices that a twin replaces, and the removals (node, dev j, dev σ(j)).

    Minimising latency with no memory rows; the optimum over the result equals the optimum over ``domains``.
    """
    k, host = problem.k, problem.cluster.host
    full = {n: tuple(d) for n, d in domains.items()}
    classes: dict[object, list[int]] = {}
    for j, dev in enumerate(problem.cluster.devices):
        classes.setdefault(dataclasses.replace(dev, name="twin"), []).append(j)
    for members in classes.values():  # the host first: a representative, never replaced
        members.sort(key=lambda j: (j != host, j))
    if all(len(c) < 2 for c in classes.values()):
        return full, []
    t = cost_terms(problem)
    g = problem.graph
    names = ["host" if j == host else placement_name(j) for j in range(k)]
    where = {s: j for j, s in enumerate(names)}

    def device_of(s: str) -> int | None:
        return host if s == "host" else placement(s)

    # each node's placements and other (split) strategies, once
    on = {n: [s for s in full[n] if device_of(s) is not None] for n in g.order}
    split = {n: [s for s in full[n] if device_of(s) is None] for n in g.order}
    # 1. node times per device; inf where a node has no placement on that device
    node_t = []
    for n in g.order:
        if on[n]:
            row = np.full(k, np.inf)
            for s in on[n]:
                row[where[s]] = t.node(n, s).compute_s
            node_t.append(row)
    # 2. edges between a split strategy and the placements, per distinct distribution and tensor shape
    vectors: dict[tuple, np.ndarray] = {}
    sizes: set[int] = set()  # bytes of the one message between two placements, per tensor
    for u, v, i in g.edges():
        on_u, on_v = on[u], on[v]
        if len(on_v) > 1:
            req = {where[q]: t.req_dist(v, q, i) for q in on_v}
            ids = tuple(id(req[j]) for j in sorted(req))
            for s in split[u]:
                if fused_depth(s) is None:  # a fused producer feeds no placement
                    a = t.out_dist(u, s)
                    if (key := (id(a), "to", ids)) not in vectors:
                        vectors[key] = _times([t.between(a, req[j]) if j in req else None for j in range(k)])
        if len(on_u) > 1:
            out = {where[s]: t.out_dist(u, s) for s in on_u}
            ids = tuple(id(out[j]) for j in sorted(out))
            for q in split[v]:
                b = t.req_dist(v, q, i)
                if (key := (ids, "from", id(b))) not in vectors:
                    vectors[key] = _times([t.between(out[j], b) if j in out else None for j in range(k)])
        # the tensor this edge moves between two placements (on any two devices: the output node's only
        # placement is the host, and a tensor reaches it from every other device)
        pair = next(((a, b) for a in on_u for b in on_v if where[a] != where[b]), None)
        if pair is not None:
            e = t.edge(u, v, i, *pair)
            if e is None or len(e.phases) != 1 or len(e.phases[0]) != 1:
                return full, []  # not one message: this module's argument does not apply
            m = e.phases[0][0]
            if e.time_s != problem.network.phase_time([Message(where[pair[0]], where[pair[1]], m.nbytes)]):
                return full, []
            sizes.add(m.nbytes)
    matrix = np.array(list(vectors.values())) if vectors else np.zeros((0, k))
    nodes = np.array(node_t) if node_t else np.zeros((0, k))
    net = problem.network
    # 3. one message of each size between any two devices
    messages = [np.array([[net.phase_time([Message(x, y, n)]) if x != y else 0.0 for y in range(k)] for x in range(k)])
                for n in sizes]

    def replaces(r: int, j: int) -> bool:
        """Conditions 1-3 for mapping j onto r: r no worse wherever j is feasible, as an end of any message."""
        for m in (nodes, matrix):
            finite = np.isfinite(m[:, j])
            if np.any(finite & ~(m[:, r] <= m[:, j])):
                return False
        others = [y for y in range(k) if y not in (j, r)]
        # with representatives never mapped, these per-device conditions give condition 3 for the whole map
        return all(np.all(m[r, others] <= m[j, others]) and np.all(m[others, r] <= m[others, j]) for m in messages)

    sigma = list(range(k))
    for members in classes.values():
        reps = [members[0]]
        for j in members[1:]:
            r = next((r for r in reps if replaces(r, j)), None)
            if r is None:
                reps.append(j)
            else:
                sigma[j] = r
    if sigma == list(range(k)):
        return full, []
    removals: list[Removal] = []
    reduced = {}
    for n in g.order:
        keep = []
        for s in full[n]:
            j = device_of(s)
            if j is not None and sigma[j] != j and names[sigma[j]] in full[n]:
                removals.append((n, s, names[sigma[j]]))
            else:
                keep.append(s)
        reduced[n] = tuple(keep)
    return reduced, removals


def _times(reshardings: Sequence) -> np.ndarray:
    return np.array([np.inf if e is None else e.time_s for e in reshardings])
