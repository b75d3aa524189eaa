"""``iopopt profile``: measure this machine and write a cluster and a network preset.

Measures, with one torch thread per process and float32:

* compute throughput (FLOP/s, FLOPs counted as :mod:`iopopt.graph` counts them:
  2·MACs) of convolutions and linear layers at representative sizes (ResNet /
  AlexNet / small synthetic layers), the median of a few runs each; the
  device's ``flops_per_s`` is the aggregate over the conv set (Σ FLOPs / Σ
  median times, i.e. a FLOP-weighted harmonic mean). Linear layers at batch 1
  are memory-bound and are reported apart;
* memory-bound operators (relu, add, batchnorm) in bytes/s and pooling in
  FLOP/s, at ResNet activation sizes -- the cost model prices them as FLOPs at
  ``flops_per_s``; these figures show by how much that is off;
* per-operator overhead: the median time of tiny operators run through
  :func:`iopopt.kernels.compute` (what the executors call per step);
* the conv set in 2 and in ``K`` processes at once (``--ranks K``), as
  wall-clock throughput over about a second (the median of single calls would
  hide time-slicing), so the per-rank throughput under contention for the
  machine's cores is known;
* gloo latency and bandwidth on loopback between 2 processes: ping-pong
  (``isend``/``irecv`` + ``wait``, as the distributed executor does, a barrier
  before each round trip) at sizes from 4 B to 4 MiB, one-way time = half the
  median round trip, fitted as
  ``t = α + bytes / bandwidth`` (least squares on relative error);
* the per-message latency in the executor's regime: a ring exchange of 12 KiB
  messages among 2 and ``K`` ranks with a ~1 ms conv on every rank between two
  exchanges (mean time per exchange), and without the conv. On a machine
  whose cores also run the ranks' compute, gloo's I/O threads wait for a core
  and this latency is many times the idle ping-pong α; the network preset uses
  it as ``latency_s``.

Writes ``cluster.yaml`` (K identical devices, ``flops_per_s`` = the per-rank
conv throughput measured with K ranks computing at once), ``network.yaml`` (a
:class:`~iopopt.network.SwitchedNetwork`: loopback is full duplex; latency from
the loaded exchange, bandwidth from the ping-pong fit) and ``profile.json``
(every measurement) into ``--out`` (default ``outputs/profile/<stamp>/``) and
prints the two presets. Takes well under a minute.

Entry point: ``python -m iopopt.profile [--out DIR] [--ranks K] [--repeats N]``
(library: :func:`run_profile`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "CONV_SET",
    "LINEAR_SET",
    "run_profile",
    "bench_convs",
    "bench_linears",
    "bench_elementwise",
    "bench_pools",
    "op_overhead",
    "fit_network",
    "preset_flops",
    "cluster_yaml",
    "network_yaml",
    "write_presets",
    "summary_line",
    "preset_latency",
    "load_presets",
    "main",
]

#: (label, C_in, C_out, kernel, stride, padding, H_in) at batch 1: FLOPs = 2·C_out·H_out·W_out·C_in·k².
CONV_SET = (
    ("stem 3->64 k7 s2 @112", 3, 64, 7, 2, 3, 112),
    ("alexnet conv2 64->192 k5 @27", 64, 192, 5, 1, 2, 27),
    ("resnet 64->64 k3 @56", 64, 64, 3, 1, 1, 56),
    ("resnet 128->128 k3 @28", 128, 128, 3, 1, 1, 28),
    ("resnet 256->256 k3 @14", 256, 256, 3, 1, 1, 14),
    ("resnet 512->512 k3 @7", 512, 512, 3, 1, 1, 7),
    ("bottleneck 256->64 k1 @56", 256, 64, 1, 1, 0, 56),
    ("small 16->32 k3 @32", 16, 32, 3, 1, 1, 32),
)
#: (label, in_features, out_features) at batch 1.
LINEAR_SET = (
    ("alexnet fc1 9216->4096", 9216, 4096),
    ("fc 4096->4096", 4096, 4096),
    ("resnet fc 512->1000", 512, 1000),
)
PING_SIZES = (4, 64, 1024, 16384, 65536, 262144, 1 << 20, 4 << 20)


def _median_time(fn, repeats: int, warmup: int = 2, min_time_s: float = 0.0) -> float:
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_time_s:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if len(times) > 1000:
            break
    return statistics.median(times)


def _conv_flops(cin: int, cout: int, k: int, s: int, p: int, h: int) -> int:
    """FLOPs of one square conv of :data:`CONV_SET` at batch 1 (2·MACs, as :mod:`iopopt.graph` counts)."""
    ho = (h + 2 * p - k) // s + 1
    return 2 * cout * ho * ho * cin * k * k


def bench_convs(repeats: int = 5, convs=CONV_SET) -> list[dict]:
    """Median time and FLOP/s of every conv of ``convs`` (float32, current thread count)."""
    gen = torch.Generator().manual_seed(0)
    rows = []
    with torch.inference_mode():
        for label, cin, cout, k, s, p, h in convs:
            x = torch.randn(1, cin, h, h, generator=gen)
            w = torch.randn(cout, cin, k, k, generator=gen)
            b = torch.randn(cout, generator=gen)
            flops = _conv_flops(cin, cout, k, s, p, h)
            t = _median_time(lambda: F.conv2d(x, w, b, s, p), repeats)
            rows.append({"op": label, "flops": flops, "time_s": t, "flops_per_s": flops / t})
    return rows


def bench_linears(repeats: int = 5, linears=LINEAR_SET) -> list[dict]:
    gen = torch.Generator().manual_seed(1)
    rows = []
    with torch.inference_mode():
        for label, fin, fout in linears:
            x = torch.randn(1, fin, generator=gen)
            w = torch.randn(fout, fin, generator=gen)
            b = torch.randn(fout, generator=gen)
            flops = 2 * fin * fout
            t = _median_time(lambda: F.linear(x, w, b), repeats)
            rows.append({"op": label, "flops": flops, "time_s": t, "flops_per_s": flops / t})
    return rows


#: Memory-bound operators, each timed on every shape of :data:`ELEMENTWISE_SHAPES`.
ELEMENTWISE_SET = ("relu", "add", "batchnorm")
#: Activation shapes of a ResNet at 224x224 (from early to late layers).
ELEMENTWISE_SHAPES = ((1, 64, 112, 112), (1, 64, 56, 56), (1, 128, 28, 28), (1, 256, 14, 14), (1, 512, 7, 7))


def bench_elementwise(repeats: int = 5, shapes=ELEMENTWISE_SHAPES) -> list[dict]:
    """Memory-bound operators: median time and effective bytes/s (input + output bytes, float32)."""
    gen = torch.Generator().manual_seed(2)
    rows = []
    with torch.inference_mode():
        for shape in shapes:
            x = torch.randn(shape, generator=gen)
            y = torch.randn(shape, generator=gen)
            c = shape[1]
            mean, var, w, b = torch.zeros(c), torch.ones(c), torch.ones(c), torch.zeros(c)
            n = x.numel() * 4
            cases = {
                "relu": (lambda: F.relu(x), 2 * n),
                "add": (lambda: x + y, 3 * n),
                "batchnorm": (lambda: F.batch_norm(x, mean, var, w, b, False, 0.0, 1e-5), 2 * n),
            }
            for label in ELEMENTWISE_SET:
                fn, nbytes = cases[label]
                t = _median_time(fn, repeats)
                rows.append({"op": f"{label} {'x'.join(map(str, shape[1:]))}", "bytes": nbytes, "time_s": t,
                             "bytes_per_s": nbytes / t})
    return rows


#: (label, kind, C, H, kernel, stride, padding): pooling layers of AlexNet / ResNet / the synthetic nets.
POOL_SET = (
    ("maxpool 3x3 s2 64x112", "max", 64, 112, 3, 2, 1),
    ("maxpool 3x3 s2 64x55", "max", 64, 55, 3, 2, 0),
    ("maxpool 3x3 s2 256x13", "max", 256, 13, 3, 2, 0),
    ("maxpool 2x2 s2 32x48", "max", 32, 48, 2, 2, 0),
    ("avgpool 2x2 s2 32x48", "avg", 32, 48, 2, 2, 0),
)


def bench_pools(repeats: int = 5, pools=POOL_SET) -> list[dict]:
    """Pooling layers: median time and FLOP/s with FLOPs counted as the graph does (outputs × window)."""
    gen = torch.Generator().manual_seed(3)
    rows = []
    with torch.inference_mode():
        for label, kind, c, h, k, s, p in pools:
            x = torch.randn(1, c, h, h, generator=gen)
            fn = (lambda: F.max_pool2d(x, k, s, p)) if kind == "max" else (lambda: F.avg_pool2d(x, k, s, p))
            ho = (h + 2 * p - k) // s + 1
            flops = c * ho * ho * k * k
            t = _median_time(fn, repeats)
            rows.append({"op": label, "flops": flops, "time_s": t, "flops_per_s": flops / t})
    return rows


def aggregate(rows: Sequence[dict]) -> float:
    """Σ FLOPs / Σ time: the throughput of running the whole set once."""
    return sum(r["flops"] for r in rows) / sum(r["time_s"] for r in rows)


def op_overhead(repeats: int = 200) -> dict:
    """Median time of tiny operators run through :func:`iopopt.kernels.compute` (seconds)."""
    from . import kernels
    from .graph import trace
    from .layouts import full_region

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 1, 1)
            self.bn = torch.nn.BatchNorm2d(1)
            self.relu = torch.nn.ReLU()
            self.pool = torch.nn.MaxPool2d(1)

        def forward(self, x):
            y = self.pool(self.relu(self.bn(self.conv(x))))
            return y + x

    module = Tiny().eval()
    g = trace(module, (1, 1, 2, 2))
    x = torch.zeros(1, 1, 2, 2)
    out = {}
    with torch.inference_mode():
        for op in g:
            if op.kind in ("input", "output"):
                continue
            shard = kernels.weight_shard(op, "host", 0, None, module, host=0)
            n_in = len(op.inputs)
            region = full_region(op.out_shape)
            args = ([x] * n_in, [full_region(s) for s in op.in_shapes], region, shard)
            out[op.kind] = _median_time(lambda: kernels.compute(op, "host", 0, *args), repeats, warmup=20)
    out["median"] = statistics.median(out.values())
    return out


# -- ranks ----------------------------------------------------------------------------------------


#: The conv each rank runs between two messages in the loaded-exchange benchmark (~1 ms at 1 thread).
_LOADED_CONV = (32, 48, 96)
_LOADED_BYTES = 12288


def _throughput_loop(seconds: float, convs=CONV_SET) -> float:
    """Run the conv set over and over for ``seconds`` of wall time; FLOPs per wall second."""
    gen = torch.Generator().manual_seed(4)
    cases = []
    for _, cin, cout, k, s, p, h in convs:
        cases.append((torch.randn(1, cin, h, h, generator=gen), torch.randn(cout, cin, k, k, generator=gen), s, p,
                      _conv_flops(cin, cout, k, s, p, h)))
    flops = 0
    start = time.perf_counter()
    with torch.inference_mode():
        while time.perf_counter() - start < seconds:
            for x, w, s, p, f in cases:
                F.conv2d(x, w, None, s, p)
                flops += f
    return flops / (time.perf_counter() - start)


def _ring_exchange(rank: int, n: int, iters: int, compute: bool) -> float:
    """Ranks < n: (conv, then send to rank+1 and receive from rank-1) ``iters`` times; mean exchange seconds."""
    import torch.distributed as dist

    c, h, w_ = _LOADED_CONV
    x = torch.randn(1, c, h, w_)
    w = torch.randn(c, c, 3, 3)
    send = torch.randn(_LOADED_BYTES // 4)
    times = []
    with torch.inference_mode():
        for i in range(iters + 5):
            if compute:
                F.conv2d(x, w, None, 1, 1)
            t = time.perf_counter()
            recv = torch.empty(_LOADED_BYTES // 4)
            a = dist.isend(send, (rank + 1) % n, tag=i)
            b = dist.irecv(recv, (rank - 1) % n, tag=i)
            a.wait()
            b.wait()
            if i >= 5:
                times.append(time.perf_counter() - t)
    return statistics.mean(times)


def _rank_bench(rank: int, world: int, sizes, reps: int, conv_seconds: float, exchange_iters: int, where):
    """Ping-pong between ranks 0 and 1; then, for n = 2 and n = world ranks at once: conv throughput
    (wall-clock FLOP/s over ``conv_seconds``) and the mean time of a ring exchange of 12 KiB messages, with
    and without a ~1 ms conv on every rank between two exchanges. Idle ranks wait at the barriers."""
    import torch.distributed as dist

    result = {"rank": rank, "throughput": {}, "exchange_loaded": {}, "exchange_idle": {}}
    pair = dist.new_group([0, 1]) if world > 2 else None  # collective: every rank creates it
    dist.barrier()
    if rank < 2 and world >= 2:
        where.text = "ping-pong"
        peer = 1 - rank
        pp = {}
        for size in sizes:
            n = max(size // 4, 1)
            buf = torch.zeros(n)
            times = []
            count = reps if size < (1 << 20) else max(reps // 2, 5)
            for i in range(count + 3):
                # a barrier between round trips: without it the two ranks drift in and out of phase and
                # about half the round trips hit a gloo handshake that costs milliseconds (see network_yaml)
                dist.barrier(group=pair)
                t = time.perf_counter()
                if rank == 0:
                    dist.isend(buf, peer, tag=1).wait()
                    dist.irecv(buf, peer, tag=2).wait()
                else:
                    dist.irecv(buf, peer, tag=1).wait()
                    dist.isend(buf, peer, tag=2).wait()
                if i >= 3:
                    times.append(time.perf_counter() - t)
            pp[n * 4] = statistics.median(times) / 2
        result["pingpong"] = pp
    for n in sorted({min(2, world), world}):
        dist.barrier()
        where.text = f"conv throughput with {n} ranks at once"
        if rank < n:
            result["throughput"][n] = _throughput_loop(conv_seconds)
        for compute, key in ((False, "exchange_idle"), (True, "exchange_loaded")):
            dist.barrier()
            where.text = f"ring exchange with {n} ranks (compute={compute})"
            if rank < n and n >= 2:
                result[key][n] = _ring_exchange(rank, n, exchange_iters, compute)
    dist.barrier()
    return result


def fit_network(pingpong: dict[int, float]) -> tuple[float, float, list[dict]]:
    """Fit one-way time = α + b/B (least squares on relative error); returns (α, B, per-size rows)."""
    import numpy as np

    sizes = np.array(sorted(pingpong), dtype=float)
    t = np.array([pingpong[int(s)] for s in sizes])
    # minimise Σ ((α + β·s − t) / t)²: a weighted linear least squares
    a = np.stack([np.ones_like(sizes), sizes], 1) / t[:, None]
    (alpha, beta), *_ = np.linalg.lstsq(a, np.ones_like(t), rcond=None)
    if alpha <= 0:  # fall back to the smallest message's time
        alpha = float(t[0])
    if beta <= 0:
        beta = float((t[-1] - alpha) / sizes[-1]) if t[-1] > alpha else 1e-12
    rows = []
    for s, ti in zip(sizes, t):
        pred = alpha + beta * s
        rows.append({"bytes": int(s), "one_way_s": float(ti), "fit_s": float(pred), "rel_err": float(pred / ti - 1)})
    return float(alpha), float(1.0 / beta), rows


def run_profile(
    ranks: int = 2,
    repeats: int = 5,
    ping_reps: int = 30,
    threads: int = 1,
    conv_seconds: float = 1.0,
    exchange_iters: int = 200,
) -> dict:
    """Every measurement as a dict (see the module docstring)."""
    from .distributed import launch

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    convs = bench_convs(repeats)
    linears = bench_linears(repeats)
    elementwise = bench_elementwise(repeats)
    pools = bench_pools(repeats)
    overhead = op_overhead()
    world = max(ranks, 2)
    per_rank = launch(_rank_bench, world, (PING_SIZES, ping_reps, conv_seconds, exchange_iters), threads=threads,
                      timeout_s=120, run_timeout_s=600)
    pingpong = per_rank[0]["pingpong"]
    alpha, bandwidth, fit_rows = fit_network(pingpong)

    def per_n(key):
        ns = sorted({n for r in per_rank for n in r[key]})
        return {n: statistics.mean(r[key][n] for r in per_rank if n in r[key]) for n in ns}

    throughput = per_n("throughput")
    loaded = {str(n): v for n, v in per_n("exchange_loaded").items()}
    idle = {str(n): v for n, v in per_n("exchange_idle").items()}
    return {
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "threads_per_rank": threads,
            "platform": sys.platform,
        },
        "ranks": ranks,
        "convs": convs,
        "linears": linears,
        "conv_flops_per_s": aggregate(convs),
        "linear_flops_per_s": aggregate(linears),
        "elementwise": elementwise,
        "mem_bytes_per_s": sum(r["bytes"] for r in elementwise) / sum(r["time_s"] for r in elementwise),
        "pools": pools,
        "pool_flops_per_s": aggregate(pools),
        "op_overhead": overhead,
        "op_overhead_s": overhead["median"],
        "concurrent_world": world,
        "concurrent_flops_per_s": {str(n): v for n, v in throughput.items()},
        "concurrent_mean_flops_per_s": throughput[world],
        "exchange_loaded_s": loaded,
        "exchange_idle_s": idle,
        "pingpong": {str(k): v for k, v in pingpong.items()},
        "network_fit": fit_rows,
        "pingpong_latency_s": alpha,
        "latency_s": preset_latency({"exchange_loaded_s": loaded, "pingpong_latency_s": alpha}, ranks),
        "bandwidth_bytes_per_s": bandwidth,
        "seconds": time.perf_counter() - t0,
    }


def _interp(table: dict, k: int) -> float | None:
    pts = sorted((int(n), v) for n, v in table.items())
    if not pts:
        return None
    for n, v in pts:
        if n == k:
            return v
    if k <= pts[0][0]:
        return pts[0][1]
    if k >= pts[-1][0]:
        return pts[-1][1]
    for (n0, v0), (n1, v1) in zip(pts, pts[1:]):
        if n0 < k < n1:
            return v0 + (v1 - v0) * (k - n0) / (n1 - n0)
    return None  # pragma: no cover


def preset_latency(prof: dict, k: int) -> float:
    """Per-message latency for a ``k``-rank preset: the mean time of one exchange of the loaded ring
    benchmark with ``k`` ranks (interpolated between the measured rank counts), else the ping-pong fit."""
    v = _interp(prof.get("exchange_loaded_s") or {}, k)
    return prof["pingpong_latency_s"] if v is None else v


def preset_flops(prof: dict, k: int | None = None) -> float:
    """Per-device throughput for a ``k``-rank preset: the wall-clock conv throughput per rank measured with
    ``k`` ranks computing at once (interpolated between the measured counts, and for more ranks than
    measured the solo figure times the core share); one rank: the solo figure."""
    k = prof["ranks"] if k is None else k
    if k <= 1:
        return prof["conv_flops_per_s"]
    table = {int(n): v for n, v in (prof.get("concurrent_flops_per_s") or {}).items()}
    if table and k <= max(table):
        return _interp(table, k)
    cores = prof["machine"]["cpu_count"] or 1
    share = min(1.0, cores / (k * prof["machine"]["threads_per_rank"]))
    return prof["conv_flops_per_s"] * share


def cluster_yaml(prof: dict, name: str = "profiled_local", k: int | None = None) -> str:
    k = prof["ranks"] if k is None else k
    f = preset_flops(prof, k)
    cores = prof["machine"]["cpu_count"]
    conc = ", ".join(f"{n} ranks {v:.3e}" for n, v in (prof.get("concurrent_flops_per_s") or {}).items())
    lines = [
        f"# {k} ranks on this machine, MEASURED by `python -m iopopt.profile` on {prof.get('stamp', '')}",
        f"# ({cores} cores, torch {prof['machine']['torch']}, {prof['machine']['threads_per_rank']} thread(s) per rank, "
        "float32).",
        f"# flops_per_s: conv throughput per rank with {k} ranks computing at once (wall clock over the conv set);",
        f"#   solo {prof['conv_flops_per_s']:.3e} FLOP/s (sum FLOPs / sum median times of {len(prof['convs'])} convs); "
        f"per rank at once: {conc}.",
        f"#   batch-1 linear layers are memory-bound: {prof['linear_flops_per_s']:.3e} FLOP/s (not modelled apart);",
        f"#   activations/batchnorm/add move {prof['mem_bytes_per_s']:.3e} B/s and pooling runs at "
        f"{prof['pool_flops_per_s']:.3e} FLOP/s (the model prices both as FLOPs at flops_per_s).",
        "# op_overhead_s: median time of tiny operators through iopopt.kernels.compute.",
        "# memory_bytes: not measured (no limit).",
        f"name: {name}",
        "host: 0",
        "split: proportional",
        "devices:",
    ]
    for d in range(k):
        lines.append(
            f"  - {{name: r{d}, flops_per_s: {f:.4e}, memory_bytes: null, op_overhead_s: {prof['op_overhead_s']:.3e}}}"
        )
    return "\n".join(lines) + "\n"


def network_yaml(prof: dict, name: str = "profiled_loopback", k: int | None = None) -> str:
    k = prof["ranks"] if k is None else k
    rows = ", ".join(f"{r['bytes']}B {r['one_way_s'] * 1e6:.0f}us" for r in prof["network_fit"])
    loaded = ", ".join(f"{n} ranks {v * 1e6:.0f}us" for n, v in (prof.get("exchange_loaded_s") or {}).items())
    idle = ", ".join(f"{n} ranks {v * 1e6:.0f}us" for n, v in (prof.get("exchange_idle_s") or {}).items())
    return (
        f"# gloo over loopback, {k} ranks, MEASURED by `python -m iopopt.profile` on {prof.get('stamp', '')}.\n"
        "# Ping-pong one-way times (isend/irecv + wait) between 2 processes, fitted as alpha + bytes / bandwidth:\n"
        f"# {rows}: alpha {prof['pingpong_latency_s'] * 1e6:.1f} us, bandwidth from this fit.\n"
        "# latency_s: mean time of one 12 KiB ring exchange with a ~1 ms conv on every rank between two exchanges\n"
        f"# ({loaded}; without the conv: {idle}) -- the executor's regime, where gloo's I/O threads wait for\n"
        "# cores busy with compute.\n"
        "# Loopback is full duplex, so the switched model.\n"
        "_target_: iopopt.network.SwitchedNetwork\n"
        f"name: {name}\n"
        f"bandwidth_bytes_per_s: {prof['bandwidth_bytes_per_s']:.4e}\n"
        f"latency_s: {preset_latency(prof, k):.4e}\n"
    )


def summary_line(prof: dict) -> str:
    conc = ", ".join(f"{n} ranks {v / 1e9:.1f}" for n, v in (prof.get("concurrent_flops_per_s") or {}).items())
    loaded = ", ".join(f"{n} ranks {v * 1e6:.0f}" for n, v in (prof.get("exchange_loaded_s") or {}).items())
    idle = ", ".join(f"{n} ranks {v * 1e6:.0f}" for n, v in (prof.get("exchange_idle_s") or {}).items())
    return (
        f"conv {prof['conv_flops_per_s'] / 1e9:.1f} GFLOP/s solo, per rank at once {conc} GFLOP/s; linear "
        f"{prof['linear_flops_per_s'] / 1e9:.1f} GFLOP/s; pooling {prof['pool_flops_per_s'] / 1e9:.2f} GFLOP/s; "
        f"memory-bound {prof['mem_bytes_per_s'] / 1e9:.0f} GB/s; op overhead {prof['op_overhead_s'] * 1e6:.1f} us; "
        f"gloo ping-pong {prof['pingpong_latency_s'] * 1e6:.0f} us + bytes / {prof['bandwidth_bytes_per_s'] / 1e9:.2f} "
        f"GB/s; exchange with compute {loaded} us, idle {idle} us"
    )


def write_presets(prof: dict, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    c, n = out / "cluster.yaml", out / "network.yaml"
    c.write_text(cluster_yaml(prof))
    n.write_text(network_yaml(prof))
    (out / "profile.json").write_text(json.dumps(prof, indent=2))
    return c, n


def load_presets(out: Path):
    """``(Cluster, NetworkModel)`` from a profile directory."""
    import yaml

    from .configs import build_cluster, build_network

    cluster = build_cluster(yaml.safe_load((Path(out) / "cluster.yaml").read_text()))
    network = build_network(yaml.safe_load((Path(out) / "network.yaml").read_text()))
    return cluster, network


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="iopopt profile", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None, help="output directory (default outputs/profile/<stamp>)")
    ap.add_argument("--ranks", type=int, default=2, help="devices in the cluster preset (and concurrent ranks)")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per operator (median)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    a = ap.parse_args(argv)
    if a.ranks < 1:
        ap.error("--ranks must be >= 1")
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out = Path(a.out) if a.out else Path("outputs") / "profile" / stamp
    prof = run_profile(ranks=a.ranks, repeats=a.repeats, threads=a.threads)
    prof["stamp"] = stamp
    c, n = write_presets(prof, out)
    print(f"# {summary_line(prof)} ({prof['seconds']:.1f} s)")
    for r in prof["convs"] + prof["linears"] + prof["pools"]:
        print(f"#   {r['op']:<32} {r['time_s'] * 1e3:8.3f} ms  {r['flops_per_s'] / 1e9:6.2f} GFLOP/s")
    for r in prof["elementwise"]:
        print(f"#   {r['op']:<32} {r['time_s'] * 1e3:8.3f} ms  {r['bytes_per_s'] / 1e9:6.2f} GB/s")
    print(f"# --- {c}")
    print(c.read_text())
    print(f"# --- {n}")
    print(n.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
