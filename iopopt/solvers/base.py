"""The solver plugin interface: :class:`Solver`, :class:`SolveResult` and why a solver stopped.

A solver is a class with a ``name``; its constructor only stores keyword
settings (named as the config keys), :meth:`Solver.check_settings` says
whether they are valid, and :meth:`Solver.solve` does the work. ``solve``
wraps the subclass's :meth:`Solver._solve`: it checks the settings, times the
call, checks that the returned plan is valid, recomputes the objective with
the cost model and refuses a result whose objective disagrees, and records
whether the plan fits every device's memory (``memory_fits``) beside, not
instead of, why the solver stopped (``termination``).
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
    "OBJECTIVE_RTOL",
    "SolveResult",
    "Solver",
    "SolverError",
    "ObjectiveMismatch",
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


class SolverError(RuntimeError):
    """A solver could not produce a result (bad settings, refused instance, backend failure)."""


class ObjectiveMismatch(SolverError):
    """A solver's own objective disagrees with the cost model's recomputation."""


@dataclass(frozen=True)
class SolveResult:
    """What a solver returned.

    ``termination`` says why the solver stopped; ``memory_fits`` whether its
    plan fits every device's memory (None without a plan). ``objective`` is
    the cost model's latency of ``plan`` (seconds); ``solver_objective`` what
    the solver itself computed; ``bound`` a proven lower bound on the optimum
    of the solver's search space, where known.
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
    #: The plan compiled once by :meth:`Solver.solve`: the cost report, timelines and verification reuse it.
    program: Program | None = field(default=None, compare=False, repr=False)
    #: The cost model's report of ``plan``, filled in by :meth:`Solver.solve` (which computes it anyway).
    report: CostReport | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.termination not in TERMINATIONS:
            raise ValueError(f"SolveResult: termination must be one of {TERMINATIONS}, got {self.termination!r}")
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
        own = result.objective
        if own is not None and not math.isclose(own, report.latency_s, rel_tol=OBJECTIVE_RTOL, abs_tol=1e-15):
            raise ObjectiveMismatch(
                f"{self.name}: solver objective {own!r} s differs from the cost model's {report.latency_s!r} s"
            )
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
            objective=report.latency_s,
            solver_objective=own,
            wall_time_s=wall,
            extra=extra,
            memory_fits=report.fits_memory,
            program=program,
            report=report,
        )


