"""Objectives of the exact cross-check solvers: node and edge terms priced in seconds or joules."""

from __future__ import annotations

import math

from ..cost.energy import edge_energy_j, energy, node_energy_j, power_increments
from ..cost.evaluate import evaluate, latency
from ..model.problem import Plan, Problem
from .base import SolverError

__all__ = ["term_costs", "objective_value_of"]


def term_costs(problem: Problem, objective: str, owner: str):
    """Functions pricing a node term and an edge term in seconds, or in joules for ``energy``."""
    if objective != "energy":
        return (lambda term: term.compute_s), (lambda e: math.inf if e is None else e.time_s)
    power = power_increments(problem.cluster)
    if power is None:
        bare = [d.name for d in problem.cluster.devices if not d.has_power]
        raise SolverError(f"{owner}: energy needs power figures on every device; device(s) {', '.join(bare)} have none")

    def edge(e) -> float:
        if e is None:
            return math.inf
        joules = edge_energy_j(power, e)
        if joules is None:
            raise SolverError(
                f"{owner}: energy needs the network model's radio times; {problem.network.name!r} has none"
            )
        return joules

    return (lambda term: node_energy_j(power, term)), edge


def objective_value_of(problem: Problem, plan: Plan, objective: str) -> float:
    """The cost model's value of ``objective`` for ``plan``."""
    if objective == "energy":
        value = energy(problem, plan)
        assert value is not None  # checked by term_costs
        return value
    if objective == "peak_memory":
        return float(evaluate(problem, plan).peak_memory_bytes)
    return latency(problem, plan)
