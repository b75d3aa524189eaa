"""Exact integer-programming solver (``ilp``): the model, its PuLP backends and the solver class."""

from .solver import MEMORY_MODES, SPACES, IlpSolver

__all__ = ["IlpSolver", "MEMORY_MODES", "SPACES"]
