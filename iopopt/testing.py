"""The solver contract (:mod:`iopopt.solvers.testing`), kept importable as ``iopopt.testing``."""

from .solvers.testing import *  # noqa: F403
from .solvers.testing import __all__  # noqa: F401
