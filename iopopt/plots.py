"""PNG plots of a sweep (matplotlib, Agg backend), written by :func:`iopopt.report.build_report`.

- ``timelines/timeline_<job>.png``: per-plan timeline, one row per device,
  communication and compute segments of every step (from the record's
  ``per_op``); greedy_iop's and coedge's plans first, then the others;
- ``latency_vs_bandwidth.png``: latency per solver against the network
  bandwidth, one panel per model and cluster (or latency / lower bound,
  geometric mean over models, when there are many models);
- ``greedy_gap_hist.png``: distribution of greedy_iop's relative gap to the
  reference (and to ``ilp_pairs``, its own decision space, when present);
- ``peak_memory.png``: per-device peak memory per solver for a few instances;
- ``solver_time.png``: solver time against graph size (when sizes vary).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

__all__ = ["write_plots", "plot_timeline"]

_GREEDY = "greedy_iop"
_PAIRS = "ilp_pairs"
_MAX_PANELS = 12


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_")[:120]


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return path


def plot_timeline(record: dict, path: Path) -> Path | None:
    """The per-device timeline of one plan; None when the record has no ``per_op``."""
    per_op = record.get("per_op")
    devices = [d["name"] for d in record.get("per_device") or []]
    if not per_op or not devices:
        return None
    plt = _plt()
    k = len(devices)
    fig, ax = plt.subplots(figsize=(11, 0.6 * k + 1.6))
    comm = [[] for _ in range(k)]
    comp = [[] for _ in range(k)]
    t = 0.0
    for op in per_op:
        c = op["comm_s"] or 0.0
        if c > 0:
            for d in op.get("comm_devices") or range(k):
                comm[d].append((t * 1e3, c * 1e3))
        for d, s in enumerate(op.get("device_compute_s") or []):
            if s > 0:
                comp[d].append(((t + c) * 1e3, s * 1e3))
        t += c + (op["compute_s"] or 0.0)
    for d in range(k):
        y = k - 1 - d
        ax.broken_barh(comm[d], (y - 0.35, 0.7), facecolors="tab:orange", edgecolor="none")
        ax.broken_barh(comp[d], (y - 0.35, 0.7), facecolors="tab:blue", edgecolor="none")
    ax.set_yticks(range(k), list(reversed(devices)))
    ax.set_xlabel("time (ms)")
    ax.set_xlim(0, max(t * 1e3, 1e-9))
    lat = record.get("latency_s")
    ax.set_title(
        f"{record.get('model')} on {record.get('cluster')} / {record.get('network')} — {record.get('solver')}"
        + (f": {lat * 1e3:.2f} ms" if lat else ""),
        fontsize=10,
    )
    handles = [plt.Rectangle((0, 0), 1, 1, color="tab:blue"), plt.Rectangle((0, 0), 1, 1, color="tab:orange")]
    shared = "Shared" in str(record.get("network_kind") or "")
    comm_label = "communication" + (" (shared medium: transfers serialise)" if shared else "")
    ax.legend(handles, ["compute", comm_label], loc="upper right", fontsize=8)
    return _save(fig, path)


def _timelines(records: list[dict], root: Path, limit: int) -> list[Path]:
    """Timelines of the greedy's and CoEdge's plans first (side by side per instance), then the others."""
    first = {_GREEDY: 0, "coedge": 0}
    ordered = sorted(range(len(records)), key=lambda i: (first.get(records[i].get("solver"), 1), i))
    out = []
    for rec in (records[i] for i in ordered):
        if len(out) >= limit:
            break
        if not rec.get("per_op") or rec.get("termination") == "error":
            continue
        name = _slug(f"{rec.get('model')}_{rec.get('cluster')}_{rec.get('network')}_{rec.get('solver')}")
        src = _slug(str(rec.get("source", "")).replace("/result.json", ""))
        p = plot_timeline(rec, root / "timelines" / f"timeline_{src}_{name}.png")
        if p is not None:
            out.append(p)
    return out


def _latency_vs_bandwidth(df: pd.DataFrame, root: Path) -> Path | None:
    ok = df[df["latency_s"].notna() & df["bandwidth_bytes_per_s"].notna() & df["termination"].ne("error")].copy()
    if ok.empty:
        return None
    plt = _plt()
    many_models = ok["model"].nunique() > 4
    ok["y"] = ok["latency_s"] / ok["lower_bound_s"] if many_models else ok["latency_s"] * 1e3
    ok["group"] = "all models" if many_models else ok["model"]
    ok["net"] = ok["network_kind"].fillna("")
    panels = list(ok.groupby(["group", "cluster"], sort=True).groups)[:_MAX_PANELS]
    from .report import _solver_key

    solvers = sorted(ok["solver"].unique(), key=_solver_key)
    colors = {s: f"C{i % 10}" for i, s in enumerate(solvers)}
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), squeeze=False)
    for ax, (group, cluster) in zip(axes.flat, panels):
        sel = ok[(ok["group"] == group) & (ok["cluster"] == cluster)]
        for (solver, net), g in sel.groupby(["solver", "net"], sort=False):
            if many_models:
                pts = g.groupby("bandwidth_bytes_per_s")["y"].apply(lambda v: math.exp(v.map(math.log).mean()))
            else:
                pts = g.groupby("bandwidth_bytes_per_s")["y"].min()
            shared = "Shared" in net
            ax.plot(pts.index * 8 / 1e6, pts.values, "-o" if shared else "--s", color=colors[solver], markersize=4,
                    label=solver if shared or not (sel["net"].str.contains("Shared")).any() else None)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{group} — {cluster}", fontsize=9)
        ax.set_xlabel("bandwidth (Mbit/s)")
        ax.set_ylabel("latency / lower bound (geo. mean)" if many_models else "latency (ms)")
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Latency vs network bandwidth per solver (solid: shared medium, dashed: switched)", fontsize=10)
    fig.tight_layout()
    return _save(fig, root / "latency_vs_bandwidth.png")


def _gap_hist(df: pd.DataFrame, root: Path, reference: str) -> Path | None:
    greedy = df[df["solver"].eq(_GREEDY) & df["ref_optimal"] & df["gap_vs_ref"].notna()]
    pairs = df[df["solver"].eq(_PAIRS) & df["termination"].eq("optimal") & df["latency_s"].notna()]
    g_lat = df[df["solver"].eq(_GREEDY) & df["latency_s"].notna()].groupby("instance")["latency_s"].first()
    p_lat = pairs.groupby("instance")["latency_s"].first()
    algo = (g_lat / p_lat - 1.0).dropna()
    panels = [(f"{_GREEDY} vs {reference} (proven optimal)", greedy["gap_vs_ref"].clip(lower=0) * 100)]
    if len(algo):
        panels.append((f"{_GREEDY} vs {_PAIRS} (same decision space)", algo.clip(lower=0) * 100))
    if not len(panels[0][1]):
        panels = panels[1:]
    if not panels:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.6), squeeze=False)
    for ax, (title, gaps) in zip(axes.flat, panels):
        opt = float((gaps <= 1e-7).mean()) * 100
        ax.hist(gaps, bins=30, color="tab:purple", alpha=0.85)
        ax.set_yscale("log")
        ax.set_xlabel("relative gap (%)")
        ax.set_ylabel("instances")
        ax.set_title(f"{title}\n{len(gaps)} instances, {opt:.1f}% optimal, max {gaps.max():.2f}%", fontsize=9)
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return _save(fig, root / "greedy_gap_hist.png")


def _peak_memory(records: list[dict], root: Path) -> Path | None:
    by_inst: dict[str, dict[str, dict]] = {}
    for rec in records:
        if rec.get("per_device") and rec.get("termination") != "error":
            by_inst.setdefault(rec.get("instance") or "", {}).setdefault(rec.get("solver"), rec)
    multi = [(inst, recs) for inst, recs in by_inst.items() if len(recs) >= 2]
    # round-robin over models, so that a sweep over several models shows each of them
    rank: dict[str, int] = {}
    keyed = []
    for i, (inst, recs) in enumerate(multi):
        model = next(iter(recs.values())).get("model")
        keyed.append((rank.get(model, 0), i, inst, recs))
        rank[model] = rank.get(model, 0) + 1
    chosen = [(inst, recs) for _, _, inst, recs in sorted(keyed, key=lambda t: t[:2])][:6]
    if not chosen:
        return None
    plt = _plt()
    from .report import _solver_key

    cols = min(3, len(chosen))
    rows = math.ceil(len(chosen) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.6 * rows), squeeze=False)
    for ax, (inst, recs) in zip(axes.flat, chosen):
        solvers = sorted(recs, key=_solver_key)
        devices = [d["name"] for d in recs[solvers[0]]["per_device"]]
        width = 0.8 / len(solvers)
        for i, s in enumerate(solvers):
            peaks = [d["peak_bytes"] / 1e6 for d in recs[s]["per_device"]]
            ax.bar([j + i * width - 0.4 + width / 2 for j in range(len(peaks))], peaks, width, label=s)
        ax.set_xticks(range(len(devices)), devices, fontsize=7, rotation=30)
        ax.set_ylabel("peak memory (MB)")
        first = recs[solvers[0]]
        ax.set_title(f"{first.get('model')} — {first.get('cluster')} / {first.get('network')}", fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(chosen):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Per-device peak memory (weights + activation peak) per solver", fontsize=10)
    fig.tight_layout()
    return _save(fig, root / "peak_memory.png")


def _solver_time(df: pd.DataFrame, root: Path) -> Path | None:
    ok = df[df["solver_time_s"].notna() & df["n_nodes"].notna() & df["termination"].ne("error")]
    if ok["n_nodes"].nunique() < 2:
        return None
    plt = _plt()
    ks = sorted(ok["k"].dropna().unique())
    fig, axes = plt.subplots(1, len(ks), figsize=(4.6 * len(ks), 3.6), squeeze=False, sharey=True)
    from .report import _solver_key

    for ax, k in zip(axes.flat, ks):
        sel = ok[ok["k"] == k]
        for solver in sorted(sel["solver"].unique(), key=_solver_key):
            g = sel[sel["solver"] == solver].groupby("n_nodes")["solver_time_s"].median()
            ax.plot(g.index, g.values.clip(min=1e-6), "-o", markersize=3, label=solver)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(_plt().NullFormatter())
        ax.set_xlabel("graph nodes")
        ax.set_title(f"{int(k)} devices", fontsize=9)
        ax.grid(True, alpha=0.3)
    axes.flat[0].set_ylabel("solver time (s, median)")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, root / "solver_time.png")


def write_plots(df: pd.DataFrame, records: list[dict], root: Path, max_timelines: int = 24,
                reference: str = "ilp") -> list[Path]:
    """Write every plot that the data supports; returns their paths."""
    out = [
        _latency_vs_bandwidth(df, root),
        _gap_hist(df, root, reference),
        _peak_memory(records, root),
        _solver_time(df, root),
    ]
    out += _timelines(records, root, max_timelines)
    return [p for p in out if p is not None]
