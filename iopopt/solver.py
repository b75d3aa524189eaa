"""The solver plugin interface.

A solver is a class with a ``name``; its constructor only stores keyword
settings (named as the config keys), and :meth:`Solver.solve` does the work.
``solve`` wraps the subclass's :meth:`Solver._solve`: it times the call, checks
that the returned plan is valid, recomputes the objective with the cost model
and refuses a result whose objective disagrees, and turns a plan that exceeds
a device's memory into ``memory_exceeded`` instead of success.

Solvers are found by name through ``conf/solver/NAME.yaml`` files whose
``_target_`` names the class (:func:`make_solver`).
"""

from __future__ import annotations

import importlib
import inspect
import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Mapping

from .cost import CostReport, evaluate
from .problem import Plan, Problem

__all__ = [
    "TERMINATIONS",
    "SolveResult",
    "Solver",
    "SolverError",
    "ObjectiveMismatch",
    "CONF_DIR",
    "solver_configs",
    "make_solver",
]

#: Why a solver stopped. ``optimal``: proven optimal; ``feasible``: a plan
#: without proof; ``time_limit``: stopped by the limit (incumbent and bound
#: kept); ``infeasible``: proven that no plan fits; ``memory_exceeded``: a
#: heuristic's plan exceeds some device's memory; ``completed``: a heuristic
#: ran to its end; ``error``: the solver failed.
TERMINATIONS = ("optimal", "feasible", "time_limit", "infeasible", "memory_exceeded", "completed", "error")

#: Relative tolerance between a solver's objective and the cost model's.
OBJECTIVE_RTOL = 1e-9

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


class SolverError(RuntimeError):
    """A solver could not produce a result (bad settings, refused instance, backend failure)."""


class ObjectiveMismatch(SolverError):
    """A solver's own objective disagrees with the cost model's recomputation."""


@dataclass(frozen=True)
class SolveResult:
    """What a solver returned.

    ``objective`` is the cost model's latency of ``plan`` (seconds);
    ``solver_objective`` what the solver itself computed; ``bound`` a proven
    lower bound on the optimum of the solver's search space, where known.
    """

    solver: str
    termination: str
    plan: Plan | None
    objective: float | None = None
    bound: float | None = None
    wall_time_s: float = 0.0
    solver_objective: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: The cost model's report of ``plan``, filled in by :meth:`Solver.solve` (which computes it anyway).
    report: CostReport | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.termination not in TERMINATIONS:
            raise ValueError(f"SolveResult: termination must be one of {TERMINATIONS}, got {self.termination!r}")

    @property
    def gap(self) -> float | None:
        """Relative gap (objective − bound) / objective, when both are known."""
        if self.objective is None or self.bound is None or self.objective <= 0:
            return None
        return max(0.0, (self.objective - self.bound) / self.objective)

    @property
    def ok(self) -> bool:
        return self.plan is not None and self.termination in ("optimal", "feasible", "time_limit", "completed")


class Solver(ABC):
    """Base class of every solver; subclasses implement :meth:`_solve`.

    Subclasses set ``name`` and define ``__init__`` with keyword settings that
    are stored unchanged (no validation there: validate in ``_solve``).
    """

    name: ClassVar[str] = "solver"
    #: True when the solver's termination can be ``optimal`` (its result is then a proof).
    exact: ClassVar[bool] = False

    def get_params(self) -> dict[str, Any]:
        """The settings as given to the constructor."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def check_settings(self) -> None:
        """Raise :class:`SolverError` naming a bad setting and its valid values (default: accept all).

        Called by the CLI right after construction, so a bad setting is a
        configuration error before any work starts; ``_solve`` should call it too.
        """

    @abstractmethod
    def _solve(self, problem: Problem) -> SolveResult:
        """Find a plan; return a :class:`SolveResult` (objective as the solver computed it)."""

    def solve(self, problem: Problem) -> SolveResult:
        """Solve ``problem``; the objective is recomputed and checked with the cost model."""
        start = time.perf_counter()
        result = self._solve(problem)
        wall = time.perf_counter() - start
        if not isinstance(result, SolveResult):
            raise SolverError(f"{self.name}: _solve must return a SolveResult, got {type(result).__name__}")
        if result.plan is None:
            return replace(result, wall_time_s=wall)
        report = evaluate(problem, result.plan)
        own = result.objective
        if own is not None and not math.isclose(own, report.latency_s, rel_tol=OBJECTIVE_RTOL, abs_tol=1e-15):
            raise ObjectiveMismatch(
                f"{self.name}: solver objective {own!r} s differs from the cost model's {report.latency_s!r} s"
            )
        termination = result.termination
        extra = dict(result.extra)
        if not report.fits_memory:
            extra["memory_violations"] = report.memory_violations()
            if termination in ("completed", "feasible", "optimal", "time_limit"):
                termination = "memory_exceeded"
        return replace(
            result,
            termination=termination,
            objective=report.latency_s,
            solver_objective=own,
            wall_time_s=wall,
            extra=extra,
            report=report,
        )


def solver_configs(conf_dir: Path | None = None) -> dict[str, Path]:
    """Solver name → its YAML config, from ``conf/solver/*.yaml``."""
    root = Path(conf_dir) if conf_dir is not None else CONF_DIR
    return {p.stem: p for p in sorted((root / "solver").glob("*.yaml"))}


def _import(target: str):
    module, _, attr = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise SolverError(f"cannot import solver class {target!r}: {exc}") from exc


def make_solver(name: str, conf_dir: Path | None = None, **overrides) -> Solver:
    """Instantiate the solver configured in ``conf/solver/NAME.yaml``, with ``overrides``."""
    import yaml

    configs = solver_configs(conf_dir)
    if name not in configs:
        raise ValueError(f"unknown solver {name!r}; valid: {sorted(configs)}")
    cfg = yaml.safe_load(configs[name].read_text()) or {}
    target = cfg.pop("_target_", None)
    if not target:
        raise SolverError(f"{configs[name]} has no _target_")
    cfg.update(overrides)
    cls = _import(target)
    if not (isinstance(cls, type) and issubclass(cls, Solver)):
        raise SolverError(f"{target} is not a Solver subclass")
    params = inspect.signature(cls.__init__).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        valid = [n for n in params if n != "self"]
        unknown = sorted(set(cfg) - set(valid))
        if unknown:
            raise SolverError(f"unknown setting {unknown[0]!r} of solver {name!r}; valid settings: {valid}")
    return cls(**cfg)
