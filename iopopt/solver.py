"""The solver interface and registry (:mod:`iopopt.solvers`), kept importable as ``iopopt.solver``."""

from .solvers.base import (
    OBJECTIVE_RTOL,
    TERMINATIONS,
    ObjectiveMismatch,
    Solver,
    SolverError,
    SolveResult,
    Termination,
)
from .solvers.registry import CONF_DIR, make_solver, registered_solvers, solver_configs

__all__ = [
    "CONF_DIR",
    "OBJECTIVE_RTOL",
    "TERMINATIONS",
    "ObjectiveMismatch",
    "SolveResult",
    "Solver",
    "SolverError",
    "Termination",
    "make_solver",
    "registered_solvers",
    "solver_configs",
]
