"""The solver plugin interface: :class:`Solver`, :class:`SolveResult` and why a solver stopped.

A solver is a class with a ``name``; its constructor only stores keyword
settings (named as the config keys), :meth:`Solver.check_settings` says
whether they are valid, and :meth:`Solver.solve` does the work. ``solve``
wraps the subclass's :meth:`Solver._solve`: it checks the settings, times the
call, checks that the returned plan is valid, recomputes the objective the
solver optimises (``objective_name``: latency, energy or peak memory) with the
cost model and refuses a result whose objective disagrees or whose plan breaks
a budget it was given (``deadline_s``, ``energy_budget_j``,
``memory_budget_bytes``), and records whether the plan fits every device's
memory (``memory_fits``) beside, not instead of, why the solver stopped
(``termination``).
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, ClassVar

from ..compile.program import Program, compile_plan
from ..cost.evaluate import CostReport, evaluate_program
from ..model.problem import Plan, Problem

__all__ = [
    "Termination",
    "TERMINATIONS",
    "OBJECTIVES",
    "BUDGETS",
    "OBJECTIVE_RTOL",
    "BUDGET_RTOL",
    "SolveResult",
    "Solver",
    "SolverError",
    "ObjectiveMismatch",
    "objective_value",
    "check_objective",
    "check_budgets",
]


class Termination(StrEnum):
    """Why a solver stopped (the values are what ``result.json`` holds).

    ``optimal``: proven optimal over the solver's space; ``feasible``: a plan
    without proof; ``time_limit``: stopped by the limit (incumbent and bound
    kept); ``infeasible``: proven that no plan fits; ``completed``: a heuristic
    ran to its end; ``error``: the solver failed. Whether the plan fits memory
    is :attr:`SolveResult.memory_fits`, kept apart.
    """

    OPTIMAL = "optimal"
    FEASIBLE = "feasible"
    TIME_LIMIT = "time_limit"
    INFEASIBLE = "infeasible"
    COMPLETED = "completed"
    ERROR = "error"

    def __repr__(self) -> str:
        return repr(self.value)


#: Every termination value, in order.
TERMINATIONS = tuple(str(t) for t in Termination)

#: Relative tolerance between a solver's objective and the cost model's.
OBJECTIVE_RTOL = 1e-9
#: Relative tolerance of a budget: a plan may exceed it by this much (an ILP backend's feasibility tolerance).
BUDGET_RTOL = 1e-7

#: What a solver may minimise, as ``SolveResult.objective_name`` and ``result.json``'s ``objective_name`` say:
#: ``latency`` (seconds), ``energy`` (joules per inference), ``peak_memory`` (the largest device peak, bytes).
OBJECTIVES = ("latency", "energy", "peak_memory")
#: Budget settings a solver may take, and the cost-report figure each one bounds.
BUDGETS = {"deadline_s": "latency", "energy_budget_j": "energy", "memory_budget_bytes": "peak_memory"}


class SolverError(RuntimeError):
    """A solver could not produce a result (bad settings, refused instance, backend failure)."""


class ObjectiveMismatch(SolverError):
    """A solver's own objective disagrees with the cost model's recomputation."""


def check_objective(solver: str, objective: object) -> None:
    """Raise :class:`SolverError` (one line naming the value and the valid options) unless ``objective`` is valid."""
    if objective not in OBJECTIVES:
        raise SolverError(f"{solver}: unknown objective {objective!r}; valid: {', '.join(OBJECTIVES)}")


def check_budgets(owner: str, params: dict) -> None:
    """Raise :class:`SolverError` unless every budget setting in ``params`` is None or a positive finite number."""
    for key in BUDGETS:
        value = params.get(key)
        if value is None:
            continue
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
        if not ok:
            raise SolverError(f"{owner}: {key} must be a positive finite number or null, got {value!r}")


# -- model -----------------------------------------------------------------------------


def objective_value(report: CostReport, name: str) -> float | None:
    """The figure of ``report`` an objective or budget called ``name`` refers to (None: energy unknown)."""
    if name == "latency":
        return report.latency_s
    if name == "energy":
        return report.energy_j
    if name == "peak_memory":
        return float(report.peak_memory_bytes)
    raise ValueError(f"unknown objective {name!r}; valid: {', '.join(OBJECTIVES)}")


@dataclass(frozen=True)
class SolveResult:
    """What a solver returned.

    ``termination`` says why the solver stopped; ``memory_fits`` whether its
    plan fits every device's memory (None without a plan). ``objective_name``
    says what the solver minimised (:data:`OBJECTIVES`), ``objective`` is the
    cost model's value of it for ``plan`` (seconds, joules or bytes);
    ``solver_objective`` what the solver itself computed; ``bound`` a proven
    lower bound on the optimum of the solver's search space, where known.
    """

    solver: str
    termination: Termination
    plan: Plan | None
    objective: float | None = None
    bound: float | None = None
    wall_time_s: float = 0.0
    solver_objective: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    memory_fits: bool | None = None
    objective_name: str = "latency"
    #: The plan compiled once by :meth:`Solver.solve`: the cost report, timelines and verification reuse it.
    program: Program | None = field(default=None, compare=False, repr=False)
    #: The cost model's report of ``plan``, filled in by :meth:`Solver.solve` (which computes it anyway).
    report: CostReport | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.termination not in TERMINATIONS:
            raise ValueError(f"SolveResult: termination must be one of {TERMINATIONS}, got {self.termination!r}")
        if self.objective_name not in OBJECTIVES:
            raise ValueError(f"SolveResult: objective_name must be one of {OBJECTIVES}, got {self.objective_name!r}")
        object.__setattr__(self, "termination", Termination(self.termination))

    @property
    def gap(self) -> float | None:
        """Relative gap (objective − bound) / objective, when both are known."""
        if self.objective is None or self.bound is None or self.objective <= 0:
            return None
        return max(0.0, (self.objective - self.bound) / self.objective)

    @property
    def ok(self) -> bool:
        """A plan that fits memory, from a solver that did not fail."""
        usable = (Termination.OPTIMAL, Termination.FEASIBLE, Termination.TIME_LIMIT, Termination.COMPLETED)
        return self.plan is not None and self.termination in usable and self.memory_fits is not False


class Solver(ABC):
    """Base class of every solver; subclasses implement :meth:`_solve`.

    Subclasses set ``name`` and define ``__init__`` with keyword settings that
    are stored unchanged (no validation there: validate in
    :meth:`check_settings`, which :meth:`solve` calls first).
    """

    name: ClassVar[str] = "solver"
    #: True when the solver's termination can be ``optimal`` (its result is then a proof).
    exact: ClassVar[bool] = False

    @classmethod
    def available(cls) -> bool:
        """Whether the solver can run here (an optional backend is installed); the contract tests skip it if not."""
        return True

    def get_params(self) -> dict[str, Any]:
        """The settings as given to the constructor."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def budgets(self) -> dict[str, float]:
        """The budgets this solver was given (:data:`BUDGETS` settings that are set), by setting name."""
        params = self.get_params()
        return {key: params[key] for key in BUDGETS if params.get(key) is not None}

    def check_settings(self) -> None:  # noqa: B027 - an optional hook; the default accepts every setting
        """Raise :class:`SolverError` naming a bad setting and its valid values (default: accept all).

        Called by :meth:`solve` before any work, and by the CLI right after
        construction, so a bad setting is a configuration error before any work starts.
        """

    @abstractmethod
    def _solve(self, problem: Problem) -> SolveResult:
        """Find a plan; return a :class:`SolveResult` (objective as the solver computed it)."""

    def solve(self, problem: Problem) -> SolveResult:
        """Solve ``problem``; the plan is compiled once and its objective checked with the cost model."""
        self.check_settings()
        start = time.perf_counter()
        result = self._solve(problem)
        wall = time.perf_counter() - start
        if not isinstance(result, SolveResult):
            raise SolverError(f"{self.name}: _solve must return a SolveResult, got {type(result).__name__}")
        if result.plan is None:
            return replace(result, wall_time_s=wall, memory_fits=None)
        program = compile_plan(problem, result.plan)
        report = evaluate_program(program)
        name = result.objective_name
        value = objective_value(report, name)
        if value is None:
            raise SolverError(
                f"{self.name}: objective {name}, but the cost model has no energy for this problem "
                "(every device needs active_power_w, idle_power_w, tx_power_w and rx_power_w)"
            )
        own = result.objective
        if own is not None and not math.isclose(own, value, rel_tol=OBJECTIVE_RTOL, abs_tol=1e-15):
            raise ObjectiveMismatch(
                f"{self.name}: solver objective {own!r} ({name}) differs from the cost model's {value!r}"
            )
        self._check_budgets(report)
        extra = dict(result.extra)
        if not report.fits_memory:
            extra["memory_violations"] = report.memory_violations()
        claimed = extra.get("peak_bytes")
        if claimed is not None and list(claimed) != [m.peak_bytes for m in report.per_device]:
            raise ObjectiveMismatch(
                f"{self.name}: its peak memory per device {list(claimed)} B differs from the cost model's "
                f"{[m.peak_bytes for m in report.per_device]} B"
            )
        return replace(
            result,
            objective=value,
            solver_objective=own,
            wall_time_s=wall,
            extra=extra,
            memory_fits=report.fits_memory,
            program=program,
            report=report,
        )



    def _check_budgets(self, report: CostReport) -> None:
        """Refuse a plan that breaks a budget the solver was given (beyond :data:`BUDGET_RTOL`)."""
        for key, limit in self.budgets().items():
            value = objective_value(report, BUDGETS[key])
            if value is not None and value > limit * (1 + BUDGET_RTOL):
                raise SolverError(f"{self.name}: its plan breaks {key}={limit!r}: the cost model gives {value!r}")
