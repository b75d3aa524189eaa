"""The distributed executor: one process per device, ``torch.distributed`` with gloo.

:class:`DistributedExecutor` runs a compiled :class:`~iopopt.compiler.Program`
with one OS process per device (rank ``d`` = device ``d`` of the cluster).
Every rank builds only its own weight shards (:func:`iopopt.kernels.weight_shard`
from the module it receives, which it then drops), and for every step of the
Program, for every input resharding, phase by phase, it posts ``dist.isend``
for the :class:`~iopopt.compiler.Transfer` s it sends and ``dist.irecv`` for
those it receives (tag = the transfer's index in program order, so every
message is matched by (sender, receiver, tag)), waits for all of them,
assembles its input buffer exactly as the simulated executor does (local
slicing of its own stored part, received pieces written or -- for partial sums
-- accumulated in transfer order), computes its output part with
:func:`iopopt.kernels.compute` and frees every tensor after its last use.

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
  binding port 0; gloo is bound to the loopback interface
  (``GLOO_SOCKET_IFNAME=lo`` unless already set).
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

import hashlib
import math
import os
import pickle
import queue as queue_mod
import socket
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from . import kernels
from .compiler import Program, Resharding, Step
from .executor import DEFAULT_RTOL, dense_shape, read_region, region_index, write_region

__all__ = [
    "DistributedError",
    "Fault",
    "StepTime",
    "RankStats",
    "DistributedTrace",
    "DistributedExecutor",
    "DistributedVerifyReport",
    "Job",
    "launch",
    "run_rank",
    "verify_distributed",
    "check_trace",
    "expected_bytes",
    "find_free_port",
    "program_fingerprint",
]

_WEIGHTED = ("conv", "dwconv", "linear", "bn")


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
            f"latency {self.latency_s * 1e3:.3f} ms over {len(self.ranks)} ranks (max per rank: comm {comm * 1e3:.3f} ms, "
            f"compute {comp * 1e3:.3f} ms), {self.messages} messages, {sum(self.bytes_sent) / 1e6:.3f} MB sent"
        )


@dataclass
class Job:
    """One Program to run: its module (full weights; each rank keeps only its shards) and the input."""

    program: Program
    module: nn.Module
    x: Tensor | None = None


# -- what a rank receives -------------------------------------------------------------------------


@dataclass
class _RankJob:
    """The picklable part of a Program a rank needs (no Problem, no fx graph)."""

    steps: tuple[Step, ...]
    freed_at: dict[int, list[str]]
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


def _default_input(program: Program, seed: int) -> Tensor:
    """The input :func:`iopopt.verify` draws: standard normal, float64, ``torch.Generator().manual_seed(seed)``."""
    g = program.problem.graph
    return torch.randn(g[g.input_name].out_shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _rank_job(program: Program, module, x) -> _RankJob:
    g = program.problem.graph
    freed_at: dict[int, list[str]] = {}
    for n in g.order:
        freed_at.setdefault(g.last_use(n), []).append(n)
    return _RankJob(
        steps=program.steps,
        freed_at=freed_at,
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


# -- one rank -------------------------------------------------------------------------------------


class _Where:
    """Where a rank is, for error messages."""

    def __init__(self):
        self.text = "start"


class _RankRunner:
    """Runs one Program on one rank: shards, per-step exchange, assembly and compute."""

    def __init__(self, rank: int, job: _RankJob, settings: _Settings, where: _Where, job_index: int):
        import torch.distributed as dist

        self.dist = dist
        self.rank = rank
        self.job = job
        self.s = settings
        self.dtype = settings.dtype
        self.where = where
        self.job_index = job_index
        t0 = time.perf_counter()
        module = job.module
        self.shards: dict[int, dict[str, Tensor]] = {}
        self.extra: dict[int, dict] = {}
        weight_elems = 0
        for p, step in enumerate(job.steps):
            op = step.op
            if op.kind in ("input", "output"):
                continue
            if step.term.out.parts[rank] is not None:
                if op.kind in _WEIGHTED:
                    shard = kernels.weight_shard(op, step.strategy, rank, step.term, module, host=job.host)
                    shard = {n: t.to(self.dtype).clone() for n, t in shard.items()}
                    weight_elems += kernels.shard_elems(shard)
                    self.shards[p] = shard
                self.extra[p] = kernels.op_extra(op, module)
        self.weight_bytes = weight_elems * job.dtype_bytes
        # the full module is not kept: this rank holds only its shards
        job.module = None
        del module
        # tag of transfer j of phase ph of input i of step p: a running index in program order
        self.tags: dict[tuple[int, int], list[int]] = {}
        n = 0
        for p, step in enumerate(job.steps):
            for i, res in enumerate(step.inputs):
                bases = []
                for ph in res.phases:
                    bases.append(n)
                    n += len(ph)
                self.tags[(p, i)] = bases
        self._posted: dict[int, tuple] = {}
        self.setup_s = time.perf_counter() - t0
        self._reset_counters()

    def _reset_counters(self):
        self.bytes_sent = 0
        self.wire_bytes = 0
        self.sent = 0
        self.received = 0

    # -- communication ------------------------------------------------------------------------
    def _exchange(self, phase, base: int, shape, read: Callable) -> dict[int, Tensor]:
        """Post this rank's sends and receives of one phase, wait for all; received pieces by transfer index.

        A receive already posted ahead (:meth:`_prepost`) is reused.
        """
        dist, r = self.dist, self.rank
        works, keep = [], []
        got: dict[int, Tensor] = {}
        for j, t in enumerate(phase):
            if t.src == r:
                piece = read(t).contiguous()
                keep.append(piece)
                works.append(dist.isend(piece, t.dst, tag=base + j))
                self.bytes_sent += piece.numel() * self.job.dtype_bytes
                self.wire_bytes += piece.numel() * piece.element_size()
                self.sent += 1
            elif t.dst == r:
                posted = self._posted.pop(base + j, None)
                if posted is None:
                    buf = torch.empty(dense_shape(shape, t.region), dtype=self.dtype)
                    posted = (dist.irecv(buf, t.src, tag=base + j), buf)
                works.append(posted[0])
                got[j] = posted[1]
                self.received += 1
        for w in works:
            w.wait()
        return got

    def _prepost(self, p: int) -> None:
        """Post now the receives of step ``p`` (their buffers are fresh, so any time before use is safe)."""
        if p >= len(self.job.steps):
            return
        dist, r = self.dist, self.rank
        for i, res in enumerate(self.job.steps[p].inputs):
            shape = res.src.shape
            for ph, phase in enumerate(res.phases):
                base = self.tags[(p, i)][ph]
                for j, t in enumerate(phase):
                    if t.dst == r and (base + j) not in self._posted:
                        buf = torch.empty(dense_shape(shape, t.region), dtype=self.dtype)
                        self._posted[base + j] = (dist.irecv(buf, t.src, tag=base + j), buf)

    def _staging(self, shape, region, fill: float) -> Tensor:
        return torch.full(dense_shape(shape, region), fill, dtype=self.dtype)

    def _assemble(self, p: int, i: int, res: Resharding, src_name: str, stores: dict) -> Tensor | None:
        """This rank's buffer of ``res.dst`` (None where it needs nothing); mirrors SimulatedExecutor._assemble."""
        r = self.rank
        src, dst = res.src, res.dst
        shape = src.shape
        own, need = src.parts[r], dst.parts[r]
        mine = stores.get(src_name)
        if own is not None and mine is None:
            raise RuntimeError(f"rank {r} lost its part of {src_name!r} before step {self.job.steps[p].op.name!r}")
        tags = self.tags[(p, i)]
        name = self.job.steps[p].op.name

        def read_own(t):
            if own is None or mine is None:
                raise RuntimeError(f"step {name!r}: rank {r} must send {t.region} of {src_name!r} but holds nothing")
            return read_region(mine, own, t.region)

        if dst.kind == "P":  # P → P: every holder reads its stored partial
            if src.kind != "P":
                raise RuntimeError(f"step {name!r}: a partial input cannot come from layout {src.kind}")
            return mine
        if src.kind != "P":
            out = mine if (need is not None and own == need) else None
            for ph, phase in enumerate(res.phases):
                if need is not None and out is None and any(t.dst == r for t in phase):
                    out = self._staging(shape, need, math.nan)
                    inter = own.intersect(need) if own is not None else None
                    if inter is not None:
                        write_region(out, need, inter, read_region(mine, own, inter))
                got = self._exchange(phase, tags[ph], shape, read_own)
                for j in sorted(got):
                    write_region(out, need, phase[j].region, got[j])
            if need is not None and out is None:  # local slicing
                if own is None or not own.contains(need):
                    raise RuntimeError(f"step {name!r}: rank {r} needs {need} of {src_name!r} and receives nothing")
                out = self._staging(shape, need, math.nan)
                out.copy_(read_region(mine, own, need))
            return out

        if dst.kind == "R":  # reduce-scatter (phase 1) then all-gather of the reduced blocks (phase 2)
            phases = list(res.phases)
            gather = phases[-1] if phases else ()
            reduce = phases[0] if len(phases) == 2 else ()
            blocks = {}
            for t in reduce:
                blocks[t.dst] = t.region
            for t in gather:
                blocks[t.src] = t.region
            if not phases:
                for d in range(self.job.k):
                    if dst.parts[d] is not None and src.parts[d] is not None:
                        blocks[d] = dst.parts[d]
            out = self._staging(shape, need, math.nan) if need is not None else None
            if r in blocks:
                block = blocks[r]
                out[region_index(need, block, len(shape))] = 0.0
                if own is not None:
                    write_region(out, need, block, read_region(mine, own, block), accumulate=True)
            if reduce:
                got = self._exchange(reduce, tags[0], shape, read_own)
                for j in sorted(got):
                    write_region(out, need, reduce[j].region, got[j], accumulate=True)
            if gather:

                def read_reduced(t):
                    if r not in blocks or not blocks[r].contains(t.region):
                        raise RuntimeError(f"step {name!r}: rank {r} sends {t.region} it has not reduced")
                    return read_region(out, need, t.region)

                got = self._exchange(gather, tags[-1], shape, read_reduced)
                for j in sorted(got):
                    write_region(out, need, gather[j].region, got[j])
            return out
        # P → H / C / S: reduce (or reduce-scatter) into zeros, in transfer order
        out = None
        if need is not None:
            out = self._staging(shape, need, 0.0)
            if own is not None:
                write_region(out, need, need, read_region(mine, own, need), accumulate=True)
        for ph, phase in enumerate(res.phases):
            got = self._exchange(phase, tags[ph], shape, read_own)
            for j in sorted(got):
                if out is None:
                    raise RuntimeError(f"step {name!r}: rank {r} receives a partial it does not need")
                write_region(out, need, phase[j].region, got[j], accumulate=True)
        return out

    # -- one inference --------------------------------------------------------------------------
    def infer(self, x: Tensor | None, inference: int):
        """Run the Program once; returns (output or None, per-step [comm, compute, sync], end-to-end seconds)."""
        dist, r, job = self.dist, self.rank, self.job
        fault = self.s.fault
        if fault is not None and not (fault.rank == r and fault.job == self.job_index and inference == 0):
            fault = None
        self.where.text = f"job {self.job_index}, inference {inference}: start barrier"
        dist.barrier()
        t_start = time.perf_counter()
        stores: dict[str, Tensor] = {}
        times = []
        result = None
        for p, step in enumerate(job.steps):
            op, name = step.op, step.op.name
            self.where.text = f"job {self.job_index}, inference {inference}, step {name!r} ({step.strategy})"
            if fault is not None and fault.step == name:
                _inject(fault)
            t0 = time.perf_counter()
            if self.s.prepost:
                if p == 0:
                    self._prepost(0)
                self._prepost(p + 1)
            bufs = [self._assemble(p, i, res, src, stores) for i, (res, src) in enumerate(zip(step.inputs, op.inputs))]
            t1 = time.perf_counter()
            out = None
            if op.kind == "input":
                if r == job.host:
                    if x is None:
                        raise RuntimeError("the host rank has no input tensor")
                    if tuple(x.shape) != tuple(op.out_shape):
                        raise ValueError(f"input shape {tuple(x.shape)} != traced shape {op.out_shape}")
                    out = x.to(self.dtype).clone()
            elif op.kind == "output":
                if r == job.host:
                    result = bufs[0]
                    if result is None:
                        raise RuntimeError("the output did not reach the host")
            else:
                region = step.term.out.parts[r]
                if region is not None:
                    out = kernels.compute(
                        op,
                        step.strategy,
                        r,
                        bufs,
                        [res.dst.parts[r] for res in step.inputs],
                        region,
                        self.shards.get(p, {}),
                        host=job.host,
                        extra=self.extra.get(p),
                        dtype=self.dtype,
                    )
            t2 = time.perf_counter()
            t3 = t2
            if self.s.step_barrier:
                dist.barrier()
                t3 = time.perf_counter()
            times.append((t1 - t0, t2 - t1, t3 - t2))
            if out is not None:
                stores[name] = out
            del bufs
            for gone in job.freed_at.get(p, ()):
                stores.pop(gone, None)
        e2e = time.perf_counter() - t_start
        return result, times, e2e

    def run(self, x: Tensor | None) -> tuple[RankStats, Tensor | None]:
        """``warmup`` untimed inferences, then ``repeats`` (at least one) timed ones."""
        output = None
        n = 0
        for _ in range(max(self.s.warmup, 0)):
            out, _, _ = self.infer(x, n)
            output = out if n == 0 else output
            n += 1
        per_run, e2e = [], []
        for j in range(max(self.s.repeats, 1)):
            self._reset_counters()
            out, times, t = self.infer(x, n)
            output = out if n == 0 else output
            n += 1
            if j == 0:
                counts = (self.bytes_sent, self.wire_bytes, self.sent, self.received)
            per_run.append(times)
            e2e.append(t)
        steps = []
        for p, step in enumerate(self.job.steps):
            steps.append(
                StepTime(
                    step.op.name,
                    step.strategy,
                    statistics.median(run[p][0] for run in per_run),
                    statistics.median(run[p][1] for run in per_run),
                    statistics.median(run[p][2] for run in per_run),
                )
            )
        stats = RankStats(
            rank=self.rank,
            steps=steps,
            e2e_s=e2e,
            bytes_sent=counts[0],
            wire_bytes=counts[1],
            messages_sent=counts[2],
            messages_received=counts[3],
            setup_s=self.setup_s,
            weight_bytes=self.weight_bytes,
        )
        return stats, output


