"""Cluster and network presets from a profile: the figures, the YAML files, finding and reading them back.

A profile directory (``outputs/profile/<stamp>/`` by default) holds
``profile.json`` (every measurement), ``cluster.yaml`` and ``network.yaml``:
configs of the app's ``cluster`` and ``network`` groups, usable at once with
``cluster=profiled network=profiled`` (the newest profile, through the
``outputs/profile/latest`` link) or ``cluster.profile=DIR`` for an older one.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ...model.cluster import DEVICE_KEYS as CONFIG_DEVICE_KEYS
from ...model.cluster import OPTIONAL_FIGURES, POWER_FIELDS, Cluster, Device
from ...model.network import SwitchedNetwork
from ...results.io import write_text_atomic

__all__ = [
    "PROFILE_ROOT",
    "DEVICE_KEYS",
    "LATEST",
    "preset_flops",
    "preset_latency",
    "device_figures",
    "cluster_yaml",
    "network_yaml",
    "summary_line",
    "write_presets",
    "load_presets",
    "resolve_profile",
    "list_profiles",
    "mark_latest",
]

#: The keys of a device in a profile's ``cluster.yaml`` (a config's but the power figures, which a profile does not
#: measure): :func:`load_presets` refuses any other.
DEVICE_KEYS = tuple(key for key in CONFIG_DEVICE_KEYS if key not in POWER_FIELDS)
#: Where ``iopopt profile`` writes (relative to the current directory) and where ``latest`` is looked up.
PROFILE_ROOT = Path("outputs") / "profile"
#: The name of the link to the newest profile under :data:`PROFILE_ROOT`, and the value that selects it.
LATEST = "latest"


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
    """Per-device conv throughput for a ``k``-rank preset: the wall-clock conv throughput per rank measured with
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


def _devices(prof: dict) -> int:
    return int(prof.get("devices", prof["ranks"]))


def device_figures(prof: dict, k: int = 1) -> dict[str, Any]:
    """The roofline of one of ``k`` devices of this machine (ranks computing at once), as config keys.

    One device: the figures measured solo. ``k`` > 1: every rate and the
    bandwidth scaled, and the overhead divided, by the per-rank conv throughput
    measured with ``k`` ranks at once over the solo one (time slicing slows
    every kind alike). A profile without a roofline (written before
    per-kind rates were measured) gives ``flops_per_s`` and the overhead only.
    """
    scale = preset_flops(prof, k) / preset_flops(prof, 1)
    dev = prof.get("device")
    if not dev:
        return {"flops_per_s": preset_flops(prof, k), "op_overhead_s": prof["op_overhead_s"]}
    out: dict[str, Any] = {"flops_per_s": dev["flops_per_s"] * scale}
    for key in ("kind_flops_per_s", "kind_bytes_per_s"):
        scaled = {kind: r * scale for kind, r in (dev.get(key) or {}).items()}
        if scaled:
            out[key] = scaled
    if dev.get("memory_bandwidth_bytes_per_s"):
        out["memory_bandwidth_bytes_per_s"] = dev["memory_bandwidth_bytes_per_s"] * scale
    if dev.get("cache_bytes") and dev.get("dram_bytes_per_s"):  # the caches do not shrink when ranks share cores
        out["cache_bytes"], out["dram_bytes_per_s"] = dev["cache_bytes"], dev["dram_bytes_per_s"] * scale
        if dev.get("spill_weight_bytes"):
            out["spill_weight_bytes"] = dev["spill_weight_bytes"]
    if dev.get("weight_bytes_per_s"):
        out["weight_bytes_per_s"] = dev["weight_bytes_per_s"] * scale
    out["op_overhead_s"] = dev["op_overhead_s"] / scale
    return out


