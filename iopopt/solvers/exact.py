"""Exact cross-check solvers: dynamic programming on chains (``dp``) and exhaustive search (``brute``).

Both exist to check the ILP (and the greedy) with an independent algorithm:
``dp`` is linear in the graph size but needs a chain; ``brute`` takes any
graph but only tiny ones, and refuses bigger instances with a clear error
instead of running for hours.
"""

from __future__ import annotations

import math

import numpy as np

from ..compile.terms import terms
from ..cost.evaluate import latency
from ..model.problem import Plan, Problem
from ..space.pairs import BASES, apply_pairs, base_plan, candidate_pairs, conflicts
from .base import Solver, SolverError, SolveResult

__all__ = ["DpSolver", "BruteSolver", "SPACES"]

#: Decision spaces of ``brute`` (as for ``ilp``).
SPACES = ("full", "pairs")


class DpSolver(Solver):
    """Exact dynamic programming over a chain graph (every node: at most one input and one consumer).

    Latency on a chain is Σ_v node(v, s_v) + Σ edge(pred(v), v, s_pred, s_v),
    so the optimum follows from one pass in topological order keeping, per
    strategy of the current node, the cheapest prefix. Ties go to the earlier
    strategy in :func:`iopopt.layouts.strategies_for` order.

    Memory capacities are *ignored*: ``dp`` minimises latency only (the peak
    is a maximum over steps of a sum over the whole graph, which does not
    decompose along the chain). :meth:`Solver.solve` still checks the plan, and
    a plan over capacity comes back with ``memory_fits`` false; use ``ilp`` or
    ``brute`` for memory-constrained instances.
    """

    name = "dp"
    exact = True

    def _solve(self, problem: Problem) -> SolveResult:
        g, t = problem.graph, terms(problem)
        _require_chain(problem)
        # best[s] = (cost of the cheapest prefix ending with this node in s, strategy of the predecessor)
        back: dict[str, dict[str, str | None]] = {}
        best: dict[str, float] = {}
        prev = None
        for op in g:
            cur: dict[str, float] = {}
            arg: dict[str, str | None] = {}
            for s in problem.strategies(op.name):
                own = t.node(op.name, s).compute_s
                if prev is None:
                    cur[s], arg[s] = own, None
                    continue
                choice, cost = None, math.inf
                for q, c in best.items():
                    e = t.edge(prev, op.name, 0, q, s)
                    if e is not None and c + e.time_s < cost:
                        choice, cost = q, c + e.time_s
                if choice is not None:
                    cur[s], arg[s] = cost + own, choice
            best, back[op.name], prev = cur, arg, op.name
        # the last node of a chain is the graph output
        s = min(best, key=lambda q: (best[q], problem.strategies(prev).index(q)))
        plan = {}
        for name in reversed(g.order):
            plan[name] = s
            s = back[name][s]
        plan = Plan({n: plan[n] for n in g.order})
        objective = latency(problem, plan)
        extra = {"memory": "ignored: dp minimises latency only"}
        return SolveResult(self.name, "optimal", plan, objective=objective, bound=objective, extra=extra)


def _require_chain(problem: Problem) -> None:
    g = problem.graph
    if g.is_chain():
        return
    for op in g:
        if len(op.inputs) > 1:
            why = f"node {op.name!r} has {len(op.inputs)} inputs"
            break
        cons = g.consumers(op.name)
        if len(cons) > 1:
            why = f"node {op.name!r} has {len(cons)} consumers"
            break
    raise SolverError(f"dp: graph {g.name!r} is not a chain ({why}); use ilp or brute for DAGs")


