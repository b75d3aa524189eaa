"""What a distributed run takes and gives: jobs, per-rank statistics, traces, settings and errors."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ...compile.program import Program, Step

__all__ = ["DistributedError", "Fault", "StepTime", "RankStats", "DistributedTrace", "Job", "program_fingerprint"]


class DistributedError(RuntimeError):
    """A distributed run failed; ``rank`` (or ``setting``) says where, ``remote_traceback`` has the details."""

    def __init__(self, message: str, rank: int | None = None, setting: str | None = None, remote_traceback: str = ""):
        super().__init__(message)
        self.rank = rank
        self.setting = setting
        self.remote_traceback = remote_traceback


@dataclass(frozen=True)
class Fault:
    """A deliberate failure for tests: rank ``rank`` at step ``step`` (of the first inference of job ``job``).

    ``kind``: ``raise`` (a RuntimeError), ``hang`` (sleeps forever), ``exit``
    (the process dies with exit code 17, reporting nothing).
    """

    rank: int
    step: str
    kind: str = "raise"
    job: int = 0

    def __post_init__(self):
        if self.kind not in ("raise", "hang", "exit"):
            raise ValueError(f"Fault.kind must be raise, hang or exit, got {self.kind!r}")


@dataclass(frozen=True)
class StepTime:
    """Median wall times of one step on one rank over the timed inferences."""

    node: str
    strategy: str
    comm_s: float
    compute_s: float
    sync_s: float = 0.0


@dataclass
class RankStats:
    """What one rank measured for one Program.

    ``bytes_sent``: per inference, element counts of the tensors it sent ×
    the problem's bytes per element (comparable with the cost model);
    ``wire_bytes`` the same in the precision actually computed.
    """

    rank: int
    steps: list[StepTime]
    e2e_s: list[float]
    bytes_sent: int
    wire_bytes: int
    messages_sent: int
    messages_received: int
    setup_s: float
    weight_bytes: int
    #: measured: the rank's resident-set peak during the timed inferences (VmHWM), absolute and as
    #: weights + growth over the resident set before them (comparable with the model's peak; Linux only)
    peak_rss_bytes: int | None = None
    peak_memory_bytes: int | None = None

    @property
    def comm_s(self) -> float:
        return sum(s.comm_s for s in self.steps)

    @property
    def compute_s(self) -> float:
        return sum(s.compute_s for s in self.steps)


@dataclass
class DistributedTrace:
    """The result of running one Program distributed.

    ``latency_s``: median over the timed inferences of the maximum over ranks
    of the end-to-end time; ``latencies_s`` those maxima per inference.
    ``output``: the host rank's output (None on other ranks of a multi-host run).
    """

    output: Tensor | None
    latency_s: float
    latencies_s: list[float]
    ranks: list[RankStats]
    host: int = 0
    program: Program | None = field(default=None, repr=False)

    @property
    def bytes_sent(self) -> list[int]:
        return [r.bytes_sent for r in self.ranks]

    @property
    def messages(self) -> int:
        return sum(r.messages_sent for r in self.ranks)

    def step_table(self) -> list[dict]:
        """Per step: the maximum over ranks of comm and compute time (seconds)."""
        rows = []
        for p, st in enumerate(self.ranks[0].steps):
            rows.append(
                {
                    "node": st.node,
                    "strategy": st.strategy,
                    "comm_s": max(r.steps[p].comm_s for r in self.ranks),
                    "compute_s": max(r.steps[p].compute_s for r in self.ranks),
                    "sync_s": max(r.steps[p].sync_s for r in self.ranks),
                }
            )
        return rows

    def summary(self) -> str:
        comm = max(r.comm_s for r in self.ranks)
        comp = max(r.compute_s for r in self.ranks)
        return (
            f"latency {self.latency_s * 1e3:.3f} ms over {len(self.ranks)} ranks "
            f"(max per rank: comm {comm * 1e3:.3f} ms, compute {comp * 1e3:.3f} ms), "
            f"{self.messages} messages, {sum(self.bytes_sent) / 1e6:.3f} MB sent"
        )


@dataclass
class Job:
    """One Program to run: its module (full weights; each rank keeps only its shards) and the input."""

    program: Program
    module: nn.Module
    x: Tensor | None = None


@dataclass
class _RankJob:
    """The picklable part of a Program a rank needs (no Problem, no fx graph)."""

    steps: tuple[Step, ...]
    freed_at: dict[int, tuple[str, ...]]
    host: int
    k: int
    dtype_bytes: int
    fingerprint: str
    module: nn.Module | None
    x: Tensor | None


def program_fingerprint(program: Program) -> str:
    """A hash of the strategies and every message of ``program`` (ranks check they run the same one)."""
    h = hashlib.sha1()
    for step in program.steps:
        h.update(f"{step.op.name}:{step.strategy};".encode())
        for res in step.inputs:
            for ph in res.phases:
                h.update(b"|")
                for t in ph:
                    h.update(f"{t.src}>{t.dst}:{t.region}:{t.nbytes},".encode())
    return h.hexdigest()[:16]


def _rank_job(program: Program, module, x) -> _RankJob:
    return _RankJob(
        steps=program.steps,
        freed_at=program.problem.graph.free_schedule(),
        host=program.problem.host,
        k=program.problem.k,
        dtype_bytes=program.problem.dtype_bytes,
        fingerprint=program_fingerprint(program),
        module=module,
        x=x,
    )


@dataclass(frozen=True)
class _Settings:
    threads: int | None
    dtype: torch.dtype
    warmup: int
    repeats: int
    timeout_s: float
    step_barrier: bool
    fault: Fault | None
    ifname: str | None
    prepost: bool = False
    #: ``before_send(src, dst)`` called before every message (the testbed's emulated latency), or None
    send_delay: object | None = None
    #: per rank, how many times slower its device computes than this machine's core (the testbed's time
    #: dilation: a step's CPU time is measured and the rank sleeps the difference), or None
    compute_dilation: tuple[float, ...] | None = None
    #: a lock file the dilated ranks of one testbed share: a warm-up kernel whose CPU time is measured runs
    #: while no other rank runs one, or None
    compute_lock: str | None = None


class _Where:
    """Where a rank is, for error messages."""

    def __init__(self):
        self.text = "start"