def _inject(fault: Fault) -> None:
    if fault.kind == "raise":
        raise RuntimeError(f"injected fault at step {fault.step!r} on rank {fault.rank}")
    if fault.kind == "exit":
        os._exit(17)
    while True:  # hang
        time.sleep(3600)


def _run_jobs_on_rank(rank: int, world: int, jobs: Sequence[_RankJob], settings: _Settings, where: _Where):
    """Run every job on this (initialised) rank; returns [(RankStats, output or None)] per job."""
    import torch.distributed as dist

    out = []
    with torch.inference_mode():
        for n, job in enumerate(jobs):
            if job.k != world:
                raise ValueError(f"job {n}: the program is for {job.k} devices, the world has {world} ranks")
            where.text = f"job {n}: checking the program fingerprint"
            prints: list = [None] * world
            dist.all_gather_object(prints, job.fingerprint)
            if len(set(prints)) != 1:
                raise RuntimeError(f"job {n}: the ranks run different programs (fingerprints {prints})")
            where.text = f"job {n}: building weight shards"
            runner = _RankRunner(rank, job, settings, where, n)
            x = job.x if rank == job.host else None
            job.x = None
            stats, output = runner.run(x)
            out.append((stats, output))
            del runner
    return out


# -- process management ---------------------------------------------------------------------------


