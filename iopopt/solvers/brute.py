"""Exhaustive search (``brute``): every plan of a tiny problem, the best one within memory and the budgets.

An oracle independent of the ILP: plain enumeration of the decision space and
numpy sums of the cost tables. It refuses spaces bigger than ``max_plans``
with a clear error instead of running for hours.
"""

from __future__ import annotations

import math

import numpy as np

from ..compile.terms import terms
from ..model.problem import Plan, Problem
from ..space.pairs import BASES, apply_pairs, base_plan, candidate_pairs, conflicts
from ._objectives import objective_value_of, term_costs
from .base import BUDGETS, Solver, SolverError, SolveResult, check_budgets, check_objective

__all__ = ["BruteSolver", "SPACES"]

#: Decision spaces of ``brute`` (as for ``ilp``).
SPACES = ("full", "pairs")


class BruteSolver(Solver):
    """Exhaustive search: every plan of the space, the best one that fits memory and the budgets.

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
    objective : {"latency", "energy", "peak_memory"}
        What to minimise, as for ``ilp``.
    deadline_s, energy_budget_j, memory_budget_bytes : float or None
        Budgets, as for ``ilp`` (None: no budget).

    Latency, energy and per-device memory of all plans are computed at once
    with numpy from the problem's cost tables (the formulas of
    :func:`iopopt.cost.memory_profile` and :mod:`iopopt.cost.energy`); the
    winner is re-checked with :func:`iopopt.evaluate`.
    """

    name = "brute"
    exact = True

    def __init__(
        self,
        space: str = "full",
        max_plans: int = 1000000,
        base: str = "coedge",
        objective: str = "latency",
        deadline_s: float | None = None,
        energy_budget_j: float | None = None,
        memory_budget_bytes: float | None = None,
    ):
        self.space = space
        self.max_plans = max_plans
        self.base = base
        self.objective = objective
        self.deadline_s = deadline_s
        self.energy_budget_j = energy_budget_j
        self.memory_budget_bytes = memory_budget_bytes

    def check_settings(self) -> None:
        """Raise :class:`SolverError` naming a bad setting and its valid values."""
        if self.space not in SPACES:
            raise SolverError(f"brute: unknown space {self.space!r}; valid: {list(SPACES)}")
        if self.space == "pairs" and self.base not in BASES:
            raise SolverError(f"brute: unknown base plan {self.base!r}; valid: {list(BASES)}")
        if isinstance(self.max_plans, bool) or not isinstance(self.max_plans, int) or self.max_plans < 1:
            raise SolverError(f"brute: max_plans must be a positive integer, got {self.max_plans!r}")
        check_objective("brute", self.objective)
        check_budgets("brute", self.get_params())

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
        lat = _totals(problem, strategies, choices, "latency")
        need_energy = self.objective == "energy" or self.energy_budget_j is not None
        joules = _totals(problem, strategies, choices, "energy") if need_energy else None
        budget = self.memory_budget_bytes
        caps = [min(dev.memory_bytes, budget) if budget is not None else dev.memory_bytes
                for dev in problem.cluster.devices]
        fits = np.isfinite(lat)
        extra: dict = {"space": self.space, "plans": int(len(choices))}
        peaks = None
        if any(math.isfinite(c) for c in caps) or self.objective == "peak_memory":
            peaks = _peaks(problem, strategies, choices)
            fits &= np.all(peaks <= np.asarray(caps, dtype=float)[None, :], axis=1)
        within = fits.copy()
        if self.deadline_s is not None:
            within &= lat <= self.deadline_s * (1 + 1e-12)
        if joules is not None and self.energy_budget_j is not None:
            within &= joules <= self.energy_budget_j * (1 + 1e-12)
        if not within.any():
            if not fits.any():
                extra.update(_why_nothing_fits(problem, peaks, np.isfinite(lat)))
                if budget is not None:
                    extra["binding"] = ["memory_budget_bytes"]
            else:
                extra.update(_binding_budgets(self, lat[fits], None if joules is None else joules[fits]))
            return SolveResult(self.name, "infeasible", None, extra=extra, objective_name=self.objective)
        cand = np.flatnonzero(within)
        if self.objective == "energy":
            score = joules
        elif self.objective == "peak_memory":
            score = peaks.max(axis=1)
        else:
            score = lat
        best = int(cand[np.argmin(score[cand])])  # argmin keeps the first of equal values: deterministic
        plan = Plan({n: strategies[v][choices[best, v]] for v, n in enumerate(order)})
        if peaks is not None:
            extra["peak_bytes"] = [int(b) for b in peaks[best]]  # Solver.solve checks them against the cost model
        objective = objective_value_of(problem, plan, self.objective)
        return SolveResult(
            self.name, "optimal", plan, objective=objective, bound=objective, extra=extra, objective_name=self.objective
        )

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


def _totals(problem, strategies, choices, quantity: str) -> np.ndarray:
    """Latency (seconds) or energy (joules) of every plan, summed from the node and edge terms."""
    g, t = problem.graph, terms(problem)
    node_cost, edge_cost = term_costs(problem, quantity, "brute")
    pos = {n: v for v, n in enumerate(g.order)}
    total = np.zeros(len(choices))
    for v, n in enumerate(g.order):
        cost = np.array([node_cost(t.node(n, s)) for s in strategies[v]])
        total += cost[choices[:, v]]
    for u, w, i in g.edges():
        a, b = pos[u], pos[w]
        mat = np.array(
            [[edge_cost(t.edge(u, w, i, s, q)) for q in strategies[b]] for s in strategies[a]]
        )
        total += mat[choices[:, a], choices[:, b]]
    return total


def _binding_budgets(solver: BruteSolver, lat: np.ndarray, joules: np.ndarray | None) -> dict:
    """Which budget leaves no plan (among those within memory), as extra keys ``reason`` and ``binding``."""
    found = {}
    if solver.deadline_s is not None and lat.min() > solver.deadline_s * (1 + 1e-12):
        found["deadline_s"] = float(lat.min())
    budget = solver.energy_budget_j
    if joules is not None and budget is not None and joules.min() > budget * (1 + 1e-12):
        found["energy_budget_j"] = float(joules.min())
    if found:
        parts = [f"{key}={solver.budgets()[key]:.6g} is below the least {BUDGETS[key]} of any plan within memory, "
                 f"{least:.6g}" for key, least in found.items()]
        return {"reason": "; ".join(parts), "binding": list(found)}
    keys = [k for k in ("deadline_s", "energy_budget_j") if getattr(solver, k) is not None]
    return {"reason": f"no plan meets {', '.join(keys)} at once, though each budget alone can be met",
            "binding": keys}


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
