"""Robustness to the network: plans made for a nominal network, evaluated at other bandwidths.

For each solver, its plan is made once on the nominal problem and then
priced by the cost model on the same problem with every bandwidth scaled by
a factor (¼× … 4× by default). The regret at a factor is the latency of that
nominal plan over the latency of the same solver re-run at that bandwidth,
minus one; ``gap_to_optimum`` compares it with the exact optimum there
(:class:`~iopopt.solvers.ilp.IlpSolver`).

``measure`` is the hook for real measurements: a callable
``measure(problem, plan) -> seconds`` run for every plan at every factor.
No testbed exists yet (DESIGN §7's emulated testbed is future work), so the
application passes none and the records say ``measured_s: null``; a
researcher with boards, or with the testbed once it lands, passes one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..cost.evaluate import evaluate
from ..model.network import NetworkModel
from ..model.problem import Plan, Problem
from ..solvers.ilp import IlpSolver
from ..solvers.registry import make_solver

__all__ = ["FACTORS", "SOLVERS", "scale_network", "robustness_records"]

#: Bandwidth factors of the sweep (multiples of the nominal bandwidth).
FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)
#: Solvers whose nominal plans are evaluated.
SOLVERS = ("coedge", "greedy_iop", "ilp")

Measure = Callable[[Problem, Plan], float]


def scale_network(network: NetworkModel, factor: float) -> NetworkModel:
    """A copy of ``network`` with every bandwidth multiplied by ``factor`` (per-message latency unchanged)."""
    if not dataclasses.is_dataclass(network) or not hasattr(network, "bandwidth_bytes_per_s"):
        raise ValueError(f"cannot scale the bandwidth of network model {type(network).__name__}")
    changes: dict[str, Any] = {"bandwidth_bytes_per_s": network.bandwidth_bytes_per_s * factor}
    per_device = getattr(network, "device_bandwidths", None)
    if per_device is not None:
        changes["device_bandwidths"] = tuple(b * factor for b in per_device)
    return dataclasses.replace(network, **changes)  # type: ignore[type-var]


def _plan_id(plan: Plan) -> str:
    return hashlib.sha1(json.dumps(sorted(plan.items())).encode()).hexdigest()[:8]


def _solver(name: str, ilp_settings: Mapping[str, Any]):
    return make_solver(name, **ilp_settings) if name.startswith("ilp") else make_solver(name)


def robustness_records(problem: Problem, solvers: Sequence[str] = SOLVERS, factors: Sequence[float] = FACTORS,
                       measure: Measure | None = None,
                       ilp_settings: Mapping[str, Any] | None = None) -> list[dict]:
    """One record per solver and factor (see the module docstring).

    Keys: ``solver``, ``factor``, ``bandwidth_bytes_per_s``, ``latency_s``
    and ``energy_j`` (the nominal plan at that bandwidth), ``reoptimised_s``
    (the same solver re-run there), ``optimum_s`` and ``optimum_termination``
    (the ilp there), ``regret``, ``gap_to_optimum``, ``measured_s`` (None
    without ``measure``), ``plan_id`` and ``strategies`` (the nominal plan).
    """
    ilp_settings = dict(ilp_settings or {})
    nominal = {}
    for name in solvers:
        result = _solver(name, ilp_settings).solve(problem)
        if result.plan is None:
            raise RuntimeError(f"{name} found no plan on the nominal problem ({result.termination})")
        nominal[name] = result.plan
    records = []
    for factor in factors:
        scaled = dataclasses.replace(problem, network=scale_network(problem.network, factor))
        optimum = IlpSolver(**ilp_settings).solve(scaled)
        for name, plan in nominal.items():
            report = evaluate(scaled, plan)
            again = _solver(name, ilp_settings).solve(scaled)
            records.append({
                "solver": name,
                "factor": factor,
                "bandwidth_bytes_per_s": scaled.network.bandwidth_bytes_per_s,
                "latency_s": report.latency_s,
                "energy_j": report.energy_j,
                "reoptimised_s": again.report.latency_s if again.report is not None else None,
                "optimum_s": optimum.objective,
                "optimum_termination": str(optimum.termination),
                "regret": report.latency_s / again.report.latency_s - 1 if again.report is not None else None,
                "gap_to_optimum": report.latency_s / optimum.objective - 1 if optimum.objective else None,
                "measured_s": None if measure is None else float(measure(scaled, plan)),
                "plan_id": _plan_id(plan),
                "strategies": plan.to_dict(),
            })
    return records