class BruteSolver(Solver):
    """Exhaustive search: every plan of the space, the fastest one that fits memory.

    Parameters
    ----------
    space : {"full", "pairs"}
        ``full``: every strategy of every node (Π_v #strategies plans);
        ``pairs``: the base plan ``base`` plus every subset of candidate IOP
        pairs (2^#pairs subsets; overlapping subsets are skipped).
    max_plans : int
        Refuse (:class:`SolverError`) when the space has more plans than this.
    base : {"coedge", "oc"}
        Base plan of the ``pairs`` space.

    Latency and per-device memory of all plans are computed at once with
    numpy from the problem's cost tables (the formulas of
    :func:`iopopt.cost.memory_profile`); the winner is re-checked with
    :func:`iopopt.evaluate`.
    """

    name = "brute"
    exact = True

    def __init__(self, space: str = "full", max_plans: int = 200000, base: str = "coedge"):
        self.space = space
        self.max_plans = max_plans
        self.base = base

    def check_settings(self) -> None:
        """Raise :class:`SolverError` naming a bad setting and its valid values."""
        if self.space not in SPACES:
            raise SolverError(f"brute: unknown space {self.space!r}; valid: {list(SPACES)}")
        if self.space == "pairs" and self.base not in BASES:
            raise SolverError(f"brute: unknown base plan {self.base!r}; valid: {list(BASES)}")
        if isinstance(self.max_plans, bool) or not isinstance(self.max_plans, int) or self.max_plans < 1:
            raise SolverError(f"brute: max_plans must be a positive integer, got {self.max_plans!r}")

    def _solve(self, problem: Problem) -> SolveResult:
        order = problem.graph.order
        strategies = [problem.strategies(n) for n in order]
        if self.space == "full":
            count = math.prod(len(s) for s in strategies)
            self._refuse_if_big(count, "Π_v #strategies")
            choices = _all_index_plans([len(s) for s in strategies])
        else:
            pairs = candidate_pairs(problem)
            count = 2 ** len(pairs)
            self._refuse_if_big(count, f"2^{len(pairs)} pair subsets")
            choices = _pair_index_plans(problem, strategies, pairs, base_plan(problem, self.base))
        lat = _latencies(problem, strategies, choices)
        caps = [dev.memory_bytes for dev in problem.cluster.devices]
        fits = np.isfinite(lat)
        extra = {"space": self.space, "plans": int(len(choices))}
        peaks = None
        if any(math.isfinite(c) for c in caps):
            peaks = _peaks(problem, strategies, choices)
            fits &= np.all(peaks <= np.asarray(caps, dtype=float)[None, :], axis=1)
        if not fits.any():
            extra.update(_why_nothing_fits(problem, peaks, np.isfinite(lat)))
            return SolveResult(self.name, "infeasible", None, extra=extra)
        cand = np.flatnonzero(fits)
        best = int(cand[np.argmin(lat[cand])])  # argmin keeps the first of equal values: deterministic
        plan = Plan({n: strategies[v][choices[best, v]] for v, n in enumerate(order)})
        if peaks is not None:
            extra["peak_bytes"] = [int(b) for b in peaks[best]]  # Solver.solve checks them against the cost model
        objective = latency(problem, plan)
        return SolveResult(self.name, "optimal", plan, objective=objective, bound=objective, extra=extra)

    def _refuse_if_big(self, count: int, what: str) -> None:
        if count > self.max_plans:
            raise SolverError(
                f"brute: the {self.space} space has {count if count < 10**7 else f'{count:.3g}'} plans ({what}), "
                f"more than max_plans={self.max_plans}; "
                "use ilp, or raise max_plans"
            )


def _all_index_plans(sizes: list[int]) -> np.ndarray:
    """Every combination of strategy indices, shape (#plans, #nodes), in lexicographic order."""
    grids = np.indices(sizes, dtype=np.int8).reshape(len(sizes), -1)
    return np.ascontiguousarray(grids.T)


def _pair_index_plans(problem, strategies, pairs, base: Plan) -> np.ndarray:
    order = problem.graph.order
    pos = {n: v for v, n in enumerate(order)}
    base_idx = np.array([strategies[v].index(base[n]) for v, n in enumerate(order)], dtype=np.int8)
    m = len(pairs)
    bits = ((np.arange(2**m)[:, None] >> np.arange(m)[None, :]) & 1).astype(bool)
    ok = np.ones(len(bits), dtype=bool)
    for p, q in conflicts(pairs):
        ok &= ~(bits[:, pairs.index(p)] & bits[:, pairs.index(q)])
    bits = bits[ok]
    choices = np.repeat(base_idx[None, :], len(bits), axis=0)
    for j, p in enumerate(pairs):
        for n, s in p.strategies().items():
            choices[bits[:, j], pos[n]] = strategies[pos[n]].index(s)
    # sanity: the index plans are exactly apply_pairs of the subsets
    if len(bits) > 1:
        last = [p for j, p in enumerate(pairs) if bits[-1, j]]
        want = apply_pairs(base, last)
        assert all(strategies[v][choices[-1, v]] == want[n] for v, n in enumerate(order))
    return choices


