"""Independent oracles of the solver contract: the standard problems, reference plans and exhaustive optima.

Everything here is drawn or enumerated without any solver: plain plans,
enumeration of a decision space and the cost model (:mod:`iopopt.solvers.testing`
uses it; it is public through that module).
"""

from __future__ import annotations

import functools
import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..cost.energy import energy
from ..cost.evaluate import CostReport, evaluate, latency
from ..frontend.capture import trace
from ..model.cluster import Cluster, Device
from ..model.network import SharedNetwork, SwitchedNetwork
from ..model.problem import Plan, Problem
from ..space.pairs import apply_pairs, base_plan, candidate_pairs, conflicts
from .base import BUDGET_RTOL, BUDGETS, Solver, objective_value

__all__ = [
    "CASE_IDS",
    "CONTRACT_POWER",
    "ContractCase",
    "contract_case",
    "contract_problems",
    "reference_plans",
    "space_plans",
    "space_size",
    "exhaustive_optimum",
    "within_budgets",
]


# -- standard problems -------------------------------------------------------------


@dataclass(frozen=True)
class ContractCase:
    """A contract problem and the torch module it was traced from (for ``verify``)."""

    id: str
    problem: Problem
    module: Any = field(repr=False, compare=False)


#: Power figures of every contract device (watts): an energy objective can be checked on every case.
CONTRACT_POWER = {"active_power_w": 5.0, "idle_power_w": 1.5, "tx_power_w": 2.5, "rx_power_w": 2.0}

# id -> (seed, n_layers, kind, channels, input_hw, devices' FLOP/s, network kind, tight memory)
# Devices are slow and the network fast, so that partitioning pays off and
# solvers face real choices. The first case is the smallest (960 plans).
_SPECS = {
    "chain7-k2-shared": (1, 2, "chain", (4, 8), (8, 8), (1e7, 1e7), "shared", False),
    "dag7-k3-switched": (30, 2, "dag", (2, 6), (8, 8), (2e7, 1e7, 1e7), "switched", False),
    "dag10-k2-memory": (7, 3, "dag", (2, 6), (8, 8), (1e7, 1e7), "shared", True),
    "chain-k3-shared": (2, 5, "chain", (4, 16), (12, 12), (1e7, 1e7, 1e7), "shared", False),
    "dag-k4-switched": (3, 6, "dag", (4, 16), (12, 12), (1e7, 1e7, 1e7, 1e7), "switched", False),
}

#: Ids of the contract problems, smallest first.
CASE_IDS: tuple[str, ...] = tuple(_SPECS)


@functools.cache
def contract_case(case_id: str) -> ContractCase:
    """The contract problem ``case_id`` (one of :data:`CASE_IDS`), built once per process.

    The ``...-memory`` case gives every device the peak memory of the ``oc``
    base plan, so some plans (all-host) do not fit while a fitting one exists.
    """
    from ..frontend.synthetic import random_cnn

    try:
        seed, n_layers, kind, channels, hw, flops, net, tight = _SPECS[case_id]
    except KeyError:
        raise ValueError(f"unknown contract case {case_id!r}; valid: {list(CASE_IDS)}") from None
    module, shape = random_cnn(seed, n_layers, kind=kind, channels=channels, input_hw=hw)
    graph = trace(module, shape, name=case_id)
    network = SharedNetwork(1e8, 1e-5) if net == "shared" else SwitchedNetwork(1e8, 1e-5)
    cluster = Cluster(tuple(Device(f"d{i}", f, **CONTRACT_POWER) for i, f in enumerate(flops)))
    problem = Problem(graph, cluster, network, name=case_id)
    if tight:
        capacity = evaluate(problem, base_plan(problem, "oc")).peak_memory_bytes
        cluster = Cluster(tuple(Device(f"d{i}", f, capacity, **CONTRACT_POWER) for i, f in enumerate(flops)))
        problem = Problem(graph, cluster, network, name=case_id)
    return ContractCase(case_id, problem, module)


def contract_problems() -> list[ContractCase]:
    """Every contract problem, smallest first."""
    return [contract_case(i) for i in CASE_IDS]


# -- independent plans -------------------------------------------------------------


def _random_valid_plan(problem: Problem, rng: random.Random, tries: int = 200) -> Plan | None:
    # whole-plan rejection sampling, on purpose unlike the `random` baseline's per-node filtering
    names = problem.graph.order
    for _ in range(tries):
        plan = Plan({n: rng.choice(problem.strategies(n)) for n in names})
        if math.isfinite(latency(problem, plan)):
            return plan
    return None


