"""Budgets of the ILP: checked against lower bounds before the backend runs, and named when they bind.

A budget below a lower bound on its quantity is infeasible without a solve:
``deadline_s`` against the larger of the problem's lower bound
(:meth:`~iopopt.model.problem.Problem.lower_bound_s`) and the sum of every
node and edge term at its smallest (:func:`.objective.least`);
``energy_budget_j`` against the latter in joules. When the backend proves a
model with budgets infeasible, :func:`binding` says which budget binds by
minimising each budgeted quantity on its own within memory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..base import BUDGET_RTOL, BUDGETS, SolveResult
from .model import Model
from .objective import least

__all__ = ["UNITS", "below_lower_bound", "binding"]

#: Units of each budget in messages.
UNITS = {"deadline_s": "s", "energy_budget_j": "J", "memory_budget_bytes": "B"}


def below_lower_bound(model: Model, budgets: Mapping[str, float]) -> dict | None:
    """The infeasibility report of the first budget below a lower bound on its quantity, else None."""
    problem = model.problem
    for key, limit in budgets.items():
        if key == "memory_budget_bytes":
            continue  # the memory rows' own lower bounds (model.hopeless) cover it
        quantity = BUDGETS[key]
        bound = least(model, quantity)
        what = "the sum of every operator's and resharding's least " + ("time" if quantity == "latency" else "energy")
        if quantity == "latency" and problem.lower_bound_s() > bound:
            bound, what = problem.lower_bound_s(), "no communication and a perfect balance of the work"
        if limit < bound * (1 - 1e-12):
            unit = UNITS[key]
            return {
                "reason": (
                    f"{key}={limit:.6g} {unit} is below {bound:.6g} {unit}, a lower bound on the {quantity} "
                    f"of any plan ({what})"
                ),
                "binding": [key],
                f"{quantity}_lower_bound": bound,
            }
    return None


def binding(solve_alone: Callable[[str], SolveResult], budgets: Mapping[str, float]) -> dict:
    """Which budgets make a model infeasible, as extra keys ``reason`` and ``binding``.

    ``solve_alone(quantity)`` minimises ``latency`` or ``energy`` within memory
    (and any memory budget) but no other budget. A budget below that least
    value binds on its own; when none does, they bind together. When memory
    alone admits no plan, that solve's own report is returned.
    """
    found: dict[str, float] = {}
    unknown = []
    for key, limit in budgets.items():
        if key == "memory_budget_bytes":
            continue
        quantity = BUDGETS[key]
        alone = solve_alone(quantity)
        if alone.termination == "infeasible":
            return dict(alone.extra)  # memory (or the memory budget) alone admits no plan
        if alone.plan is None or alone.termination != "optimal" or alone.objective is None:
            unknown.append(key)
            continue
        if alone.objective > limit * (1 + BUDGET_RTOL):
            found[key] = alone.objective
    if found:
        parts = [
            f"{key}={budgets[key]:.6g} {UNITS[key]} is below the least {BUDGETS[key]} of any plan within memory, "
            f"{least:.6g} {UNITS[key]}"
            for key, least in found.items()
        ]
        out: dict = {"reason": "; ".join(parts), "binding": list(found)}
        out.update({f"least_{BUDGETS[key]}": value for key, value in found.items()})
        return out
    keys = list(budgets)
    if unknown:
        reason = f"no plan meets {', '.join(keys)} at once (could not tell which binds: {', '.join(unknown)} stopped)"
    else:
        reason = f"no plan meets {', '.join(keys)} at once, though each budget alone can be met"
    return {"reason": reason, "binding": keys}
