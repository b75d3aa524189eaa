"""The model zoo (:mod:`iopopt.frontend.zoo`), kept importable as ``iopopt.zoo``."""

from .frontend.zoo import *  # noqa: F403
from .frontend.zoo import __all__  # noqa: F401