def reference_plans(problem: Problem, solver: Solver | None = None, n_random: int = 4, seed: int = 0) -> list[Plan]:
    """Valid plans to compare an exact solver's optimum with, drawn independently of it.

    For a solver with ``space: pairs``: its base plan, the base plan with each
    single candidate pair, and with ``n_random`` random sets of disjoint
    pairs. Otherwise: all-host, both base plans and ``n_random`` random valid
    plans.
    """
    rng = random.Random(seed)
    params = solver.get_params() if solver is not None else {}
    if params.get("space") == "pairs":
        base = base_plan(problem, params.get("base", "coedge"))
        pairs = candidate_pairs(problem)
        plans = [base] + [apply_pairs(base, [p]) for p in pairs]
        for _ in range(n_random):
            chosen, used = [], set()
            for p in rng.sample(pairs, len(pairs)):
                if rng.random() < 0.5 and used.isdisjoint(p.nodes):
                    chosen.append(p)
                    used.update(p.nodes)
            plans.append(apply_pairs(base, chosen))
        return plans
    plans = [problem.plan({}), base_plan(problem, "coedge"), base_plan(problem, "oc")]
    for _ in range(n_random):
        plan = _random_valid_plan(problem, rng)
        if plan is not None:
            plans.append(plan)
    return plans


def space_plans(problem: Problem, solver: Solver | None = None) -> Iterator[Plan]:
    """Every plan of the solver's decision space (all strategy combinations, or base plan + disjoint pairs).

    Infeasible combinations (a ``partial`` consumer of a non-partial producer)
    are included; their latency is ``inf``.
    """
    params = solver.get_params() if solver is not None else {}
    names = problem.graph.order
    if params.get("space") == "pairs":
        base = base_plan(problem, params.get("base", "coedge"))
        pairs = candidate_pairs(problem)
        clash = {(pairs.index(a), pairs.index(b)) for a, b in conflicts(pairs)}
        for bits in itertools.product((False, True), repeat=len(pairs)):
            chosen = [j for j, on in enumerate(bits) if on]
            if any((i, j) in clash for i in chosen for j in chosen):
                continue
            yield apply_pairs(base, [pairs[j] for j in chosen])
        return
    for combo in itertools.product(*(problem.strategies(n) for n in names)):
        yield Plan(dict(zip(names, combo)))


def space_size(problem: Problem, solver: Solver | None = None) -> int:
    """The number of combinations :func:`space_plans` walks (an upper bound on its plans)."""
    params = solver.get_params() if solver is not None else {}
    if params.get("space") == "pairs":
        return 2 ** len(candidate_pairs(problem))
    return math.prod(len(problem.strategies(n)) for n in problem.graph.order)


def exhaustive_optimum(problem: Problem, solver: Solver | None = None, memory: bool = True) -> float | None:
    """The least objective of a plan of the solver's space within its budgets (and memory, unless ``memory`` is false).

    The objective and budgets are the solver's settings (``objective``,
    default latency; :data:`~iopopt.solvers.base.BUDGETS`). An oracle
    independent of every solver: plain enumeration and the cost model. None
    when no plan fits.
    """
    params = solver.get_params() if solver is not None else {}
    name = params.get("objective", "latency")
    budgets = {key: params[key] for key in BUDGETS if params.get(key) is not None}
    limited = "memory_budget_bytes" in budgets or any(math.isfinite(d.memory_bytes) for d in problem.cluster.devices)
    best = None
    for plan in space_plans(problem, solver):
        lat = latency(problem, plan)
        if not math.isfinite(lat):
            continue
        value = lat if name == "latency" else energy(problem, plan) if name == "energy" else None
        if value is not None and best is not None and value >= best:
            continue
        if "deadline_s" in budgets and lat > budgets["deadline_s"] * (1 + BUDGET_RTOL):
            continue
        if "energy_budget_j" in budgets and not _within(energy(problem, plan), budgets["energy_budget_j"]):
            continue
        if (memory and limited) or name == "peak_memory":
            report = evaluate(problem, plan)
            if memory and not _fits(report, budgets.get("memory_budget_bytes")):
                continue
            if name == "peak_memory":
                value = float(report.peak_memory_bytes)
                if best is not None and value >= best:
                    continue
        best = value
    return best


def _within(value: float | None, limit: float) -> bool:
    return value is not None and value <= limit * (1 + BUDGET_RTOL)


def _fits(report: CostReport, memory_budget: float | None) -> bool:
    """Every device within its capacity and the memory budget."""
    limit = math.inf if memory_budget is None else memory_budget
    return all(m.peak_bytes <= min(m.capacity_bytes, limit) for m in report.per_device)


def within_budgets(report: CostReport, params: dict) -> bool:
    """The plan of ``report`` fits memory and every budget in ``params``."""
    for key, quantity in BUDGETS.items():
        limit = params.get(key)
        if limit is not None and key != "memory_budget_bytes" and not _within(objective_value(report, quantity), limit):
            return False
    return _fits(report, params.get("memory_budget_bytes"))
