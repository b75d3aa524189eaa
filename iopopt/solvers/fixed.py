"""A solver that returns a given plan: a stored plan evaluated on another cluster or network.

``iopopt plan_from=<result.json> cluster=... network=...`` runs it with the
strategies of that record, so the cost report (latency, energy, memory) and
``verify`` see the stored plan on the new problem. It is not registered in
``conf/solver/`` (it needs a plan to hold).
"""

from __future__ import annotations

from collections.abc import Mapping

from ..cost.evaluate import latency
from ..model.problem import InvalidPlan, Plan, Problem
from .base import Solver, SolverError, SolveResult

__all__ = ["FixedPlan"]


class FixedPlan(Solver):
    """Returns ``strategies`` (node → strategy) as its plan, checked against the problem.

    Parameters
    ----------
    strategies : mapping of str to str
        The plan.
    source : str
        Where the plan came from (named in errors).
    """

    name = "plan_from"

    def __init__(self, strategies: Mapping[str, str] | None = None, source: str = ""):
        self.strategies = strategies
        self.source = source

    def check_settings(self) -> None:
        """Raise :class:`SolverError` unless ``strategies`` is a mapping of node names to strategy names."""
        ok = isinstance(self.strategies, Mapping) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.strategies.items()
        )
        if not ok:
            raise SolverError(f"plan_from: strategies must map node names to strategy names, got {self.strategies!r}")

    def check_fits(self, problem: Problem) -> Plan:
        """The plan, validated against ``problem`` (a :class:`SolverError` in one line when it does not fit)."""
        self.check_settings()
        assert self.strategies is not None
        plan = Plan(self.strategies)
        try:
            plan.validate(problem)
        except InvalidPlan as exc:
            where = f" {self.source}" if self.source else ""
            raise SolverError(f"plan_from{where} does not fit {problem.describe()}: {exc}") from None
        return plan

    def _solve(self, problem: Problem) -> SolveResult:
        plan = self.check_fits(problem)
        return SolveResult(self.name, "completed", plan, objective=latency(problem, plan),
                           extra={"plan_from": self.source})
