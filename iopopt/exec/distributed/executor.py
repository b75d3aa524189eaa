"""The distributed executor: one process per device, ``torch.distributed`` with gloo.

:class:`DistributedExecutor` runs a compiled :class:`~iopopt.compiler.Program`
with one OS process per device (rank ``d`` = device ``d`` of the cluster).
Every rank builds only its own weight shards (:func:`iopopt.kernels.weight_shard`
from the module it receives, which it then drops), and for every step of the
Program, for every input resharding, phase by phase, it posts ``dist.isend``
for the :class:`~iopopt.compiler.Transfer` s it sends and ``dist.irecv`` for
those it receives (tag = the transfer's index in program order, so every
message is matched by (sender, receiver, tag)), waits for all of them, and
builds its input buffer with the assembler the simulated executor uses too
(:func:`iopopt.exec.assemble.assemble`: local slicing of its own stored part,
received pieces written or -- for partial sums -- accumulated in transfer
order; only the transport differs), computes its output part with
:func:`iopopt.kernels.compute` and frees every tensor after its last use
(:meth:`iopopt.model.graph.OpGraph.free_schedule`).

Receives are posted in their own step and phase (``prepost=True`` posts the
receives of step p+1 when step p starts; an experiment, off by default).

Synchronisation: no barrier between steps by default -- the data dependencies
(the messages) are the only synchronisation, as on real devices, so a rank
that needs nothing from a slow peer may run ahead. ``step_barrier=True`` adds a
``dist.barrier()`` after every step (the cost model's layer-synchronous
semantics, at the cost of one extra all-reduce-like round per step; its time is
reported as ``sync_s``). Every inference starts after a barrier, so the ranks'
clocks start together.

Timing: per rank and step, ``comm_s`` is the wall time of all the step's input
reshardings (posting, waiting, assembling the buffers) and ``compute_s`` the
wall time of the kernel; the end-to-end time of one inference on a rank runs
from the start barrier to its last step. One warm-up inference (``warmup``)
is followed by ``repeats`` timed ones; the reported latency is the median
over the timed runs of the maximum over ranks, per-step times are medians.
Setup (spawning, rendezvous, building the shards) is never timed in.

Modes:

* local (default): ``DistributedExecutor(k)`` spawns ``k`` processes
  (``multiprocessing`` spawn context) on 127.0.0.1 with a free port found by
  binding port 0; rank 0's rendezvous store listens on the loopback address
  only (for any loopback ``master_addr``) and gloo is bound to the loopback
  interface (``GLOO_SOCKET_IFNAME=lo`` unless already set). Ranks watch the
  launching process and end when it is killed.
* one rank of a real multi-host run: pass ``rank``, ``world_size``,
  ``master_addr`` and ``master_port`` (or set ``RANK``, ``WORLD_SIZE``,
  ``MASTER_ADDR``, ``MASTER_PORT`` in the environment); ``run`` then executes
  this rank in the calling process (:func:`run_rank`) and every rank gets the
  full trace (the output only on the host rank). All ranks check that they run
  the same Program (a fingerprint is exchanged).

Failures: a rank that raises, a rank that dies, a port in use, a rendezvous or
message that times out (``timeout_s``, the ``torch.distributed`` timeout) or a
whole run exceeding ``run_timeout_s`` end ALL ranks (terminate, then kill,
then checked with ``Process.is_alive``) and raise one :class:`DistributedError`
naming the rank, the stage and the original message (or the setting).

Command line (one rank per host, or all ranks locally)::

    python -m iopopt.distributed --model tiny_chain --plan alternating --ranks 2
    RANK=0 WORLD_SIZE=2 MASTER_ADDR=10.0.0.1 MASTER_PORT=29500 \\
        python -m iopopt.distributed --model resnet18 --plan coedge
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ...compile.program import Program, compile_plan
from ...model.problem import Plan
from ..convert import converted_copy
from ..verify import DEFAULT_RTOL, check_output, default_input
from .launcher import _init_group, _resolve_ifname, _timeout_hint, launch
from .rank import _run_jobs_on_rank
from .types import DistributedError, DistributedTrace, Fault, Job, RankStats, _rank_job, _RankJob, _Settings, _Where

__all__ = [
    "DistributedExecutor",
    "DistributedVerifyReport",
    "run_rank",
    "check_trace",
    "expected_bytes",
    "verify_distributed",
]


def _env_int(name: str) -> int | None:
    v = os.environ.get(name)
    return int(v) if v not in (None, "") else None


class DistributedExecutor:
    """Run Programs with one process per device over ``torch.distributed`` (gloo).

    Parameters
    ----------
    k : int, optional
        Number of ranks to spawn locally (default: the Program's device count).
    threads : int
        ``torch.set_num_threads`` in every rank (default 1).
    dtype : torch.dtype
        Precision of the computation (float64 to verify, float32 to time).
    warmup, repeats : int
        Untimed warm-up inferences, then timed ones (latency: median).
    timeout_s : float
        ``torch.distributed`` timeout: rendezvous and every message wait.
    run_timeout_s : float, optional
        Wall-clock limit of a whole local run (spawn to last result).
    master_addr, master_port : optional
        Rendezvous address (default 127.0.0.1 and a free port for local runs).
    rank, world_size : int, optional
        Run as this one rank of a multi-host run (also read from ``RANK`` /
        ``WORLD_SIZE`` / ``MASTER_ADDR`` / ``MASTER_PORT`` when set).
    ifname : str
        ``GLOO_SOCKET_IFNAME`` for the ranks: ``auto`` = the loopback
        interface when the address is a loopback one, else left to gloo.
    step_barrier : bool
        ``dist.barrier()`` after every step (layer-synchronous execution).
    prepost : bool
        Post the receives of step p+1 when step p starts (default off: every
        message is posted in its own step and phase, as the Program says). An
        experiment: gloo needs a notify/ready handshake per message, and a
        receive posted ahead lets the sender write at once; on the 2-core test
        machine it made no measurable difference.
    fault : Fault, optional
        Deliberate failure (tests).
    rank_setup, send_delay, compute_dilation, compute_lock : optional
        Hooks of the emulated testbed (:mod:`iopopt.exec.testbed`): a picklable
        ``rank_setup(rank)`` run first in every spawned rank, an object
        whose ``before_send(src, dst)`` runs before every message, per
        rank a factor by which its own CPU work of each step is stretched,
        and the path of a lock file under which a dilated rank measures
        its kernels' CPU time in the warm-up (one rank at a time).
    """

    def __init__(
        self,
        k: int | None = None,
        *,
        threads: int | None = 1,
        dtype: torch.dtype = torch.float64,
        warmup: int = 1,
        repeats: int = 3,
        timeout_s: float = 60.0,
        run_timeout_s: float | None = None,
        master_addr: str | None = None,
        master_port: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        ifname: str | None = "auto",
        step_barrier: bool = False,
        prepost: bool = False,
        fault: Fault | None = None,
        rank_setup=None,
        send_delay=None,
        compute_dilation=None,
        compute_lock: str | None = None,
    ):
        if rank is None:
            rank = _env_int("RANK")
            if rank is not None:
                world_size = world_size if world_size is not None else _env_int("WORLD_SIZE")
        if master_addr is None:
            master_addr = os.environ.get("MASTER_ADDR") if rank is not None else None
        if master_port is None and rank is not None:
            master_port = _env_int("MASTER_PORT")
        self.k = k
        self.threads = threads
        self.dtype = dtype
        self.warmup = warmup
        self.repeats = repeats
        self.timeout_s = float(timeout_s)
        self.run_timeout_s = run_timeout_s
        self.master_addr = master_addr or "127.0.0.1"
        self.master_port = master_port
        self.rank = rank
        self.world_size = world_size
        self.ifname = ifname
        self.step_barrier = step_barrier
        self.prepost = prepost
        self.fault = fault
        self.rank_setup = rank_setup  # runs first in each spawned rank (the testbed's placement)
        self.send_delay = send_delay  # before_send(src, dst) before each message (the testbed's latency)
        self.compute_dilation = compute_dilation  # per rank: slow-down factor of its CPU work (the testbed)
        self.compute_lock = compute_lock  # the dilated ranks measure their warm-up kernels one at a time under it
        if rank is not None and (world_size is None or master_port is None):
            raise ValueError(
                "DistributedExecutor: a single-rank run needs world_size and master_port "
                "(arguments or WORLD_SIZE / MASTER_PORT)"
            )

    @property
    def external(self) -> bool:
        """True when this process runs one rank of a multi-process (multi-host) run."""
        return self.rank is not None

    def _settings(self) -> _Settings:
        return _Settings(
            threads=self.threads,
            dtype=self.dtype,
            warmup=int(self.warmup),
            repeats=int(self.repeats),
            timeout_s=self.timeout_s,
            step_barrier=bool(self.step_barrier),
            fault=self.fault,
            ifname=_resolve_ifname(self.ifname, self.master_addr),
            prepost=bool(self.prepost),
            send_delay=self.send_delay,
            compute_dilation=self.compute_dilation,
            compute_lock=self.compute_lock,
        )

    def run(self, program: Program, module: nn.Module, x: Tensor | None = None, seed: int = 0) -> DistributedTrace:
        """Run one Program; see :meth:`run_many`."""
        return self.run_many([Job(program, module, x)], seed=seed)[0]

    def run_many(self, jobs: Sequence[Job | tuple], seed: int = 0) -> list[DistributedTrace]:
        """Run several Programs (same device count) in one set of processes; one trace per job.

        A job is a :class:`Job` or a ``(program, module[, x])`` tuple. When
        ``x`` is None a standard normal input is drawn from
        ``torch.Generator().manual_seed(seed)`` in float64 (as
        :func:`iopopt.verify` does). ``module`` is read as it is (its weights
        are converted to ``dtype`` shard by shard).
        """
        jobs = [j if isinstance(j, Job) else Job(*j) for j in jobs]
        if not jobs:
            return []
        ks = {j.program.problem.k for j in jobs}
        if len(ks) != 1:
            raise ValueError(f"run_many: every program must have the same device count, got {sorted(ks)}")
        k = ks.pop()
        if self.k is not None and self.k != k:
            raise ValueError(f"DistributedExecutor(k={self.k}) cannot run programs compiled for {k} devices")
        rank_jobs = [
            _rank_job(j.program, j.module, default_input(j.program.problem.graph, seed) if j.x is None else j.x)
            for j in jobs
        ]
        settings = self._settings()
        if self.external:
            if self.world_size != k:
                raise ValueError(f"world_size {self.world_size} != the program's device count {k}")
            traces = run_rank(
                rank_jobs, self.rank, self.world_size, self.master_addr, self.master_port, settings
            )
        else:
            per_rank = launch(
                _spawned_jobs,
                k,
                (rank_jobs, settings),
                threads=self.threads,
                timeout_s=self.timeout_s,
                run_timeout_s=self.run_timeout_s,
                master_addr=self.master_addr,
                master_port=self.master_port,
                ifname=settings.ifname,
                rank_setup=self.rank_setup,
            )
            traces = []
            for n, rj in enumerate(rank_jobs):
                out = per_rank[rj.host][n][1]  # numpy (see _spawned_jobs)
                output = None if out is None else torch.from_numpy(out)
                traces.append(_make_trace([per_rank[r][n][0] for r in range(k)], output, rj.host))
        for t, j in zip(traces, jobs):
            t.program = j.program
        return traces


def _spawned_jobs(rank: int, world: int, jobs, settings: _Settings, where: _Where):
    out = _run_jobs_on_rank(rank, world, jobs, settings, where)
    return [(stats, None if o is None else o.numpy()) for stats, o in out]


def _make_trace(stats: list[RankStats], output: Tensor | None, host: int) -> DistributedTrace:
    """Latency per timed inference = the maximum over ranks; the trace's latency is their median."""
    n = min(len(s.e2e_s) for s in stats)
    lat = [max(s.e2e_s[j] for s in stats) for j in range(n)]
    return DistributedTrace(output, statistics.median(lat), lat, stats, host)


def run_rank(
    jobs: Sequence[_RankJob | Job | tuple],
    rank: int,
    world_size: int,
    master_addr: str,
    master_port: int,
    settings: _Settings | None = None,
    **options,
) -> list[DistributedTrace]:
    """Run this process as rank ``rank`` of ``world_size`` (multi-host entry); a full trace per job.

    ``jobs`` as for :meth:`DistributedExecutor.run_many` (only the host rank
    needs an input). ``options`` are :class:`DistributedExecutor` settings
    (``dtype``, ``warmup``, ``repeats``, ``timeout_s``, ``threads``,
    ``ifname``, ``step_barrier``) when ``settings`` is None. Every rank
    returns every rank's statistics; the output is set on the host rank only.
    """
    import torch.distributed as dist

    if settings is None:
        ex = DistributedExecutor(rank=rank, world_size=world_size, master_addr=master_addr,
                                 master_port=master_port, **options)
        settings = ex._settings()
        if settings.threads:
            torch.set_num_threads(int(settings.threads))
    rank_jobs = []
    for j in jobs:
        if isinstance(j, _RankJob):
            rank_jobs.append(j)
            continue
        j = j if isinstance(j, Job) else Job(*j)
        rank_jobs.append(_rank_job(j.program, j.module, j.x))
    where = _Where()
    try:
        _init_group(rank, world_size, master_addr, int(master_port), settings.timeout_s, settings.ifname, where)
    except Exception as exc:
        text = str(exc)
        setting = "master_port" if "master_port" in text else ("timeout_s" if "timeout_s" in text else None)
        raise DistributedError(f"rank {rank} failed at {where.text}: {text}", rank=rank, setting=setting) from exc
    try:
        results = _run_jobs_on_rank(rank, world_size, rank_jobs, settings, where)
        where.text = "gathering statistics"
        everyone: list = [None] * world_size
        dist.all_gather_object(everyone, [s for s, _ in results])
        dist.barrier()
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}"
        raise DistributedError(
            f"rank {rank} failed at {where.text}: {text}{_timeout_hint(text, settings.timeout_s)}", rank=rank
        ) from exc
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return [
        _make_trace([everyone[r][n] for r in range(world_size)], output, rank_jobs[n].host)
        for n, (_, output) in enumerate(results)
    ]