def _machine_line(prof: dict) -> str:
    m = prof["machine"]
    cpu = m.get("cpu_model") or "CPU"
    host = f" on {m['hostname']}" if m.get("hostname") else ""
    return (f"{cpu}{host}, {m.get('cpu_count')} cores, torch {m.get('torch')}, "
            f"{m.get('threads_per_rank', 1)} thread(s) per rank, float32")


def cluster_yaml(prof: dict, name: str = "profiled_local", k: int | None = None) -> str:
    """``cluster.yaml`` of a profile: ``k`` identical devices of this machine (default: the profile's ``devices``)."""
    k = _devices(prof) if k is None else k
    fig = device_figures(prof, k)
    stamp = prof.get("stamp", "")
    lines = [
        f"# This machine as {k} device(s), MEASURED by `iopopt profile` on {stamp}",
        f"# ({_machine_line(prof)}; load average {prof.get('load_before', 'n/a')} before, "
        f"{prof.get('load_after', 'n/a')} after).",
    ]
    if prof.get("device"):
        n = len(prof.get("samples") or ())
        lines += [
            f"# Fitted to {n} operators of 4 calibration CNNs timed in context ({prof.get('clock', 'wall')} clock,",
            "# as the executors run a one-device plan), with the cost model's formula",
            "#   t = max(FLOPs / rate(kind), bytes / bandwidth(kind)) + op_overhead_s  (least absolute log error):",
            "# flops_per_s: the conv rate; kind_flops_per_s / kind_bytes_per_s: the rate and bandwidth torch",
            "#   reaches on each kind (kept where they bind); memory_bandwidth_bytes_per_s: tensor copies (concat,",
            "#   and the clones of flatten/dropout); op_overhead_s: the fitted per-operator time;",
            "#   pwconv: 1x1 convs, priced apart from the conv; cache_bytes / dram_bytes_per_s: the working set",
            "#   (fitted from a grid) beyond which bytes move at most at the bandwidth of a copy larger than the",
            "#   caches (measured); spill_weight_bytes (where given, fitted from a grid): an input written by an",
            "#   operator holding more weight bytes than this is read at the DRAM bandwidth.",
        ]
        if prof["device"].get("weight_bytes_per_s"):
            lines += ["# weight_bytes_per_s: the weight pass a row share pays beyond its fraction of the layer, from",
                      "#   row shares of 3x3 convs timed against their whole layers (`row_shares` in profile.json)."]
    else:
        lines += ["# flops_per_s: conv throughput (a profile written before per-kind rates were measured);",
                  "# op_overhead_s: median time of tiny operators through iopopt.exec.kernels.compute."]
    if k > 1:
        lines.append(f"# {k} ranks share this machine's cores: every figure scaled by the per-rank conv throughput "
                     f"measured with {k} ranks at once ({preset_flops(prof, k) / preset_flops(prof, 1):.3f}x solo).")
    lines += [
        "# memory_bytes: not measured (no limit).",
        f"name: {name}",
        "host: 0",
        "split: proportional",
        "devices:",
    ]
    for d in range(k):
        lines.append(f"  - name: r{d}")
        lines.append(f"    flops_per_s: {fig['flops_per_s']:.4e}")
        if "kind_flops_per_s" in fig:
            lines.append("    kind_flops_per_s:")
            for kind, r in sorted(fig["kind_flops_per_s"].items()):
                lines.append(f"      {kind}: {r:.4e}")
        if "memory_bandwidth_bytes_per_s" in fig:
            lines.append(f"    memory_bandwidth_bytes_per_s: {fig['memory_bandwidth_bytes_per_s']:.4e}")
        if "kind_bytes_per_s" in fig:
            lines.append("    kind_bytes_per_s:")
            for kind, r in sorted(fig["kind_bytes_per_s"].items()):
                lines.append(f"      {kind}: {r:.4e}")
        if "cache_bytes" in fig:
            lines.append(f"    cache_bytes: {fig['cache_bytes']:.4e}")
            lines.append(f"    dram_bytes_per_s: {fig['dram_bytes_per_s']:.4e}")
        if "spill_weight_bytes" in fig:
            lines.append(f"    spill_weight_bytes: {fig['spill_weight_bytes']:.4e}")
        if "weight_bytes_per_s" in fig:
            lines.append(f"    weight_bytes_per_s: {fig['weight_bytes_per_s']:.4e}")
        lines.append(f"    op_overhead_s: {fig['op_overhead_s']:.4e}")
        lines.append("    memory_bytes: null")
    return "\n".join(lines) + "\n"


