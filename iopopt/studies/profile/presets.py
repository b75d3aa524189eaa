"""Cluster and network presets from a profile: the figures, the YAML files and reading them back."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ...model.cluster import Cluster, Device
from ...model.network import SwitchedNetwork

__all__ = [
    "preset_flops",
    "preset_latency",
    "cluster_yaml",
    "network_yaml",
    "summary_line",
    "write_presets",
    "load_presets",
]


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
        f"# ({cores} cores, torch {prof['machine']['torch']}, "
        f"{prof['machine']['threads_per_rank']} thread(s) per rank, "
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

    c = yaml.safe_load((Path(out) / "cluster.yaml").read_text())
    n = yaml.safe_load((Path(out) / "network.yaml").read_text())
    devices = tuple(
        Device(d["name"], float(d["flops_per_s"]), float(d.get("memory_bytes") or math.inf), float(d["op_overhead_s"]))
        for d in c["devices"]
    )
    cluster = Cluster(devices, host=c.get("host", 0), split=c.get("split", "proportional"), name=c.get("name", ""))
    network = SwitchedNetwork(float(n["bandwidth_bytes_per_s"]), float(n["latency_s"]), name=n.get("name", "switched"))
    return cluster, network
