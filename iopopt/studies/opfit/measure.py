"""Per-operator times measured as the executors run a one-device plan, and the cost model's prediction of them.

:func:`time_ops` runs a traced graph on one device the way the executors
run a step (:func:`iopopt.exec.kernels.compute` on the host's weight shards,
every tensor freed after its last consumer), timing each operator with
``time.perf_counter`` around its kernel; ``warmup`` untimed passes, then the
median of ``repeats`` timed ones per operator and of the per-pass totals.
:func:`predict_ops` is the cost model's compute time of the same operators
(the one-device ``host`` plan through :func:`iopopt.cost.evaluate`).
Timed in rounds, an operator's figure is :func:`least_round`, the least of
its per-round medians.
:func:`reference_times` times two fixed kernels, a conv and a copy beyond the
caches: ``iopopt profile`` records them, ``iopopt opfit`` times them again and
reports how much faster or slower the machine ran than during the profile.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ...cost.evaluate import evaluate
from ...exec import kernels
from ...model.cluster import Cluster, Device
from ...model.graph import OpGraph
from ...model.layouts import full_region
from ...model.network import SwitchedNetwork
from ...model.problem import Problem

__all__ = ["CLOCKS", "OpTimes", "time_ops", "predict_ops", "forward_time", "reference_times", "drift",
           "steady_allocator", "timed", "large_copy", "least_round", "ROUNDS"]

#: Clocks :func:`time_ops` can time with: wall time, or the calling thread's CPU time.
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.thread_time}


_STEADY: list[bool] = []


#: Rounds ``iopopt profile`` and ``iopopt opfit`` time by default: the least of five is rarely a disturbed one.
ROUNDS = 5


def least_round(per_round: Sequence[float]) -> float:
    """An operator's time from its per-round medians: the least of them.

    Rounds are spread over the run so that a burst of load on a shared machine
    reaches some of them, not all. Other work only ever slows a kernel (it
    takes the caches, the memory bandwidth, the host's clock; time slicing is
    left out by the CPU clock), so the least disturbed round is the figure
    that repeats from run to run. ``iopopt profile`` fits its device to these
    figures and ``iopopt opfit`` checks it against them, so both sides take the
    same statistic (the testbed's time dilation also stretches a kernel's least
    time).
    """
    if not per_round:
        raise ValueError("least_round: no rounds")
    return min(per_round)


def steady_allocator() -> bool:
    """Keep this process's freed memory for reuse (glibc ``mallopt``), so operator times do not depend on the
    allocator's history; True when set (once per process; False off glibc).

    An operator's output is a fresh tensor. By default glibc serves a large
    one (above a threshold it adjusts as the process runs, up to 32 MB) with a
    fresh ``mmap`` and returns it on free, so the next pass page-faults it in
    again. Whether that happens depends on what the process allocated before:
    on the development VM VGG-16's 15 ReLUs took 2.5-3.6 ms in one process and
    8.5-13 ms in the next (same code, same inputs), and the profile and the
    measurement it is checked against could be in different states. With the
    mmap threshold at 1 GiB and no trimming, freed tensors are reused, as an
    inference runtime's arena does: every process is in the same, steady state.
    glibc before 2.35 refuses a threshold above 32 MB: then 32 MB is set.
    Only the measurements of ``iopopt profile`` and ``iopopt opfit`` run so;
    the executors' ranks keep the default allocator.
    """
    if _STEADY:
        return _STEADY[0]
    import ctypes

    ok = False
    if sys.platform.startswith("linux"):
        try:
            mallopt = ctypes.CDLL(None).mallopt
            m_trim_threshold, m_mmap_threshold = -1, -3
            trim = bool(mallopt(m_trim_threshold, (1 << 31) - 1))
            mmap = bool(mallopt(m_mmap_threshold, 1 << 30)) or bool(mallopt(m_mmap_threshold, 32 << 20))
            ok = trim and mmap
        except (OSError, AttributeError):  # not glibc
            ok = False
    _STEADY.append(ok)
    return ok


@dataclass
class OpTimes:
    """Measured times: per operator (seconds, median over passes) and per pass (the sum over operators)."""

    per_op: dict[str, float]
    samples: dict[str, list[float]]
    passes_s: list[float]

    @property
    def total_s(self) -> float:
        """The median over timed passes of the pass's summed kernel time."""
        return statistics.median(self.passes_s)