def network_yaml(prof: dict, name: str = "profiled_loopback", k: int | None = None) -> str:
    k = prof["ranks"] if k is None else k
    rows = ", ".join(f"{r['bytes']}B {r['one_way_s'] * 1e6:.0f}us" for r in prof["network_fit"])
    loaded = ", ".join(f"{n} ranks {v * 1e6:.0f}us" for n, v in (prof.get("exchange_loaded_s") or {}).items())
    idle = ", ".join(f"{n} ranks {v * 1e6:.0f}us" for n, v in (prof.get("exchange_idle_s") or {}).items())
    return (
        f"# gloo over loopback, {k} ranks, MEASURED by `iopopt profile` on {prof.get('stamp', '')}\n"
        f"# ({_machine_line(prof)}).\n"
        "# Ping-pong one-way times (isend/irecv + wait) between 2 processes, fitted as alpha + bytes / bandwidth:\n"
        f"# {rows}: alpha {prof['pingpong_latency_s'] * 1e6:.1f} us, bandwidth from this fit.\n"
        "# latency_s: time of one 12 KiB ring exchange with a ~1 ms conv on every rank between two exchanges\n"
        f"# (per rank the median of {prof.get('exchange_rounds', 1)} rounds' means, averaged over the ranks)\n"
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
    dev = prof.get("device")
    parts = []
    if dev:
        rates = ", ".join(f"{k} {v / 1e9:.2g}" for k, v in sorted((dev.get("kind_flops_per_s") or {}).items()))
        bws = ", ".join(f"{k} {v / 1e9:.2g}" for k, v in sorted((dev.get("kind_bytes_per_s") or {}).items()))
        parts.append(f"roofline: conv {dev['flops_per_s'] / 1e9:.1f} GFLOP/s, per kind {rates or '-'} GFLOP/s; "
                     f"memory {(dev.get('memory_bandwidth_bytes_per_s') or 0) / 1e9:.1f} GB/s, per kind "
                     f"{bws or '-'} GB/s; overhead {dev['op_overhead_s'] * 1e6:.1f} us")
    parts.append(f"conv set {prof['conv_flops_per_s'] / 1e9:.1f} GFLOP/s solo" + (
        f", per rank at once {conc} GFLOP/s" if conc else ""))
    if "pingpong_latency_s" in prof:
        parts.append(f"gloo ping-pong {prof['pingpong_latency_s'] * 1e6:.0f} us + bytes / "
                     f"{prof['bandwidth_bytes_per_s'] / 1e9:.2f} GB/s; exchange with compute {loaded} us, "
                     f"idle {idle} us")
    return "; ".join(parts)


def write_presets(prof: dict, out: Path) -> tuple[Path, Path | None]:
    """Write ``cluster.yaml``, ``network.yaml`` (when the network was measured) and ``profile.json`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    c, n = out / "cluster.yaml", out / "network.yaml"
    # atomic: `cluster=profiled` reads the newest profile, which an interrupt must not leave half-written
    write_text_atomic(c, cluster_yaml(prof))
    if "bandwidth_bytes_per_s" in prof:
        write_text_atomic(n, network_yaml(prof))
    write_text_atomic(out / "profile.json", json.dumps(prof, indent=2))
    return c, (n if n.exists() else None)


def load_presets(out: Path, network: bool = True):
    """``(Cluster, NetworkModel)`` from a profile directory (the network None when ``network`` is false).

    Raises ``ValueError`` with one line for a device key not in :data:`DEVICE_KEYS`.
    """
    import yaml

    c = yaml.safe_load((Path(out) / "cluster.yaml").read_text())
    for i, d in enumerate(c["devices"]):
        unknown = sorted(set(d) - set(DEVICE_KEYS))
        if unknown:  # e.g. spill_bytes, which profiles of an earlier iopopt wrote with another meaning
            raise ValueError(
                f"{Path(out) / 'cluster.yaml'}: unknown key devices[{i}].{unknown[0]} (value {d[unknown[0]]!r}); "
                f"valid keys: {', '.join(DEVICE_KEYS)}; a profile written by an earlier iopopt: run `iopopt profile` "
                f"again")
    devices = tuple(
        Device(
            d["name"],
            float(d["flops_per_s"]),
            float(d.get("memory_bytes") or math.inf),
            float(d["op_overhead_s"]),
            kind_flops_per_s={k: float(v) for k, v in (d.get("kind_flops_per_s") or {}).items()},
            kind_bytes_per_s={k: float(v) for k, v in (d.get("kind_bytes_per_s") or {}).items()},
            **{key: float(d[key]) if d.get(key) else None for key in OPTIONAL_FIGURES},
        )
        for d in c["devices"]
    )
    cluster = Cluster(devices, host=c.get("host", 0), split=c.get("split", "proportional"), name=c.get("name", ""))
    if not network:
        return cluster, None
    n = yaml.safe_load((Path(out) / "network.yaml").read_text())
    net = SwitchedNetwork(float(n["bandwidth_bytes_per_s"]), float(n["latency_s"]), name=n.get("name", "switched"))
    return cluster, net


# -- finding profiles ------------------------------------------------------------------------------


def list_profiles(root: Path = PROFILE_ROOT) -> list[Path]:
    """Profile directories under ``root`` (those holding a ``cluster.yaml``), oldest first (stamps sort by time)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.name != LATEST and p.is_dir() and (p / "cluster.yaml").is_file())