def _latencies(problem, strategies, choices) -> np.ndarray:
    g, t = problem.graph, terms(problem)
    pos = {n: v for v, n in enumerate(g.order)}
    total = np.zeros(len(choices))
    for v, n in enumerate(g.order):
        cost = np.array([t.node(n, s).compute_s for s in strategies[v]])
        total += cost[choices[:, v]]
    for u, w, i in g.edges():
        a, b = pos[u], pos[w]
        mat = np.array(
            [[_time(t.edge(u, w, i, s, q)) for q in strategies[b]] for s in strategies[a]]
        )
        total += mat[choices[:, a], choices[:, b]]
    return total


def _time(e) -> float:
    return math.inf if e is None else e.time_s


def _peaks(problem, strategies, choices) -> np.ndarray:
    """Peak bytes per plan and device, shape (#plans, k), as in :func:`iopopt.cost.memory_profile`."""
    g, t = problem.graph, terms(problem)
    k = problem.k
    order = g.order
    pos = {n: v for v, n in enumerate(order)}
    last = {n: g.last_use(n) for n in order}
    n_plans = len(choices)
    freed: dict[int, list[int]] = {}  # step → stored tensors whose last consumer it is
    for u, n in enumerate(order):
        if last[n] > u:
            freed.setdefault(last[n], []).append(u)

    def per_node(v, attr):
        n = order[v]
        table = np.array([getattr(t.node(n, s), attr) for s in strategies[v]], dtype=np.int64)
        return table[choices[:, v]]  # (#plans, k)

    weights = np.zeros((n_plans, k), dtype=np.int64)
    outs = []
    for v in range(len(order)):
        weights += per_node(v, "weight_bytes")
        outs.append(per_node(v, "out_bytes"))
    peak = np.zeros((n_plans, k), dtype=np.int64)
    live = np.zeros((n_plans, k), dtype=np.int64)
    for p, n in enumerate(order):
        held = live + outs[p]
        for i, src in enumerate(g[n].inputs):
            a = pos[src]
            table = np.zeros((len(strategies[a]), len(strategies[p]), k), dtype=np.int64)
            for x, s in enumerate(strategies[a]):
                for y, q in enumerate(strategies[p]):
                    e = t.edge(src, n, i, s, q)
                    if e is not None:
                        table[x, y] = e.staging_bytes
            held += table[choices[:, a], choices[:, p]]
        np.maximum(peak, held, out=peak)
        if last[n] > p:
            live += outs[p]
        for u in freed.get(p, ()):
            live -= outs[u]
    return weights + peak


def _why_nothing_fits(problem, peaks, feasible) -> dict:
    devs = problem.cluster.devices
    if peaks is None:  # pragma: no cover - a base plan always exists
        return {"reason": "no plan has feasible edges"}
    least = peaks[feasible].min(axis=0)
    over = [d for d, dev in enumerate(devs) if least[d] > dev.memory_bytes]
    lower = {
        dev.name: f"needs at least {int(least[d])} B, capacity {dev.memory_bytes:.0f} B"
        for d, dev in enumerate(devs)
        if math.isfinite(dev.memory_bytes)
    }
    if over:
        names = [devs[d].name for d in over]
        reason = f"device(s) {', '.join(names)} exceed their capacity in every plan"
    else:
        finite = [d for d, dev in enumerate(devs) if math.isfinite(dev.memory_bytes)]
        finite.sort(key=lambda d: -least[d] / devs[d].memory_bytes)
        names = [devs[d].name for d in finite[:2]]
        reason = (
            "no plan fits all memory capacities at once (each device alone could fit); "
            f"tightest: {', '.join(names)}"
        )
    return {"reason": reason, "binding_devices": names, "memory_lower_bounds": lower}
