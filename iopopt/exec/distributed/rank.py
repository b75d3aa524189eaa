"""One rank of a distributed run: its weight shards, the per-step exchange over gloo, and compute.

Input buffers are built by the assembler the simulated executor uses too
(:func:`iopopt.exec.assemble.assemble`), with this rank's gloo transport.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ..._lifecycle import exclusive_lock
from ...compile.reshard import Resharding
from ...model.graph import WEIGHTED_KINDS
from .. import kernels
from ..assemble import assemble
from ..regions import dense_shape
from .types import Fault, RankStats, StepTime, _RankJob, _Settings, _Where

__all__: list[str] = []

#: Op kinds whose weights a rank shards.
_WEIGHTED = WEIGHTED_KINDS
#: Times a dilated rank runs each kernel again in a warm-up inference to measure its CPU time (the least is kept).
WARM_RERUNS = 2
#: Passes a dilated rank makes over all its kernels after the warm-up, timing each again (see ``_calibrate``).
CALIBRATION_PASSES = 4


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
        # the testbed's time dilation: seconds of stretched kernel time owed, slept before the next message
        self._owed = 0.0
        self._slept = 0.0
        self._warm_cpu: dict[int, float] = {}  # per step, the kernel's CPU time run again at once (warm caches)
        self._kernel_inputs: dict[int, list] = {}  # per timed step, the shapes and dtypes of its input buffers
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

        ``read(t)`` gives the piece of a transfer this rank sends (a view of
        its stored part or reduced block, which nothing writes before the
        waits below return). A receive already posted ahead (:meth:`_prepost`)
        is reused.
        """
        dist, r = self.dist, self.rank
        self._pay()  # the kernels before this exchange end before it starts
        works, keep = [], []
        got: dict[int, Tensor] = {}
        # receives first: gloo queues a "ready to receive" notice behind bulk data already queued on the
        # same pair, so sends posted first make a two-way exchange half duplex
        for j, t in enumerate(phase):
            if t.dst == r and t.src != r:
                posted = self._posted.pop(base + j, None)
                if posted is None:
                    buf = torch.empty(dense_shape(shape, t.region), dtype=self.dtype)
                    posted = (dist.irecv(buf, t.src, tag=base + j), buf)
                works.append(posted[0])
                got[j] = posted[1]
                self.received += 1
        delay = self.s.send_delay
        for j, t in enumerate(phase):
            if t.src == r:
                piece = read(t).contiguous()
                keep.append(piece)
                if delay is not None:
                    delay.before_send(r, t.dst)  # type: ignore[attr-defined]  # the testbed's MessageLatency
                works.append(dist.isend(piece, t.dst, tag=base + j))
                self.bytes_sent += piece.numel() * self.job.dtype_bytes
                self.wire_bytes += piece.numel() * piece.element_size()
                self.sent += 1
        for w in works:
            w.wait()
        return got

    def _kernel(self, step, p: int, bufs) -> Tensor | None:
        """This rank's part of step ``p`` computed from its input buffers (None where it computes nothing)."""
        r = self.rank
        region = step.term.out.parts[r]
        if region is None:
            return None
        return kernels.compute(step.op, step.strategy, r, bufs, [res.dst.parts[r] for res in step.inputs], region,
                               self.shards.get(p, {}), host=self.job.host, extra=self.extra.get(p), dtype=self.dtype)

    def _timed_again(self, step, p: int, bufs) -> Tensor | None:
        """Step ``p``'s kernel run again, its CPU time kept in ``_warm_cpu`` when it is the least so far."""
        c = time.thread_time()
        out = self._kernel(step, p, bufs)
        self._warm_cpu[p] = min(self._warm_cpu.get(p, math.inf), time.thread_time() - c)
        return out

    def _calibrate(self) -> None:
        """Time every kernel of the warm-up again, ``CALIBRATION_PASSES`` passes over all of them; keep the least.

        The warm-up times a kernel at one moment, and this machine's speed
        moves in bursts: a 50-ms conv run three times at once took 44 to 80 ms
        depending on when (the same for every kernel run at that moment). A
        plan whose step waits for the slowest of k ranks would pay the worst
        of k such draws where one device pays one. Passes over all kernels
        space each kernel's samples a pass apart, so the least of them is
        the kernel at this machine's quieter speed, for every plan alike.
        Each kernel runs on fresh random buffers of its inputs' shapes (its
        time depends on shapes, not values), twice, the second timed;
        one rank at a time, under the testbed's lock.
        """
        if not self._kernel_inputs or self.s.compute_lock is None:
            return
        steps = self.job.steps
        with exclusive_lock(self.s.compute_lock):
            for _ in range(CALIBRATION_PASSES):
                for p, shapes in self._kernel_inputs.items():
                    bufs = [None if s is None else torch.randn(s[0], dtype=s[1]) for s in shapes]
                    self._kernel(steps[p], p, bufs)  # untimed, caches warm; its output is dropped at once
                    self._timed_again(steps[p], p, bufs)
                    del bufs

    def _pay(self) -> None:
        """Sleep what the dilated kernels since the last message still owe (the testbed; else nothing)."""
        if self._owed > 0:
            t0 = time.perf_counter()
            time.sleep(self._owed)
            self._slept += time.perf_counter() - t0
        self._owed = 0.0

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

    def _assemble(self, p: int, i: int, res: Resharding, src_name: str, stores: dict) -> Tensor | None:
        """This rank's buffer of ``res.dst`` (None where it needs nothing), by the shared assembler."""
        r = self.rank
        transport = _Gloo(self, self.tags[(p, i)], res.src.shape)
        name = self.job.steps[p].op.name
        return assemble(res, (r,), {r: stores.get(src_name)}, transport, self.dtype, name, src_name).buffers[r]

    # -- one inference --------------------------------------------------------------------------
    def infer(self, x: Tensor | None, inference: int):
        """Run the Program once; returns (output or None, per-step [comm, compute, sync], end-to-end seconds)."""
        dist, r, job = self.dist, self.rank, self.job
        fault = self.s.fault
        if fault is not None and not (fault.rank == r and fault.job == self.job_index and inference == 0):
            fault = None
        slow = None if self.s.compute_dilation is None else self.s.compute_dilation[r]
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
            slept0 = self._slept
            if self.s.prepost:
                if p == 0:
                    self._prepost(0)
                self._prepost(p + 1)
            bufs = [self._assemble(p, i, res, src, stores) for i, (res, src) in enumerate(zip(step.inputs, op.inputs))]
            warmup = inference < self.s.warmup
            # the testbed times a kernel's CPU time in the warm-up, one rank at a time (see TestbedSpec)
            measure = (slow is not None and warmup and op.kind not in ("input", "output")
                       and step.term.out.parts[r] is not None)
            lock = self.s.compute_lock if measure else None
            with exclusive_lock(lock) if lock is not None else contextlib.nullcontext():
                t1 = time.perf_counter()
                slept = self._slept - slept0  # paid inside the exchange, for earlier kernels: counted as compute
                c1 = time.thread_time()
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
                    out = self._kernel(step, p, bufs)
                owed = 0.0
                if slow is not None:  # the testbed: the kernel takes as long as on the rank's device, slept later
                    cpu, wall = time.thread_time() - c1, time.perf_counter() - t1
                    if measure and out is not None:
                        self._kernel_inputs[p] = [None if b is None else (tuple(b.shape), b.dtype) for b in bufs]
                        for _ in range(WARM_RERUNS):  # the kernel again, caches warm: what the timed runs stretch
                            del out
                            out = self._timed_again(step, p, bufs)
                    ref = self._warm_cpu.get(p)
                    owed = _owed(cpu, wall, slow) if ref is None else max(0.0, ref * slow - wall)
                    self._owed += owed
            t2 = time.perf_counter()
            t3 = t2
            if self.s.step_barrier:
                self._pay()
                dist.barrier()
                t3 = time.perf_counter()
            times.append((t1 - t0 - slept, t2 - t1 + owed, t3 - t2))
            if out is not None:
                stores[name] = out
            del bufs
            for gone in job.freed_at.get(p, ()):
                stores.pop(gone, None)
        self._pay()
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
        self._calibrate()
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


