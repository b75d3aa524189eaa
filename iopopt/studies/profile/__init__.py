"""``iopopt profile``: measure this machine and write cluster and network presets the app takes at once.

Measures, with one torch thread per process and float32:

* **the roofline of one device** (:mod:`.fit`): every operator of four
  calibration networks (:mod:`.calibration`: plain conv/ReLU/max-pool stacks
  with a large fully-connected head, residual stages with batchnorm,
  inverted-residual blocks with depthwise convs, multi-branch blocks joined by
  a concat) is timed in context, as the executors run a one-device plan --
  conv, depthwise conv, linear, activations, batchnorm, max/avg/adaptive
  pooling, add, concat and the copies of flatten/dropout -- and the cost
  model's own formula, ``max(FLOPs / rate(kind), bytes / bandwidth(kind)) +
  overhead``, is fitted to them: the peak conv rate (``flops_per_s``),
  per-kind rates and bandwidths (1x1 convs as ``pwconv``), the memory
  bandwidth (tensor copies), the working set beyond which bytes move at
  the DRAM bandwidth (that of a copy larger than the caches, measured
  below) and the per-operator overhead; and the weight pass of a row share
  (``weight_bytes_per_s``): quarter and half row shares of 3x3 convs timed
  against their whole layers (:func:`.kinds.row_shares`);
* two reference kernels, a conv and a copy beyond the caches, before and
  after the calibration (``reference_s``): how fast the machine ran while
  it was profiled, which ``iopopt opfit`` compares its own run with;
* standalone (reported, not fitted): linear layers at batch 1, 8 and 32
  (batch 1 is memory-bound), grouped convs, a copy larger than the caches
  (the DRAM bandwidth), the row shares and the overhead of tiny operators;
* a conv set solo and in 2 and ``K`` processes at once (``--ranks K``), so
  the per-rank throughput when ranks share the cores is known;
* gloo latency and bandwidth on loopback: ping-pong fitted as ``alpha +
  bytes / bandwidth``, and a ring exchange with compute between messages
  (the executor's regime) for the per-message latency.

Writes ``profile.json`` (every measurement), ``cluster.yaml`` (``--devices``
identical devices, default one: this machine) and ``network.yaml`` into
``--out`` (default ``outputs/profile/<stamp>/``, then ``outputs/profile/latest``
points at it), with the machine, the load and the date in their headers.
``iopopt cluster=profiled network=profiled ...`` uses the newest profile;
``cluster.profile=DIR`` an older one. Takes one to two minutes.

Entry points: ``iopopt profile [--out DIR] [--devices N] [--ranks K] [--repeats N] [--rounds R] [--clock cpu|wall]``
and ``python -m iopopt.studies.profile`` (library: :func:`run_profile`).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

import torch

from ...exec.distributed.launcher import launch
from .._progress import Progress
from ..opfit.measure import ROUNDS, drift, large_copy, reference_times
from ..opfit.report import DRIFT_WARN
from .bench import CONV_SET, EXCHANGE_ROUNDS, PING_SIZES, _rank_bench, aggregate, bench_convs, fit_network, op_overhead
from .calibration import CALIBRATION_NETS
from .fit import fit_roofline
from .kinds import STANDALONE_STAGES, measure_samples, standalone
from .presets import (
    PROFILE_ROOT,
    cluster_yaml,
    device_figures,
    load_presets,
    mark_latest,
    network_yaml,
    preset_flops,
    preset_latency,
    resolve_profile,
    summary_line,
    write_presets,
)

__all__ = [
    "CONV_SET",
    "run_profile",
    "stages",
    "bench_convs",
    "op_overhead",
    "fit_network",
    "fit_roofline",
    "preset_flops",
    "device_figures",
    "cluster_yaml",
    "network_yaml",
    "write_presets",
    "summary_line",
    "preset_latency",
    "load_presets",
    "resolve_profile",
    "main",
]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover - not Linux
        pass
    return platform.processor() or platform.machine()


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # pragma: no cover
        return None


def _aggregate_kinds(samples, kinds, key="flops") -> float:
    rows = [s for s in samples if s["kind"] in kinds]
    return sum(s[key] for s in rows) / sum(s["time_s"] for s in rows) if rows else float("nan")


def stages(network: bool = True) -> int:
    """The progress steps of :func:`run_profile`: each calibration network, the standalone figures, the conv
    set, and the network measurement when asked."""
    return len(CALIBRATION_NETS) + STANDALONE_STAGES + 1 + int(network)


def run_profile(
    ranks: int = 2,
    repeats: int = 15,
    ping_reps: int = 30,
    threads: int = 1,
    conv_seconds: float = 1.0,
    exchange_iters: int = 200,
    devices: int = 1,
    clock: str = "cpu",
    network: bool = True,
    rounds: int = ROUNDS,
    step: Callable[[str], None] | None = None,
    between_rounds: Callable[[int], None] | None = None,
) -> dict:
    """Every measurement as a dict (see the module docstring); ``step(label)`` is called after each stage,
    ``between_rounds(r)`` after each round of the calibration networks."""
    torch.set_num_threads(threads)
    step = step or (lambda label: None)
    t0 = time.perf_counter()
    load_before = _load()
    reference_before = reference_times(clock=clock)
    copies = []  # the DRAM copy once per calibration round too: the fastest of them is the least disturbed

    def after_round(r: int) -> None:
        copies.append(large_copy(7, clock))
        if between_rounds is not None:
            between_rounds(r)

    samples = measure_samples(repeats=repeats, clock=clock, rounds=rounds,
                              step=lambda net: step(f"calibration net {net}"), between_rounds=after_round)
    extra = standalone(clock=clock, step=step)
    copies.append(extra["copy"])
    extra["copy_rounds"] = copies
    extra["copy"] = max(copies, key=lambda c: c["bytes_per_s"])
    reference_after = reference_times(clock=clock)
    fit = fit_roofline(samples, dram_bytes_per_s=extra["copy"]["bytes_per_s"])
    convs = bench_convs(5)
    step("conv set")
    prof: dict = {
        "machine": {
            "hostname": platform.node(),
            "cpu_model": _cpu_model(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "threads_per_rank": threads,
            "platform": sys.platform,
        },
        "clock": clock,
        "repeats": repeats,
        "rounds": rounds,
        "ranks": ranks,
        "devices": devices,
        "device": {k: fit[k] for k in ("flops_per_s", "kind_flops_per_s", "memory_bandwidth_bytes_per_s",
                                       "kind_bytes_per_s", "op_overhead_s", "cache_bytes", "dram_bytes_per_s",
                                       "spill_weight_bytes")}
        | {"weight_bytes_per_s": extra["row_shares"]["weight_bytes_per_s"]},
        "fit": fit["kinds"],
        "samples": samples,
        "standalone": extra,
        "convs": convs,
        "conv_flops_per_s": aggregate(convs),
        # figures of the first release, kept for the fidelity study's diagnostics
        "linear_flops_per_s": _aggregate_kinds(samples, ("linear",)),
        "pool_flops_per_s": _aggregate_kinds(samples, ("maxpool", "avgpool")),
        "mem_bytes_per_s": _aggregate_kinds(samples, ("act", "bn", "add", "adaptive_avgpool", "cat"), "bytes"),
        "op_overhead_s": fit["op_overhead_s"],
        # how fast the machine ran around the calibration: `iopopt opfit` compares its own run with it
        "reference_s": {k: (reference_before[k] + reference_after[k]) / 2 for k in reference_before},
        "reference_drift": drift(reference_after, reference_before),
    }
    if network:
        world = max(ranks, 2)
        per_rank = launch(_rank_bench, world, (PING_SIZES, ping_reps, conv_seconds, exchange_iters), threads=threads,
                          timeout_s=120, run_timeout_s=600)
        step("gloo ping-pong and exchanges")
        pingpong = per_rank[0]["pingpong"]
        alpha, bandwidth, fit_rows = fit_network(pingpong)

        def per_n(key):
            ns = sorted({n for r in per_rank for n in r[key]})
            return {n: statistics.mean(r[key][n] for r in per_rank if n in r[key]) for n in ns}

        loaded = {str(n): v for n, v in per_n("exchange_loaded").items()}
        prof.update({
            "concurrent_world": world,
            "concurrent_flops_per_s": {str(n): v for n, v in per_n("throughput").items()},
            "exchange_loaded_s": loaded,
            "exchange_idle_s": {str(n): v for n, v in per_n("exchange_idle").items()},
            "exchange_rounds": EXCHANGE_ROUNDS,
            **{f"{key}_rounds_s": {str(n): [r[f"{key}_rounds"][n] for r in per_rank if n in r[f"{key}_rounds"]]
                                   for n in per_n(key)} for key in ("exchange_loaded", "exchange_idle")},
            "pingpong": {str(k): v for k, v in pingpong.items()},
            "network_fit": fit_rows,
            "pingpong_latency_s": alpha,
            "latency_s": preset_latency({"exchange_loaded_s": loaded, "pingpong_latency_s": alpha}, ranks),
            "bandwidth_bytes_per_s": bandwidth,
        })
    prof["load_before"], prof["load_after"] = load_before, _load()
    prof["seconds"] = time.perf_counter() - t0
    return prof


def _print_fit(prof: dict) -> None:
    dev = prof["device"]
    print(f"#   conv peak {dev['flops_per_s'] / 1e9:.1f} GFLOP/s, memory bandwidth "
          f"{dev['memory_bandwidth_bytes_per_s'] / 1e9:.1f} GB/s, overhead {dev['op_overhead_s'] * 1e6:.1f} us")
    if dev.get("cache_bytes"):
        print(f"#   beyond {dev['cache_bytes'] / 1e6:.0f} MB: at most {dev['dram_bytes_per_s'] / 1e9:.1f} GB/s")
    if dev.get("spill_weight_bytes"):
        print(f"#   an input written by an operator with more than {dev['spill_weight_bytes'] / 1e3:.0f} KB of "
              "weights: read at that bandwidth too")
    if dev.get("weight_bytes_per_s"):
        ratios = ", ".join(f"{r['ratio']:.2f}" for r in prof["standalone"]["row_shares"]["shares"])
        print(f"#   weight pass of a row share: {dev['weight_bytes_per_s'] / 1e9:.2f} GB/s (row shares against "
              f"their fraction of the layer: {ratios})")
    for kind, f in prof["fit"].items():
        what = []
        if f["rate_binds"]:
            what.append(f"rate {f['rate'] / 1e9:.3g} GFLOP/s")
        if f["bandwidth_binds"]:
            what.append(f"bandwidth {f['bandwidth'] / 1e9:.3g} GB/s")
        print(f"#   {kind:<18} {f['n']:>3} ops: {', '.join(what)}")
    for r in prof["standalone"]["linear"]:
        print(f"#   {r['op']:<34} {r['time_s'] * 1e3:8.3f} ms  {r['flops_per_s'] / 1e9:6.1f} GFLOP/s")
    c = prof["standalone"]["copy"]
    print(f"#   copy of {c['bytes'] / 2e6:.0f} MB (beyond the caches): {c['bytes_per_s'] / 1e9:.1f} GB/s")
    ref, moved = prof.get("reference_s") or {}, prof.get("reference_drift") or {}
    if ref:
        print("#   reference kernels (iopopt opfit compares with them): "
              + ", ".join(f"{k} {v * 1e3:.3f} ms ({moved.get(k, 0.0):+.0%} from start to end)" for k, v in ref.items()))
    if any(abs(v) > DRIFT_WARN for v in moved.values()):
        print(f"# WARNING: the machine's speed moved by more than {DRIFT_WARN:.0%} during the profile: its figures "
              "mix two speeds; re-run it on a quieter machine", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="iopopt profile", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None, help=f"output directory (default {PROFILE_ROOT}/<stamp>)")
    ap.add_argument("--devices", type=int, default=1,
                    help="devices in the cluster preset (default 1: this machine; more: ranks sharing its cores)")
    ap.add_argument("--ranks", type=int, default=2, help="ranks of the network measurement (and concurrent ranks)")
    ap.add_argument("--repeats", type=int, default=15, help="timed passes per calibration network and round (median)")
    ap.add_argument("--rounds", type=int, default=ROUNDS,
                    help=f"rounds over the calibration networks (the least of per-round medians; default {ROUNDS})")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                    help="operator times: this thread's CPU time (default; robust on a shared machine) or wall time")
    ap.add_argument("--no-network", action="store_true", help="skip the gloo measurements (no network.yaml)")
    a = ap.parse_args(argv)
    for flag, value in (("--devices", a.devices), ("--ranks", a.ranks), ("--repeats", a.repeats),
                        ("--rounds", a.rounds), ("--threads", a.threads)):
        if value < 1:
            ap.error(f"{flag} must be >= 1, got {value}")
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out = Path(a.out) if a.out else PROFILE_ROOT / stamp
    with Progress(stages(not a.no_network), "iopopt profile", "stage") as bar:
        prof = run_profile(ranks=max(a.ranks, a.devices), repeats=a.repeats, threads=a.threads, devices=a.devices,
                           clock=a.clock, network=not a.no_network, rounds=a.rounds, step=bar.step)
    prof["stamp"] = stamp
    prof["command"] = "iopopt profile " + " ".join(argv if argv is not None else sys.argv[2:])
    c, n = write_presets(prof, out)
    link = mark_latest(out)
    print(f"# {summary_line(prof)} ({prof['seconds']:.1f} s; load {prof['load_before']} -> {prof['load_after']})")
    _print_fit(prof)
    print(f"# --- {c}")
    print(c.read_text())
    if n is not None:
        print(f"# --- {n}")
        print(n.read_text())
    where = f" ({link} points here)" if link else ""
    print(f"# use it: iopopt cluster=profiled network=profiled ...{where}; an older profile: cluster.profile={out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
