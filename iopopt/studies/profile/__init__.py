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
import os
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import torch

from ...exec.distributed.launcher import launch
from .bench import (
    CONV_SET,
    LINEAR_SET,
    PING_SIZES,
    _rank_bench,
    aggregate,
    bench_convs,
    bench_elementwise,
    bench_linears,
    bench_pools,
    fit_network,
    op_overhead,
)
from .presets import (
    cluster_yaml,
    load_presets,
    network_yaml,
    preset_flops,
    preset_latency,
    summary_line,
    write_presets,
)

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


def run_profile(
    ranks: int = 2,
    repeats: int = 5,
    ping_reps: int = 30,
    threads: int = 1,
    conv_seconds: float = 1.0,
    exchange_iters: int = 200,
) -> dict:
    """Every measurement as a dict (see the module docstring)."""
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