def find_free_port(addr: str = "127.0.0.1") -> int:
    """A TCP port free on ``addr`` right now (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((addr, 0))
        return s.getsockname()[1]


def _port_free(addr: str, port: int) -> str | None:
    """None when ``port`` can be bound on ``addr``, else the OS error text."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((addr, port))
        except OSError as exc:
            return str(exc)
    return None


def _loopback_ifname() -> str | None:
    try:
        names = [n for _, n in socket.if_nameindex()]
    except OSError:  # pragma: no cover
        return None
    for cand in ("lo", "lo0"):
        if cand in names:
            return cand
    return None


def _is_loopback(addr: str) -> bool:
    return addr in ("localhost", "::1") or addr.startswith("127.")


def _resolve_ifname(ifname: str | None, addr: str) -> str | None:
    """``auto``: the loopback interface when ``addr`` is a loopback address, else None (gloo picks)."""
    if ifname == "auto":
        return _loopback_ifname() if _is_loopback(addr) else None
    return ifname


def _init_group(rank: int, world: int, addr: str, port: int, timeout_s: float, ifname: str | None, where: _Where):
    import torch.distributed as dist

    if ifname:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", ifname)
    where.text = f"rendezvous at {addr}:{port}"
    try:
        dist.init_process_group(
            "gloo",
            init_method=f"tcp://{addr}:{port}",
            rank=rank,
            world_size=world,
            timeout=timedelta(seconds=timeout_s),
        )
    except Exception as exc:
        msg = str(exc)
        if "EADDRINUSE" in msg or "address already in use" in msg.lower():
            raise RuntimeError(f"master_port {port} on {addr} is in use: {msg.splitlines()[0]}") from exc
        if "timed out" in msg.lower() or "timeout" in msg.lower():
            raise RuntimeError(
                f"rendezvous at {addr}:{port} did not complete within timeout_s={timeout_s:g} s: {msg.splitlines()[0]}"
            ) from exc
        raise


