"""Baseline solvers: fixed plans, the best uniform plan, and seeded random plans.

- ``single``: everything on the host (no cooperation).
- ``coedge``: CoEdge-style row partitioning (:func:`iopopt.space.pairs.base_plan` ``"coedge"``).
- ``oc``: every conv/linear split by output channels, a gather after every
  operator (:func:`iopopt.space.pairs.base_plan` ``"oc"``).
- ``offload``: every operator whole on the one device where that is fastest
  (Neurosurgeon-style full offloading), the input shipped there and the output
  back to the host; the host itself is a candidate.
- ``best_uniform``: the cheapest, by the cost model, of the uniform plans
  (one strategy everywhere it applies) and the two base plans.
- ``random``: the best of ``samples`` seeded random valid plans.

All report termination ``completed`` and no bound; the base class turns a
plan that exceeds a device's memory is flagged with ``memory_fits`` false.
"""

from __future__ import annotations

import random

from ..cost.evaluate import evaluate, latency
from ..model.layouts import STRATEGIES, placement_name
from ..model.problem import InvalidPlan, Plan, Problem
from ..space.pairs import BASES, base_plan
from ..space.plans import draw_plan
from .base import Solver, SolverError, SolveResult

__all__ = [
    "Single", "Offload", "CoEdge", "OutputChannels", "BestUniform", "RandomPlan", "uniform_plans", "offload_plans",
]


def _completed(name: str, problem: Problem, plan: Plan, objective: float | None = None, **extra) -> SolveResult:
    if objective is None:
        objective = latency(problem, plan)
    return SolveResult(name, "completed", plan, objective=objective, extra=extra)


class Single(Solver):
    """Every operator on the host: the no-cooperation reference."""

    name = "single"

    def _solve(self, problem: Problem) -> SolveResult:
        return _completed(self.name, problem, problem.plan({}))


def offload_plans(problem: Problem) -> dict[str, Plan]:
    """One plan per device: every operator whole on it (``host`` for the host), the input and output on the host."""
    plans = {}
    for d, device in enumerate(problem.cluster.devices):
        default = "host" if d == problem.host else placement_name(d)
        plans[device.name] = problem.plan({}, default=default)
    return plans


class Offload(Solver):
    """Everything on the single device where it runs fastest, input and output transfers included.

    Devices whose memory the plan fits are preferred; when it fits none, the
    fastest overall. Ties: the lowest device index. ``extra['device']`` names
    the chosen device, ``extra['candidates']`` gives each device's latency (s).
    """

    name = "offload"

    def _solve(self, problem: Problem) -> SolveResult:
        plans = offload_plans(problem)
        reports = {name: evaluate(problem, plan) for name, plan in plans.items()}
        fitting = [name for name, r in reports.items() if r.fits_memory] or list(reports)
        chosen = min(fitting, key=lambda name: reports[name].latency_s)  # min keeps the first of equal ones
        costs = {name: r.latency_s for name, r in reports.items()}
        return _completed(self.name, problem, plans[chosen], costs[chosen], device=chosen, candidates=costs)


class CoEdge(Solver):
    """Convs and their channel-wise followers split by rows; linear layers on the host."""

    name = "coedge"

    def _solve(self, problem: Problem) -> SolveResult:
        return _completed(self.name, problem, base_plan(problem, "coedge"))


class OutputChannels(Solver):
    """Every conv/linear split by output channels; the output is gathered after every operator."""

    name = "oc"

    def _solve(self, problem: Problem) -> SolveResult:
        return _completed(self.name, problem, base_plan(problem, "oc"))


def uniform_plans(problem: Problem) -> dict[str, Plan]:
    """Uniform plans of ``problem`` by name, in a fixed order.

    For each strategy name (``host``, ``replicate``, ``oc``, ``ic``, ``rows``,
    ``channel``, ``partial``): every node in that strategy where it applies,
    ``host`` elsewhere; combinations the compiler cannot run (``partial``
    without partial-sum inputs) are left out. Then the ``coedge`` and ``oc``
    base plans of :mod:`iopopt.space.pairs` (named ``base_coedge``, ``base_oc``).
    """
    plans: dict[str, Plan] = {}
    for strategy in STRATEGIES:
        try:
            plans[strategy] = problem.plan({}, default=strategy)
        except InvalidPlan:
            continue
    for base in BASES:
        plans[f"base_{base}"] = base_plan(problem, base)
    return plans


class BestUniform(Solver):
    """The cheapest of :func:`uniform_plans` by the cost model (ties: the first in order).

    ``extra['candidates']`` gives each candidate's latency (s) and
    ``extra['chosen']`` the winner's name.
    """

    name = "best_uniform"

    def _solve(self, problem: Problem) -> SolveResult:
        plans = uniform_plans(problem)
        costs = {name: latency(problem, plan) for name, plan in plans.items()}
        chosen = min(costs, key=costs.__getitem__)  # min keeps the first of equal costs
        return _completed(self.name, problem, plans[chosen], costs[chosen], chosen=chosen, candidates=costs)


class RandomPlan(Solver):
    """The best of ``samples`` random valid plans drawn with ``random.Random(seed)``.

    Each plan is :func:`iopopt.space.plans.draw_plan`: in topological order, a
    uniformly random strategy among those of the node that keep every input
    edge feasible (only an ``add`` in ``partial`` needs partial-sum inputs;
    ``host`` is always feasible), which is rejection sampling done per node
    instead of per plan.
    """

    name = "random"

    def __init__(self, seed: int = 0, samples: int = 1):
        self.seed = seed
        self.samples = samples

    def check_settings(self) -> None:
        """Raise :class:`SolverError` naming a bad setting and its valid values."""
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 1:
            raise SolverError(f"{self.name}: samples must be a positive integer, got {self.samples!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise SolverError(f"{self.name}: seed must be an integer, got {self.seed!r}")

    def _solve(self, problem: Problem) -> SolveResult:
        rng = random.Random(self.seed)
        best_plan, best = None, float("inf")
        for _ in range(self.samples):
            plan = draw_plan(problem, rng)
            cost = latency(problem, plan)
            if cost < best:
                best_plan, best = plan, cost
        return SolveResult(self.name, "completed", best_plan, objective=best, extra={"samples": self.samples})
