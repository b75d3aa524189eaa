"""The distributed executor (:mod:`iopopt.exec.distributed`), kept importable as ``iopopt.distributed``.

``python -m iopopt.distributed`` runs one plan distributed (:mod:`iopopt.app.distributed`).
"""

from ..exec.distributed import *  # noqa: F403
from ..exec.distributed import __all__  # noqa: F401