def _worker(rank: int, world: int, addr: str, port: int, threads, ifname, timeout_s, fn, payload: bytes, q) -> None:
    """Spawned process: init the process group, run ``fn(rank, world, *args, where)``, report on ``q``."""
    where = _Where()
    try:
        if threads:
            torch.set_num_threads(int(threads))
            try:
                torch.set_num_interop_threads(1)
            except RuntimeError:  # pragma: no cover - already set
                pass
        args = pickle.loads(payload)
        if addr is not None:
            _init_group(rank, world, addr, port, timeout_s, ifname, where)
        result = fn(rank, world, *args, where)
        where.text = "shutting down"
        if addr is not None:
            import torch.distributed as dist

            dist.barrier()
            dist.destroy_process_group()
        q.put(("ok", rank, time.time(), pickle.dumps(result)))
        q.close()
        q.join_thread()
    except BaseException as exc:  # report, flush, and leave at once (peers are killed by the parent)
        try:
            q.put(("error", rank, time.time(), where.text, f"{type(exc).__name__}: {exc}", traceback.format_exc()))
            q.close()
            q.join_thread()
        finally:
            os._exit(1)


def _kill_all(procs, grace_s: float) -> list[int]:
    """Terminate, then kill, every live process; returns the pids still alive afterwards."""
    procs = [p for p in procs if p.pid is not None]  # started ones
    deadline = time.monotonic() + grace_s
    for p in procs:
        if p.is_alive():
            p.join(timeout=max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=2.0)
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join(timeout=5.0)
    return [p.pid for p in procs if p.is_alive()]


