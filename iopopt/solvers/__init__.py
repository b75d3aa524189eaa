"""Solvers: the plugin interface, the registry, the paper's greedy, the exact ILP, baselines and cross-checks.

One module per solver family (``baselines``, ``greedy_iop``, ``exact``,
``ilp``); each class is configured by ``conf/solver/NAME.yaml`` or registered
by another package's entry point (:mod:`iopopt.solvers.registry`).
:mod:`iopopt.solvers.testing` is the contract every solver passes.
"""

from .base import (
    BUDGETS,
    OBJECTIVE_RTOL,
    OBJECTIVES,
    TERMINATIONS,
    ObjectiveMismatch,
    Solver,
    SolverError,
    SolveResult,
    Termination,
)
from .registry import CONF_DIR, ENTRY_POINT_GROUP, SolverSpec, make_solver, registered_solvers, solver_configs

__all__ = [
    "BUDGETS",
    "CONF_DIR",
    "ENTRY_POINT_GROUP",
    "OBJECTIVES",
    "OBJECTIVE_RTOL",
    "TERMINATIONS",
    "ObjectiveMismatch",
    "SolveResult",
    "Solver",
    "SolverError",
    "SolverSpec",
    "Termination",
    "make_solver",
    "registered_solvers",
    "solver_configs",
]