@dataclass(frozen=True)
class DistributedVerifyReport:
    """Distributed output against the unsplit forward, and bytes sent per rank against the Program."""

    passed: bool
    max_abs_err: float
    output_scale: float
    tolerance: float
    bytes_match: bool
    expected_bytes: tuple[int, ...]
    sent_bytes: tuple[int, ...]
    trace: DistributedTrace = field(repr=False)

    def summary(self) -> str:
        return (
            f"distributed verify {'PASSED' if self.passed else 'FAILED'}: max abs err {self.max_abs_err:.3g} "
            f"(tolerance {self.tolerance:.3g}), bytes per rank {'ok' if self.bytes_match else 'DIFFER'} "
            f"{list(self.sent_bytes)}; {self.trace.summary()}"
        )


def expected_bytes(program: Program) -> tuple[int, ...]:
    """Bytes each device sends per inference according to the Program."""
    k = program.problem.k
    out = [0] * k
    for s, _, b in program.messages():
        out[s] += b
    return tuple(out)


def check_trace(
    program: Program,
    trace: DistributedTrace,
    module: nn.Module,
    x: Tensor | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    rtol: float | None = None,
) -> DistributedVerifyReport:
    """Compare a trace with the unsplit forward of ``module`` (same tolerance rule as :func:`iopopt.verify`)."""
    rtol = DEFAULT_RTOL[dtype] if rtol is None else rtol
    if x is None:
        x = default_input(program.problem.graph, seed)
    model = converted_copy(module, dtype)
    with torch.no_grad():
        ref = model(x.to(dtype))
    check = check_output(trace.output, ref, rtol)
    exp = expected_bytes(program)
    sent = tuple(trace.bytes_sent)
    return DistributedVerifyReport(
        passed=bool(check.passed and exp == sent),
        max_abs_err=check.max_abs_err,
        output_scale=check.output_scale,
        tolerance=check.tolerance,
        bytes_match=exp == sent,
        expected_bytes=exp,
        sent_bytes=sent,
        trace=trace,
    )


def verify_distributed(problem, plans, module: nn.Module, executor: DistributedExecutor | None = None,
                       seed: int = 0, dtype: torch.dtype = torch.float64) -> list[DistributedVerifyReport]:
    """Run ``plans`` (one plan or a list) of ``problem`` distributed and check each against the unsplit model."""
    single = isinstance(plans, Plan)
    plans = [plans] if single else list(plans)
    ex = executor or DistributedExecutor(dtype=dtype, warmup=1, repeats=1)
    programs = [compile_plan(problem, p) for p in plans]
    traces = ex.run_many([Job(pr, module) for pr in programs], seed=seed)
    return [check_trace(pr, t, module, seed=seed, dtype=ex.dtype) for pr, t in zip(programs, traces)]
