"""Pareto fronts of a problem: latency–energy and latency–peak memory, every point proven optimal.

Each front is swept by the ε-constraint method with the exact solver
(:class:`~iopopt.solvers.ilp.IlpSolver`), and every point is made
lexicographic, so it is Pareto-optimal and not merely weakly so:

each point is the least energy within a latency budget ε (the least latency
within a per-device memory budget ε), then the least latency within that
energy and ε (the least peak within that latency and ε). :func:`front`
first walks the front from one end, each next budget just below the last
point, visiting every Pareto point in turn: when the walk ends by itself
(no plan left) it has found the whole front, and every baseline -- any plan
at all -- is dominated by one of its points or lies on it. A front with
more points than the walk may take is sampled instead: its other end,
``points`` budgets evenly between the ends, and one budget at each
baseline's own figure (its latency, or its peak), which proves that a point
of the front dominates the baseline or meets it.

A point is proven when both of its solves are ``optimal``. Points at the same
place on the front's axes are kept once. The baselines (``single``, ``coedge``, ``oc``,
``greedy_iop`` by default) are placed beside the front with the solver that
dominates or meets them. Everything is a plain record
(:func:`pareto_records`); :mod:`iopopt.report.pareto` draws and tabulates it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..cost.evaluate import CostReport
from ..model.problem import Plan, Problem
from ..solvers.base import SolveResult
from ..solvers.ilp import IlpSolver
from ..solvers.registry import make_solver

__all__ = ["FRONTS", "BASELINES", "FrontPoint", "front", "pareto_records", "dominates"]

#: front name → (the budgeted objective swept by ε, the objective minimised within it)
FRONTS = {"energy": ("latency", "energy"), "memory": ("peak_memory", "latency")}
#: The baselines placed beside each front.
BASELINES = ("single", "coedge", "oc", "greedy_iop")
_BUDGET = {"latency": "deadline_s", "energy": "energy_budget_j", "peak_memory": "memory_budget_bytes"}
_TIE = 1e-9  # relative: a lexicographic second solve may exceed the first's value by this much (ties)
_STEP = 1e-5  # relative: a walk's next budget lies this much below the last point's figure (backend tolerances)
_RTOL = 1e-7  # relative tolerance of dominance (the backends' budget tolerance)


@dataclass(frozen=True)
class FrontPoint:
    """One proven point of a front (or a baseline beside it), with its plan's three figures."""

    front: str
    source: str  # "front" or "baseline"
    label: str
    epsilon: float | None
    latency_s: float
    energy_j: float | None
    peak_memory_bytes: int
    termination: str
    plan: Plan

    def value(self, objective: str) -> float:
        got = {"latency": self.latency_s, "energy": self.energy_j, "peak_memory": float(self.peak_memory_bytes)}
        value = got[objective]
        assert value is not None
        return value


def dominates(a: FrontPoint, b: FrontPoint, axes: Sequence[str]) -> bool:
    """``a`` is no worse than ``b`` on every axis (within :data:`_RTOL`)."""
    return all(a.value(x) <= b.value(x) * (1 + _RTOL) + 1e-15 for x in axes)


def _plan_id(plan: Plan) -> str:
    blob = json.dumps(sorted(plan.items())).encode()
    return hashlib.sha1(blob).hexdigest()[:8]


def _point(front_name: str, source: str, label: str, eps: float | None, report: CostReport, plan: Plan,
           termination: str) -> FrontPoint:
    return FrontPoint(front_name, source, label, eps, report.latency_s, report.energy_j, report.peak_memory_bytes,
                      termination, plan)


def _solve(problem: Problem, settings: Mapping[str, Any], objective: str, budget: tuple[str, float] | None):
    params = dict(settings, objective=objective)
    if budget is not None:
        params[_BUDGET[budget[0]]] = budget[1]
    return IlpSolver(**params).solve(problem)


def _lexicographic(problem: Problem, settings, first: str, second: str,
                   budget: tuple[str, float] | None) -> tuple[SolveResult, str]:
    """Minimise ``first`` (within ``budget``), then ``second`` within the first's optimum (and the budget)."""
    a = _solve(problem, settings, first, budget)
    if a.plan is None:
        return a, str(a.termination)
    limit = a.objective * (1 + _TIE) if first != "peak_memory" else a.objective
    params = dict(settings, objective=second, **{_BUDGET[first]: limit})
    if budget is not None and budget[0] != first:
        params[_BUDGET[budget[0]]] = budget[1]
    b = IlpSolver(**params).solve(problem)
    if b.plan is None:  # cannot happen for an optimal first solve; keep the first plan
        return a, f"{a.termination}/{b.termination}"
    both = "optimal" if a.termination == b.termination == "optimal" else f"{a.termination}/{b.termination}"
    return b, both


