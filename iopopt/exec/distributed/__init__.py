"""The distributed executor: one process per device over ``torch.distributed`` (gloo).

See :mod:`iopopt.exec.distributed.executor` for the design; the modules are
``types`` (jobs, traces, errors), ``rank`` (one rank's exchange and compute),
``launcher`` (local processes) and ``executor`` (the facade and verification).
"""

from .executor import (
    DistributedExecutor,
    DistributedVerifyReport,
    check_trace,
    expected_bytes,
    run_rank,
    verify_distributed,
)
from .launcher import find_free_port, last_pids, launch
from .types import DistributedError, DistributedTrace, Fault, Job, RankStats, StepTime, program_fingerprint

__all__ = [
    "DistributedError",
    "DistributedExecutor",
    "DistributedTrace",
    "DistributedVerifyReport",
    "Fault",
    "Job",
    "RankStats",
    "StepTime",
    "check_trace",
    "expected_bytes",
    "find_free_port",
    "last_pids",
    "launch",
    "program_fingerprint",
    "run_rank",
    "verify_distributed",
]