class _Gloo:
    """The distributed transport of one input resharding: ``dist.isend`` / ``dist.irecv``, tags by phase base."""

    def __init__(self, runner: _RankRunner, bases: list[int], shape):
        self.runner = runner
        self.bases = bases
        self.shape = shape

    def exchange(self, phase, transfers, read) -> dict[int, Tensor | None]:
        return self.runner._exchange(transfers, self.bases[phase], self.shape, read)


def _owed(cpu_s: float, wall_s: float, factor: float) -> float:
    """How much longer work of ``cpu_s`` CPU seconds, which took ``wall_s``, must last to take ``factor × cpu_s``."""
    return max(0.0, cpu_s * factor - max(wall_s, cpu_s))


def _dilate(cpu_s: float, wall_s: float, factor: float) -> None:
    """Sleep so that work of ``cpu_s`` CPU seconds, which took ``wall_s`` so far, lasts ``factor × cpu_s``."""
    left = _owed(cpu_s, wall_s, factor)
    if left > 0:
        time.sleep(left)


def _inject(fault: Fault) -> None:
    if fault.kind == "raise":
        raise RuntimeError(f"injected fault at step {fault.step!r} on rank {fault.rank}")
    if fault.kind == "exit":
        os._exit(17)
    while True:  # hang
        time.sleep(3600)


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover  (not Linux)
        return None
    return None


def _reset_peak_rss() -> int | None:
    """Reset this process's resident-set peak (Linux ``clear_refs`` 5); the resident set now, or None."""
    import gc

    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    return _status_kib("VmRSS")


def _peak_rss() -> int | None:
    return _status_kib("VmHWM")


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
            rss0 = _reset_peak_rss()
            stats, output = runner.run(x)
            peak = _peak_rss()
            if rss0 is not None and peak is not None:
                elem = torch.empty((), dtype=settings.dtype).element_size()
                shard_bytes = runner.weight_bytes // job.dtype_bytes * elem
                stats.peak_rss_bytes = peak
                stats.peak_memory_bytes = max(0, peak - rss0) + shard_bytes
            out.append((stats, output))
            del runner
    return out