def _timeout_hint(message: str, timeout_s: float) -> str:
    low = message.lower()
    if "timed out" in low or "timeout" in low:
        if "timeout_s" not in message:
            return f" (a peer did not answer within timeout_s={timeout_s:g} s)"
    return ""


def launch(
    fn: Callable,
    k: int,
    args: tuple = (),
    *,
    threads: int | None = 1,
    timeout_s: float = 60.0,
    run_timeout_s: float | None = None,
    master_addr: str = "127.0.0.1",
    master_port: int | None = None,
    ifname: str | None = "auto",
    init_group: bool = True,
) -> list:
    """Run ``fn(rank, k, *args, where)`` in ``k`` spawned processes; their return values by rank.

    ``fn`` must be an importable top-level function; ``args`` are pickled
    once (by value: every process gets its own copy of every tensor). With
    ``init_group`` each process joins a gloo process group first (rendezvous
    at ``master_addr:master_port``, a free port when None). Any failure ends
    every process and raises one :class:`DistributedError`.
    """
    import multiprocessing as mp

    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"launch: k must be a positive integer, got {k!r}")
    ifname = _resolve_ifname(ifname, master_addr)
    payload = pickle.dumps(tuple(args), protocol=pickle.HIGHEST_PROTOCOL)
    auto_port = master_port is None
    attempts = 3 if auto_port and init_group else 1
    for attempt in range(attempts):
        port = find_free_port(master_addr) if auto_port else int(master_port)
        if init_group and not auto_port:
            busy = _port_free(master_addr, port)
            if busy is not None:
                raise DistributedError(
                    f"master_port {port} on {master_addr} is in use ({busy}); choose another master_port "
                    "or leave it unset to pick a free one",
                    setting="master_port",
                )
        try:
            return _launch_once(fn, k, payload, threads, timeout_s, run_timeout_s,
                                master_addr if init_group else None, port, ifname, mp)
        except DistributedError as exc:
            if auto_port and attempt + 1 < attempts and exc.setting == "master_port":
                continue  # lost a race for the free port: try another one
            raise
    raise AssertionError("unreachable")  # pragma: no cover


