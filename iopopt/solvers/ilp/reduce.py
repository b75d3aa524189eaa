"""Exact reduction of the ILP's full space: strategies dominated by another strategy of the same node.

Strategy ``s`` of node ``n`` is *dominated* by ``s2`` when swapping ``s`` for
``s2`` in any plan (its neighbours' strategies unchanged) can never make the
plan worse:

- ``s2`` connects to every neighbour strategy ``s`` connects to (over every
  incident edge, within the neighbours' current domains);
- the objective cannot grow: ``C[n, s2] − C[n, s] + Σ_e max_q (R[e, s2, q] − R[e, s, q]) ≤ 0``
  (the max over the neighbour's strategies ``q`` that ``s`` connects to);
- when memory rows may be written: on every device, ``s2``'s weight shard and
  output are no larger than ``s``'s, and so is the staging buffer of every
  incident edge for every neighbour strategy (every memory row is a sum of
  such node and edge terms, so no row grows).

Then every plan using ``s`` maps to a plan using ``s2`` that is as good and
as feasible, so removing ``s`` keeps the optimum. Strategies are removed one
at a time against the domains left so far (so two strategies that dominate
each other lose only one of them), and :func:`lift` replays the removals to
map any plan of the full space into the reduced one (the ILP's warm start).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from ...compile.terms import terms as cost_terms
from ...model.problem import Plan, Problem

__all__ = ["Removal", "dominated", "lift"]

#: One removal: (node, the strategy removed, the strategy that dominates it).
Removal = tuple[str, str, str]


def dominated(
    problem: Problem,
    domains: Mapping[str, Sequence[str]],
    node_cost: Callable,
    edge_cost: Callable,
    memory: bool,
) -> tuple[dict[str, tuple[str, ...]], list[Removal]]:
    """The domains without dominated strategies, and the removals in the order they were made.

    ``node_cost(term)`` and ``edge_cost(resharding)`` give a node or edge
    term's contribution to the objective; ``memory`` adds the memory
    conditions (needed whenever memory rows or a peak may be written).
    """
    g, t = problem.graph, cost_terms(problem)
    full = {n: tuple(d) for n, d in domains.items()}
    k = problem.k
    cost = {n: np.array([node_cost(t.node(n, s)) for s in full[n]]) for n in g.order}
    weight = out = None
    if memory:
        weight = {n: np.array([t.node(n, s).weight_bytes for s in full[n]], dtype=float) for n in g.order}
        out = {n: np.array([t.node(n, s).out_bytes for s in full[n]], dtype=float) for n in g.order}
    # per edge: cost matrix over the full domains (inf: infeasible pair), staging bytes per pair and device
    incident: dict[str, list[tuple[str, np.ndarray, np.ndarray | None]]] = {n: [] for n in g.order}
    for u, v, i in g.edges():
        du, dv = full[u], full[v]
        rc = np.full((len(du), len(dv)), np.inf)
        st = np.zeros((len(du), len(dv), k)) if memory else None
        for a, s in enumerate(du):
            for b, q in enumerate(dv):
                e = t.edge(u, v, i, s, q)
                if e is not None:
                    rc[a, b] = edge_cost(e)
                    if st is not None:
                        st[a, b] = e.staging_bytes
        incident[u].append((v, rc, st))
        incident[v].append((u, rc.T, None if st is None else st.transpose(1, 0, 2)))

    alive = {n: np.ones(len(full[n]), dtype=bool) for n in g.order}
    removals: list[Removal] = []
    queue = deque(n for n in g.order if len(full[n]) > 1)
    queued = set(queue)
    while queue:
        n = queue.popleft()
        queued.discard(n)
        victims = _dominated_pairs(n, alive, cost, weight, out, incident[n])
        for s, s2 in victims:
            alive[n][s] = False
            removals.append((n, full[n][s], full[n][s2]))
        if victims:
            for nb, _, _ in incident[n]:
                if nb not in queued and len(full[nb]) > 1:
                    queue.append(nb)
                    queued.add(nb)
    reduced = {n: tuple(s for s, keep in zip(full[n], alive[n]) if keep) for n in g.order}
    return reduced, removals


def _dominated_pairs(n, alive, cost, weight, out, edges) -> list[tuple[int, int]]:
    """(strategy index, dominator index) of ``n``'s live strategies, each dominated by one still live.

    Whether ``s2`` dominates ``s`` depends on their own terms and the neighbours' domains only, so one
    matrix serves every removal at ``n``; a strategy is removed only while its dominator is still live.
    """
    idx = np.flatnonzero(alive[n])
    if len(idx) < 2:
        return []
    c = cost[n][idx]
    total = c[None, :] - c[:, None]  # [s, s2]: C[s2] − C[s]
    ok = np.ones((len(idx), len(idx)), dtype=bool)
    if weight is not None:
        w, o = weight[n][idx], out[n][idx]
        ok &= np.all(w[None, :, :] <= w[:, None, :], axis=2) & np.all(o[None, :, :] <= o[:, None, :], axis=2)
    for nb, rc, st in edges:
        cols = np.flatnonzero(alive[nb])
        m = rc[np.ix_(idx, cols)]
        feasible = np.isfinite(m)  # [s, q]
        with np.errstate(invalid="ignore"):
            diff = m[None, :, :] - m[:, None, :]  # [s, s2, q]: R[s2, q] − R[s, q]
        diff = np.where(feasible[:, None, :], diff, -np.inf)
        # s2 must connect wherever s does: an infinite (or nan) difference there rules the pair out
        ok &= ~np.any(np.isnan(diff) | (diff == np.inf), axis=2)
        worst = diff.max(axis=2, initial=-np.inf)
        total = total + np.where(np.isfinite(worst), worst, 0.0)
        if st is not None:
            sb = st[np.ix_(idx, cols)]  # [s, q, d]
            smaller = np.all(sb[None, :, :, :] <= sb[:, None, :, :], axis=3)  # [s, s2, q]
            ok &= np.all(smaller | ~feasible[:, None, :], axis=2)
    np.fill_diagonal(ok, False)
    hit = ok & (total <= 0.0)
    live = np.ones(len(idx), dtype=bool)
    out_pairs = []
    for a in range(len(idx)):
        by = np.flatnonzero(hit[a] & live)
        if len(by):
            live[a] = False
            out_pairs.append((int(idx[a]), int(idx[by[0]])))
    return out_pairs


def lift(plan: Plan, removals: Sequence[Removal]) -> Plan:
    """``plan`` mapped into the reduced space: each removed strategy replaced by its dominator, in order.

    The result is as good as ``plan`` and fits wherever ``plan`` fits.
    """
    strategies = dict(plan.items())
    for n, s, s2 in removals:
        if strategies.get(n) == s:
            strategies[n] = s2
    return Plan(strategies)
