"""The ILP's objective and budget rows: latency and energy as sums of node and edge terms.

Latency and energy are both Σ_v C[v, s]·x[v, s] + Σ_e R[e, s, t]·y[e, s, t]
with per-term coefficients from the cost terms (:func:`coefficients`):
seconds (``compute_s``, ``time_s``) or joules
(:func:`iopopt.cost.energy.node_energy_j`, :func:`~iopopt.cost.energy.edge_energy_j`).
The objective is one of them (or the peak-memory variable of :mod:`.memory`);
a budget is a row ``Σ ... ≤ limit``. Every expression is scaled so that its
reference value is about 1000 units, which keeps the backends' absolute
tolerances near 1e-10 relative.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ...compile.terms import terms as cost_terms
from ...cost.energy import edge_energy_j, energy, node_energy_j, power_increments
from ...cost.evaluate import evaluate, latency
from ..base import BUDGETS, SolverError
from .memory import MIB
from .model import Model, affine, linear

__all__ = ["coefficients", "least", "set_objective", "add_budget_rows"]

_UNITS = 1e3  # scaled value of the reference (objective) or of the limit (budget rows)


def coefficients(model: Model, quantity: str) -> tuple[dict[tuple[str, str], float], dict[tuple, float]]:
    """Per node term ``(node, strategy)`` and edge term ``(u, v, i, s, t)``: its seconds or joules.

    Raises :class:`SolverError` for energy when a device has no power figures
    or the network model gives no radio times.
    """
    problem = model.problem
    t = cost_terms(problem)
    power = None
    if quantity == "energy":
        power = power_increments(problem.cluster)
        if power is None:
            bare = [d.name for d in problem.cluster.devices if not d.has_power]
            raise SolverError(
                f"ilp: energy needs power figures on every device (active_power_w, idle_power_w, tx_power_w, "
                f"rx_power_w); device(s) {', '.join(bare)} have none"
            )
    nodes: dict[tuple[str, str], float] = {}
    for n, dom in model.domains.items():
        for s in dom:
            term = t.node(n, s)
            nodes[(n, s)] = term.compute_s if power is None else node_energy_j(power, term)
    edges: dict[tuple, float] = {}
    for (u, v, i), ye in model.y.items():
        for s, q in ye:
            e = t.edge(u, v, i, s, q)
            if power is None:
                edges[(u, v, i, s, q)] = e.time_s
                continue
            joules = edge_energy_j(power, e)
            if joules is None:
                raise SolverError(
                    f"ilp: energy needs the network model's radio times; {problem.network.name!r} "
                    f"({type(problem.network).__name__}) gives none"
                )
            edges[(u, v, i, s, q)] = joules
    return nodes, edges


def least(model: Model, quantity: str) -> float:
    """A lower bound on the quantity over every plan of the model: each term at its smallest."""
    nodes, edges = coefficients(model, quantity)
    total = 0.0
    for n, dom in model.domains.items():
        total += min(nodes[(n, s)] for s in dom)
    for (u, v, i), ye in model.y.items():
        if ye:
            total += min(edges[(u, v, i, s, q)] for s, q in ye)
    return total


def _expression(model: Model, quantity: str, scale: float) -> list:
    nodes, edges = coefficients(model, quantity)
    parts = [(c * scale, model.x[n][s]) for (n, s), c in nodes.items()]
    for (u, v, i), ye in model.y.items():
        parts.extend((edges[(u, v, i, s, q)] * scale, e) for (s, q), e in ye.items())
    return parts


def set_objective(pulp, model: Model, objective: str) -> None:
    """Make ``objective`` the model's objective; sets ``model.scale`` and ``model.offset``."""
    problem = model.problem
    plan = model.base if model.base is not None else problem.plan({})
    if objective == "peak_memory":  # the variable is in MiB; the objective in units of 1/1000 of a plan's peak
        ref = evaluate(problem, plan).peak_memory_bytes
        model.scale, model.offset = (_UNITS / ref if ref > 0 else 1.0), 0.0
        model.prob += affine(pulp, [(MIB * model.scale, linear(model.peak))])
        return
    ref = latency(problem, plan) if objective == "latency" else energy(problem, plan)
    scale = _UNITS / ref if ref is not None and ref > 0 and math.isfinite(ref) else 1.0
    expr = affine(pulp, _expression(model, objective, scale))
    model.prob += expr
    model.scale, model.offset = scale, expr.constant


def add_budget_rows(pulp, model: Model, budgets: Mapping[str, float]) -> None:
    """One row ``quantity ≤ limit`` per budget (``deadline_s``, ``energy_budget_j``), scaled to 1000 units."""
    for key, limit in budgets.items():
        quantity = BUDGETS[key]
        row = _expression(model, quantity, _UNITS / limit)
        model.prob += affine(pulp, row) <= _UNITS, f"budget_{key}"
        model.budget_rows[key] = limit