#: Process ids of the ranks of the latest :func:`launch` (tests check none survives).
last_pids: list[int] = []


def _launch_once(fn, k, payload, threads, timeout_s, run_timeout_s, addr, port, ifname, mp) -> list:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [
        ctx.Process(
            target=_worker,
            args=(r, k, addr, port, threads, ifname, timeout_s, fn, payload, q),
            name=f"iopopt-rank{r}",
            daemon=True,
        )
        for r in range(k)
    ]
    results: dict[int, Any] = {}
    errors: list[tuple] = []
    deadline = None if run_timeout_s is None else time.monotonic() + run_timeout_s
    ok = False
    try:
        last_pids.clear()
        for p in procs:
            p.start()
            last_pids.append(p.pid)
        while len(results) < k and not errors:
            try:
                msg = q.get(timeout=0.2)
            except queue_mod.Empty:
                dead = [r for r, p in enumerate(procs) if r not in results and not p.is_alive()]
                if dead:
                    try:  # its report may still be in flight
                        msg = q.get(timeout=1.0)
                    except queue_mod.Empty:
                        r = dead[0]
                        raise DistributedError(
                            f"rank {r} exited with code {procs[r].exitcode} without reporting a result "
                            "(crashed or killed)",
                            rank=r,
                        ) from None
                elif deadline is not None and time.monotonic() > deadline:
                    missing = [r for r in range(k) if r not in results]
                    raise DistributedError(
                        f"the run did not finish within run_timeout_s={run_timeout_s:g} s "
                        f"(ranks {missing} still running)",
                        setting="run_timeout_s",
                    ) from None
                else:
                    continue
            if msg[0] == "ok":
                results[msg[1]] = msg[3]
            else:
                errors.append(msg)
        if errors:
            # collect for a moment: the root cause is the earliest failure (peers fail after it)
            end = time.monotonic() + 0.5
            while time.monotonic() < end:
                try:
                    msg = q.get(timeout=0.1)
                except queue_mod.Empty:
                    continue
                if msg[0] == "error":
                    errors.append(msg)
            _, r, _, where, text, tb = min(errors, key=lambda m: m[2])
            reported = {m[1] for m in errors} | set(results)
            crashed = [d for d, p in enumerate(procs) if d not in reported and not p.is_alive() and p.exitcode]
            if crashed:  # a rank that died silently is the cause of its peers' connection errors
                c = crashed[0]
                raise DistributedError(
                    f"rank {c} exited with code {procs[c].exitcode} without reporting a result (crashed or "
                    f"killed); then rank {r} failed at {where}: {text.splitlines()[0] if text else ''}",
                    rank=c,
                    remote_traceback=tb,
                )
            setting = "master_port" if "master_port" in text else ("timeout_s" if "timed out" in text.lower() else None)
            raise DistributedError(
                f"rank {r} failed at {where}: {text}{_timeout_hint(text, timeout_s)}",
                rank=r,
                setting=setting,
                remote_traceback=tb,
            )
        ok = True
    finally:
        alive = _kill_all(procs, grace_s=10.0 if ok else 0.0)
        q.close()
        if ok:
            q.join_thread()
        else:
            q.cancel_join_thread()
        if alive:
            raise DistributedError(f"could not end rank processes {alive}")
    return [pickle.loads(results[r]) for r in range(k)]


# -- the executor ---------------------------------------------------------------------------------


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
            _rank_job(j.program, j.module, _default_input(j.program, seed) if j.x is None else j.x) for j in jobs
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