def resolve_profile(value: str | os.PathLike, root: Path = PROFILE_ROOT) -> Path:
    """The profile directory ``value`` names: ``latest`` (the newest under ``root``) or a directory / one of its files.

    Raises ``FileNotFoundError`` with one line naming the value and the valid options.
    """
    root = Path(root)
    found = list_profiles(root)
    options = f"valid: {LATEST!r} or a directory written by `iopopt profile`"
    if found:
        shown = ", ".join(str(p) for p in found[-3:])
        options += f" (under {root}: {shown}{', ...' if len(found) > 3 else ''})"
    else:
        options += f" (none under {root} yet: run `iopopt profile`)"
    if str(value) == LATEST:
        link = root / LATEST
        if link.is_dir() and (link / "cluster.yaml").is_file():
            return link.resolve()
        if found:
            return found[-1]
        raise FileNotFoundError(f"{LATEST!r}: no profile under {root}; {options}")
    path = Path(value).expanduser()
    if path.is_file():
        path = path.parent
    if not path.is_dir():
        raise FileNotFoundError(f"{str(value)!r} does not exist; {options}")
    if not (path / "cluster.yaml").is_file():
        raise FileNotFoundError(f"{str(value)!r} holds no cluster.yaml, so it is no profile; {options}")
    return path


def mark_latest(out: Path, root: Path = PROFILE_ROOT) -> Path | None:
    """Point ``root/latest`` at ``out`` when ``out`` lies directly under ``root`` (atomically); the link or None."""
    out, root = Path(out).resolve(), Path(root).resolve()
    if out.parent != root:
        return None
    link = root / LATEST
    tmp = root / f".{LATEST}.{os.getpid()}"
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(out.name, target_is_directory=True)
        os.replace(tmp, link)
    except OSError:  # a file system without symbolic links: `latest` falls back to the newest stamp
        return None
    return link