def time_ops(
    graph: OpGraph,
    module: nn.Module,
    repeats: int = 15,
    warmup: int = 3,
    x: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
    progress: Callable[[int, int], None] | None = None,
    clock: str = "wall",
) -> OpTimes:
    """Time every operator of ``graph`` run whole on one device, as the executors run a ``host`` plan.

    The process's allocator is first made steady (:func:`steady_allocator`).
    ``clock``: ``wall`` (``time.perf_counter``) or ``cpu`` (this thread's CPU
    time, ``time.thread_time``: what the kernel itself used, not the time other
    processes held the core -- for measuring on a shared machine).
    """
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
    steady_allocator()
    now = CLOCKS[clock]
    ops = [op for op in graph if op.kind not in ("input", "output")]
    module = module.eval()
    shards = {op.name: kernels.weight_shard(op, "host", 0, None, module, host=0) for op in ops}
    extra = {op.name: kernels.op_extra(op, module) for op in ops}
    regions = {op.name: ([full_region(s) for s in op.in_shapes], full_region(op.out_shape)) for op in ops}
    last = {n: graph.last_use(n) for n in graph.order}
    freed_at: dict[int, list[str]] = {}
    for n, p in last.items():
        freed_at.setdefault(p, []).append(n)
    if x is None:
        x = torch.randn(graph[graph.input_name].out_shape, generator=torch.Generator().manual_seed(0))
    x = x.to(dtype)
    samples: dict[str, list[float]] = {op.name: [] for op in ops}
    passes: list[float] = []
    total = warmup + repeats
    with torch.inference_mode():
        for r in range(total):
            store: dict[str, torch.Tensor] = {}
            pass_s = 0.0
            for p, op in enumerate(graph):
                if op.kind == "input":
                    store[op.name] = x.clone()
                elif op.kind != "output":
                    inputs = [store[i] for i in op.inputs]
                    in_regions, out_region = regions[op.name]
                    t0 = now()
                    out = kernels.compute(op, "host", 0, inputs, in_regions, out_region, shards[op.name],
                                          extra=extra[op.name], dtype=dtype)
                    dt = now() - t0
                    store[op.name] = out
                    del inputs
                    if r >= warmup:
                        samples[op.name].append(dt)
                        pass_s += dt
                for gone in freed_at.get(p, ()):
                    store.pop(gone, None)
            if r >= warmup:
                passes.append(pass_s)
            if progress is not None:
                progress(r + 1, total)
    per_op = {n: statistics.median(v) for n, v in samples.items()}
    return OpTimes(per_op, samples, passes)


def forward_time(module: nn.Module, shape, repeats: int = 15, warmup: int = 3, clock: str = "wall") -> float:
    """Median seconds of the unsplit ``module(x)`` (for reference: torch's own forward, not the executors')."""
    steady_allocator()
    now = CLOCKS[clock]
    x = torch.randn(tuple(shape), generator=torch.Generator().manual_seed(0))
    times = []
    with torch.inference_mode():
        for r in range(warmup + repeats):
            t0 = now()
            module(x)
            if r >= warmup:
                times.append(now() - t0)
    return statistics.median(times)


def predict_ops(graph: OpGraph, device: Device) -> Mapping[str, float]:
    """The cost model's compute time of every operator of ``graph`` run whole on ``device`` (seconds)."""
    problem = Problem(graph, Cluster((device,), name=device.name), SwitchedNetwork(1e9))
    report = evaluate(problem, problem.plan({}, default="host"))
    return {c.node: c.compute_s for c in report.per_op if graph[c.node].kind not in ("input", "output")}


def timed(fn: Callable[[], object], repeats: int, clock: str = "cpu", warmup: int = 2) -> list[float]:
    """Seconds of ``repeats`` calls of ``fn`` on ``clock``, after ``warmup`` untimed ones."""
    now = CLOCKS[clock]
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = now()
        fn()
        out.append(now() - t0)
    return out


def large_copy(repeats: int, clock: str) -> dict:
    """A 256 MB copy, far beyond the caches: bytes read + written per second (the DRAM bandwidth).

    The fastest of the copies, as bandwidth benchmarks report: other processes
    on the machine share the memory bus, and a median taken while they run
    measured 20.6 GB/s where a quiet copy gives 38.5 GB/s on the development
    machine; the fastest copy is the least disturbed one. ``iopopt profile``
    takes one after every calibration round and one at the end, and keeps the
    fastest (one burst of copies measured 21.5 GB/s there: the fit then saw no
    working set worth having).
    """
    src = torch.ones(64 << 20)  # its values do not matter to a copy; filling is 15x quicker than randn
    dst = torch.empty_like(src)
    t = min(timed(lambda: dst.copy_(src), repeats, clock, warmup=1))
    nbytes = 2 * src.numel() * 4
    return {"bytes": nbytes, "time_s": t, "bytes_per_s": nbytes / t}


def reference_times(repeats: int = 15, clock: str = "cpu") -> dict[str, float]:
    """Seconds of two fixed kernels, on one torch thread: ``conv`` (64->64 3x3 at 56x56, compute-bound; the median
    of ``repeats``) and ``copy`` (:func:`large_copy`, beyond the caches: memory-bound; the fastest).

    A shared machine does not keep one speed: on the development VM the same
    conv took from 1.8 to 3.6 ms within four minutes, with nothing else of
    ours running. Timed beside a measurement, they tell how fast the machine
    was then; see :func:`drift`.
    """
    steady_allocator()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gen = torch.Generator().manual_seed(11)
        x, w = torch.randn(1, 64, 56, 56, generator=gen), torch.randn(64, 64, 3, 3, generator=gen)
        with torch.inference_mode():
            conv = statistics.median(timed(lambda: torch.nn.functional.conv2d(x, w, None, 1, 1), repeats, clock, 1))
            return {"conv": conv, "copy": large_copy(repeats, clock)["time_s"]}
    finally:
        torch.set_num_threads(threads)


def drift(now_s: Mapping[str, float], then_s: Mapping[str, float] | None) -> dict[str, float]:
    """Per reference kernel, how much slower (> 0) or faster (< 0) it ran in ``now_s`` than in ``then_s``.

    >>> drift({"conv": 0.0022, "copy": 0.002}, {"conv": 0.002, "copy": 0.002})
    {'conv': 0.1, 'copy': 0.0}
    >>> drift({"conv": 0.002}, None)
    {}
    """
    if not then_s:
        return {}
    return {k: round(now_s[k] / then_s[k] - 1, 4) for k in now_s if then_s.get(k)}