def front(problem: Problem, name: str, points: int = 10, settings: Mapping[str, Any] | None = None,
          baselines: Mapping[str, SolveResult] | None = None, walk: int = 12) -> tuple[list[FrontPoint], bool]:
    """The points of front ``name`` (``energy`` or ``memory``) and whether they are the whole front.

    First a walk of at most ``walk`` points: from the end that is best in
    the minimised objective, each next budget ε just below the last point's
    figure (:data:`_STEP` relative), until no plan is left -- every Pareto
    point in turn, so a walk that ends by itself has found the whole front.
    Otherwise a grid follows: the other end, ``points`` budgets evenly
    between the ends, and one at each baseline's own figure. Sorted by
    latency, one point per position.
    """
    if name not in FRONTS:
        raise ValueError(f"unknown front {name!r}; valid: {', '.join(FRONTS)}")
    swept, other = FRONTS[name]
    settings = dict(settings or {})
    found: list[FrontPoint] = []

    def solve(eps: float | None, label: str) -> FrontPoint | None:
        budget = None if eps is None else (swept, float(int(eps)) if swept == "peak_memory" else eps)
        res, term = _lexicographic(problem, settings, other, swept, budget)
        if res.plan is None:
            return None
        found.append(_point(name, "front", label, None if budget is None else budget[1], res.report, res.plan, term))
        return found[-1]

    first = last = solve(None, f"least {other}")
    while last is not None and len(found) < walk:
        eps = last.value(swept) * (1 - _STEP)
        last = solve(eps, _budget_label(swept, eps))
    complete = first is not None and last is None
    if not complete:
        ends = [p for p in (first, _end(problem, settings, name, swept, other, found)) if p]
        if len(ends) == 2:
            lo, hi = sorted(p.value(swept) for p in ends)
            for i in range(1, points + 1):
                eps = lo + (hi - lo) * i / (points + 1)
                solve(eps, _budget_label(swept, eps))
    if not complete:
        for b_name, b in (baselines or {}).items():
            if b.report is not None:
                eps = float(b.report.peak_memory_bytes) if swept == "peak_memory" else b.report.latency_s
                solve(eps, f"{'latency' if swept == 'latency' else 'peak'} <= {b_name}'s")
    return _distinct(found, _axes(name)), complete


def _budget_label(swept: str, eps: float) -> str:
    return f"latency <= {eps * 1e3:.6g} ms" if swept == "latency" else f"peak <= {eps / 1e6:.6g} MB"


def _end(problem, settings, name, swept, other, found) -> FrontPoint | None:
    """The end of the front best in ``swept``: its least value, then the least ``other`` within it."""
    res, term = _lexicographic(problem, settings, swept, other, None)
    if res.plan is None:
        return None
    found.append(_point(name, "front", f"least {swept}", None, res.report, res.plan, term))
    return found[-1]


def _distinct(points: list[FrontPoint], axes: Sequence[str]) -> list[FrontPoint]:
    """One point per position on the axes (within :data:`_RTOL`), sorted by latency."""
    out: list[FrontPoint] = []
    for p in sorted(points, key=lambda p: tuple(p.value(x) for x in axes)):
        if not any(dominates(p, q, axes) and dominates(q, p, axes) for q in out):
            out.append(p)
    return out


def _axes(name: str) -> tuple[str, str]:
    return ("latency", "energy") if name == "energy" else ("latency", "peak_memory")


def pareto_records(problem: Problem, fronts: Sequence[str] = ("energy", "memory"), points: int = 10,
                   baselines: Sequence[str] = BASELINES, settings: Mapping[str, Any] | None = None,
                   walk: int = 12) -> list[dict]:
    """Every front point and baseline as a flat record (see the module docstring).

    Record keys: ``front``, ``source`` (front or baseline), ``label``,
    ``epsilon``, ``latency_s``, ``energy_j``, ``peak_memory_bytes``,
    ``termination``, ``proven``, ``pareto`` (a front point no other front
    point strictly dominates), ``complete`` (the walk found every point of
    its front), ``dominated_by`` (for a baseline: the label of a front point
    dominating or meeting it, else null), ``plan_id`` (a short hash of the
    plan's strategies) and ``strategies``.
    """
    base_results = {b: make_solver(b).solve(problem) for b in baselines}
    records: list[dict] = []
    for name in fronts:
        if name == "energy" and not problem.cluster.has_power:
            continue  # no energy without power figures
        axes = _axes(name)
        pts, complete = front(problem, name, points, settings, base_results, walk=walk)
        for p in pts:
            strictly = [q for q in pts if q is not p and dominates(q, p, axes) and not dominates(p, q, axes)]
            records.append(dict(_record(p, proven=p.termination == "optimal", pareto=not strictly), complete=complete))
        for b_name, res in base_results.items():
            if res.plan is None or res.report is None:
                continue
            bp = _point(name, "baseline", b_name, None, res.report, res.plan, str(res.termination))
            over = [q for q in pts if q.termination == "optimal" and dominates(q, bp, axes)]
            rec = dict(_record(bp, proven=False, pareto=False), complete=complete)
            rec["dominated_by"] = over[0].label if over else None
            records.append(rec)
    return records


def _record(p: FrontPoint, proven: bool, pareto: bool) -> dict:
    return {
        "front": p.front,
        "source": p.source,
        "label": p.label,
        "epsilon": p.epsilon,
        "latency_s": p.latency_s,
        "energy_j": p.energy_j,
        "peak_memory_bytes": p.peak_memory_bytes,
        "termination": p.termination,
        "proven": proven,
        "pareto": pareto,
        "dominated_by": None,
        "plan_id": _plan_id(p.plan),
        "strategies": p.plan.to_dict(),
    }