# -- verification ---------------------------------------------------------------------------------


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


def check_trace(program: Program, trace: DistributedTrace, module: nn.Module, x: Tensor | None = None,
                seed: int = 0, dtype: torch.dtype = torch.float64, rtol: float | None = None) -> DistributedVerifyReport:
    """Compare a trace with the unsplit forward of ``module`` (same tolerance rule as :func:`iopopt.verify`)."""
    import copy

    rtol = DEFAULT_RTOL[dtype] if rtol is None else rtol
    if x is None:
        x = _default_input(program, seed)
    model = copy.deepcopy(module).to(dtype).eval()
    with torch.no_grad():
        ref = model(x.to(dtype))
    out = trace.output
    if out is None or tuple(out.shape) != tuple(ref.shape):
        err = math.inf
    else:
        err = float((out.to(dtype) - ref).abs().max()) if ref.numel() else 0.0
        if not math.isfinite(err):
            err = math.inf
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    tol = rtol * max(1.0, scale)
    exp = expected_bytes(program)
    sent = tuple(trace.bytes_sent)
    return DistributedVerifyReport(
        passed=bool(err <= tol and exp == sent),
        max_abs_err=err,
        output_scale=scale,
        tolerance=tol,
        bytes_match=exp == sent,
        expected_bytes=exp,
        sent_bytes=sent,
        trace=trace,
    )


def verify_distributed(problem, plans, module: nn.Module, executor: DistributedExecutor | None = None,
                       seed: int = 0, dtype: torch.dtype = torch.float64) -> list[DistributedVerifyReport]:
    """Run ``plans`` (one plan or a list) of ``problem`` distributed and check each against the unsplit model."""
    from .compiler import compile_plan
    from .problem import Plan

    single = isinstance(plans, Plan)
    plans = [plans] if single else list(plans)
    ex = executor or DistributedExecutor(dtype=dtype, warmup=1, repeats=1)
    programs = [compile_plan(problem, p) for p in plans]
    traces = ex.run_many([Job(pr, module) for pr in programs], seed=seed)
    return [check_trace(pr, t, module, seed=seed, dtype=ex.dtype) for pr, t in zip(programs, traces)]


# -- command line ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    from . import Cluster, Problem, compile_plan, trace, zoo
    from .network import SwitchedNetwork
    from .plans import PLAN_KINDS, build_plan

    ap = argparse.ArgumentParser(
        prog="python -m iopopt.distributed",
        description="Run one plan of a zoo model distributed (all ranks locally, or this rank of a "
        "multi-host run when RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT are set) and check it.",
    )
    ap.add_argument("--model", default="tiny_chain", help="zoo model name")
    ap.add_argument("--input-hw", type=int, default=None, help="input height=width (default: the zoo's)")
    ap.add_argument("--plan", default="alternating", help=f"plan family: {sorted(PLAN_KINDS) + ['random']}")
    ap.add_argument("--solver", default=None, help="solver name (conf/solver/NAME.yaml) instead of --plan")
    ap.add_argument("--ranks", type=int, default=None, help="number of devices (default WORLD_SIZE or 2)")
    ap.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=60.0, help="torch.distributed timeout (s)")
    ap.add_argument("--step-barrier", action="store_true")
    a = ap.parse_args(argv)
    ex = DistributedExecutor(
        threads=a.threads, dtype=getattr(torch, a.dtype), repeats=a.repeats, timeout_s=a.timeout,
        step_barrier=a.step_barrier,
    )
    k = a.ranks or ex.world_size or 2
    module, shape = zoo.build(a.model)
    if a.input_hw:
        shape = (shape[0], shape[1], a.input_hw, a.input_hw)
    problem = Problem(trace(module, shape, name=a.model), Cluster.homogeneous(k, 1e10), SwitchedNetwork(1e8, 1e-4))
    if a.solver:
        from .solver import make_solver

        plan = make_solver(a.solver).solve(problem).plan
    else:
        plan = build_plan(problem, a.plan)
    program = compile_plan(problem, plan)
    t = ex.run(program, module)
    if t.output is not None:
        rep = check_trace(program, t, module, dtype=ex.dtype)
        print(rep.summary())
        return 0 if rep.passed else 1
    print(t.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
