"""PNG plots of a sweep (matplotlib, Agg backend), written by :func:`iopopt.report.build_report`.

- ``timelines/timeline_<job>.png``: per-plan timeline, one row per device,
  communication and compute segments of every step (from the record's
  ``per_op``); greedy_iop's and coedge's plans first, then the others;
- ``latency_vs_bandwidth.png``: latency per solver against the network
  bandwidth (Mbit/s), one panel per model and cluster (or latency / lower
  bound, geometric mean over models, when there are many models); marker
  shape = network kind, lines only through kinds with several bandwidths,
  hollow markers offset sideways per solver so equal values stay visible;
- ``greedy_gap_hist.png``: distribution of greedy_iop's relative gap (%) to the
  reference (and to ``ilp_pairs``, its own decision space, when present);
- ``peak_memory.png``: per-device peak memory per solver, one panel per model
  and cluster, on the sweep's most frequent network (the title names it);
- ``solver_time.png``: solver time against graph size (when sizes vary).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from .constants import BASELINE, GREEDY, OPTIMAL_RTOL, PAIRS, REFERENCE
from .stats import _solver_key

__all__ = ["write_plots", "plot_timeline"]

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
    first = {GREEDY: 0, BASELINE: 0}
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


def _plain_log_axis(axis, values=None) -> None:
    """Log axis with plain-number tick labels (10, 50, 100 rather than 10^1, 5x10^1)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator

    fmt = FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 10 else f"{v:g}")
    if values is not None:  # ticks exactly at the values plotted (e.g. the bandwidths of the sweep)
        axis.set_major_locator(FixedLocator(values))
        axis.set_minor_locator(NullLocator())
    else:
        lo, hi = axis.get_view_interval()

        def shown(subs) -> int:
            if not lo > 0:
                return 99
            decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
            return sum(lo <= s * 10**d <= hi for d in decades for s in subs)

        subs = (1.0, 2.0, 5.0)
        if shown(subs) < 3:  # a narrow range: more labelled ticks
            subs = (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)
        axis.set_major_locator(LogLocator(base=10, subs=subs))
        axis.set_minor_locator(LogLocator(base=10, subs=tuple(range(1, 10))))
        axis.set_minor_formatter(NullFormatter())
    axis.set_major_formatter(fmt)


def _net_label(kind: str) -> str:
    k = str(kind)
    if "Shared" in k:
        return "shared medium (Wi-Fi)"
    if "Switched" in k:
        return "switched (Ethernet)"
    return k or "network"


_NET_MARKERS = ("o", "s", "^", "D", "v")


def _latency_vs_bandwidth(df: pd.DataFrame, root: Path) -> Path | None:
    ok = df[df["latency_s"].notna() & df["bandwidth_bytes_per_s"].notna() & df["termination"].ne("error")].copy()
    if ok.empty:
        return None
    plt = _plt()
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    many_models = ok["model"].nunique() > 4
    ok["y"] = ok["latency_s"] / ok["lower_bound_s"] if many_models else ok["latency_s"] * 1e3
    ok["group"] = "all models" if many_models else ok["model"]
    ok["net"] = ok["network_kind"].fillna("")
    ok["mbit"] = ok["bandwidth_bytes_per_s"] * 8 / 1e6
    keys = ["group", "cluster"] + (["split"] if ok["split"].nunique() > 1 else [])
    panels = list(ok.groupby(keys, sort=True).groups)[:_MAX_PANELS]
    solvers = sorted(ok["solver"].unique(), key=_solver_key)
    colors = {s: f"C{i % 10}" for i, s in enumerate(solvers)}
    nets = sorted(ok["net"].unique())
    markers = {n: _NET_MARKERS[i % len(_NET_MARKERS)] for i, n in enumerate(nets)}
    lines = {n: ok[ok["net"] == n]["mbit"].nunique() > 1 for n in nets}  # a line only through >= 2 bandwidths
    bandwidths = sorted(ok["mbit"].unique())
    # each solver's markers sit slightly left or right of the true bandwidth, so equal latencies stay visible
    step = 0.022 if len(solvers) > 1 else 0.0
    offset = {s: 10 ** ((i - (len(solvers) - 1) / 2) * step) for i, s in enumerate(solvers)}
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.3 * rows + 0.9), squeeze=False)
    for ax, key in zip(axes.flat, panels):
        sel = ok[(ok[keys] == pd.Series(key, index=keys)).all(axis=1)]
        for (solver, net), g in sel.groupby(["solver", "net"], sort=False):
            if many_models:
                pts = g.groupby("mbit")["y"].apply(lambda v: math.exp(v.map(math.log).mean()))
            else:
                pts = g.groupby("mbit")["y"].min()
            ax.plot(pts.index * offset[solver], pts.values, linestyle="-" if lines[net] else "none",
                    marker=markers[net], color=colors[solver], markersize=6, markerfacecolor="none",
                    markeredgewidth=1.4, linewidth=1.2, alpha=0.9)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log_axis(ax.xaxis, bandwidths)
        _plain_log_axis(ax.yaxis)
        ax.set_xlim(bandwidths[0] / 1.6, bandwidths[-1] * 1.6)
        ax.set_title(" — ".join(str(k) for k in key), fontsize=9)
        ax.set_xlabel("bandwidth (Mbit/s)")
        ax.set_ylabel("latency / lower bound (geo. mean)" if many_models else "latency (ms)")
        ax.grid(True, which="major", alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles = [Patch(color=colors[s], label=s) for s in solvers]
    handles += [Line2D([], [], color="0.3", marker=markers[n], markerfacecolor="none", markeredgewidth=1.4,
                       linestyle="-" if lines[n] else "none", label=_net_label(n)) for n in nets]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8), fontsize=8, frameon=False)
    fig.suptitle("Latency vs network bandwidth per solver (markers of each solver offset sideways "
                 "so that equal values stay visible)", fontsize=10)
    fig.tight_layout(rect=(0, 0.45 / (3.3 * rows + 0.9), 1, 1))
    return _save(fig, root / "latency_vs_bandwidth.png")


def _gap_hist(df: pd.DataFrame, root: Path, reference: str) -> Path | None:
    greedy = df[df["solver"].eq(GREEDY) & df["ref_optimal"] & df["gap_vs_ref"].notna()]
    pairs = df[df["solver"].eq(PAIRS) & df["termination"].eq("optimal") & df["latency_s"].notna()]
    g_lat = df[df["solver"].eq(GREEDY) & df["latency_s"].notna()].groupby("instance")["latency_s"].first()
    p_lat = pairs.groupby("instance")["latency_s"].first()
    algo = (g_lat / p_lat - 1.0).dropna()
    panels = [(f"{GREEDY} vs {reference} (proven optimal)", greedy["gap_vs_ref"])]
    if len(algo) and reference != PAIRS:
        panels.append((f"{GREEDY} vs {PAIRS} (optimum of its own decision space)", algo))
    panels = [(t, g) for t, g in panels if len(g)]
    if not panels:
        return None
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.6), squeeze=False)
    for ax, (title, gaps) in zip(axes.flat, panels):
        n_opt = int((gaps.abs() <= OPTIMAL_RTOL).sum())
        n_below = int((gaps < -OPTIMAL_RTOL).sum())
        pct = gaps * 100
        lo, hi = min(pct.min(), 0.0), max(pct.max(), 0.0)
        span = hi - lo if hi > lo else 1.0
        ax.hist(pct, bins=30, range=(lo, lo + span), color="tab:purple", alpha=0.85, edgecolor="white")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("relative gap to the reference (%)")
        ax.set_ylabel("instances")
        below = f", {n_below} below it" if n_below else ""
        ax.set_title(f"{title}\n{len(gaps)} instances: {n_opt} equal to it{below}, max gap {pct.max():.2f}%",
                     fontsize=9)
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return _save(fig, root / "greedy_gap_hist.png")


def _peak_memory(records: list[dict], root: Path) -> Path | None:
    """Per-device peak memory per solver: one panel per model and cluster, on one network of the sweep."""
    by_inst: dict[str, dict[str, dict]] = {}
    for rec in records:
        if rec.get("per_device") and rec.get("termination") != "error":
            by_inst.setdefault(rec.get("instance") or "", {}).setdefault(rec.get("solver"), rec)
    multi = [recs for recs in by_inst.values() if len(recs) >= 2]
    if not multi:
        return None
    first = [next(iter(recs.values())) for recs in multi]
    networks = list(dict.fromkeys(str(r.get("network")) for r in first))
    # the network with the most instances (the first of them on a tie) is shown
    network = max(networks, key=lambda n: sum(str(r.get("network")) == n for r in first))
    splits = {r.get("split") for r in first}
    chosen = [(r, recs) for r, recs in zip(first, multi) if str(r.get("network")) == network]
    chosen.sort(key=lambda t: (str(t[0].get("model")), t[0].get("k") or 0, str(t[0].get("cluster")),
                               str(t[0].get("split"))))
    n_all = len(chosen)
    chosen = chosen[:_MAX_PANELS]
    plt = _plt()
    from matplotlib.patches import Patch

    models = list(dict.fromkeys(str(r.get("model")) for r, _ in chosen))
    per_model = max(sum(str(r.get("model")) == m for r, _ in chosen) for m in models)
    by_model = 2 <= per_model <= 4 and len(models) * per_model <= _MAX_PANELS
    cols = per_model if by_model else min(3, len(chosen))
    if by_model:  # one row per model, its clusters side by side
        slots = []
        for m in models:
            mine = [c for c in chosen if str(c[0].get("model")) == m]
            slots += mine + [None] * (cols - len(mine))
    else:
        slots = list(chosen)
    rows = math.ceil(len(slots) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.1 * rows + 1.0), squeeze=False)
    solvers_all = sorted({s for _, recs in chosen for s in recs}, key=_solver_key)
    colors = {s: f"C{i % 10}" for i, s in enumerate(solvers_all)}
    for ax, slot in zip(axes.flat, slots):
        if slot is None:
            ax.axis("off")
            continue
        first_rec, recs = slot
        solvers = sorted(recs, key=_solver_key)
        devices = [d["name"] for d in recs[solvers[0]]["per_device"]]
        width = 0.8 / len(solvers)
        for i, s in enumerate(solvers):
            peaks = [d["peak_bytes"] / 1e6 for d in recs[s]["per_device"]]
            ax.bar([j + i * width - 0.4 + width / 2 for j in range(len(peaks))], peaks, width, color=colors[s])
        ax.set_xticks(range(len(devices)), devices, fontsize=8, rotation=0 if len(devices) <= 4 else 30)
        ax.set_ylabel("peak memory (MB)", fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
        split = f", {first_rec.get('split')} split" if len(splits) > 1 else ""
        ax.set_title(f"{first_rec.get('model')} on {first_rec.get('cluster')}{split}", fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(slots):]:
        ax.axis("off")
    fig.legend(handles=[Patch(color=colors[s], label=s) for s in solvers_all], loc="lower center",
               ncol=min(len(solvers_all), 8), fontsize=8, frameon=False)
    others = [n for n in networks if n != network]
    shown = f"network {network}" + (f" (not shown: {', '.join(others)})" if others else "")
    more = f"; first {len(chosen)} of {n_all} model/cluster combinations" if n_all > len(chosen) else ""
    fig.suptitle(f"Per-device peak memory (weights + activation peak) per solver — {shown}{more}", fontsize=10)
    fig.tight_layout(rect=(0, 0.45 / (3.1 * rows + 1.0), 1, 1))
    return _save(fig, root / "peak_memory.png")


def _solver_time(df: pd.DataFrame, root: Path) -> Path | None:
    ok = df[df["solver_time_s"].notna() & df["n_nodes"].notna() & df["termination"].ne("error")]
    if ok["n_nodes"].nunique() < 2:
        return None
    plt = _plt()
    ks = sorted(ok["k"].dropna().unique())
    fig, axes = plt.subplots(1, len(ks), figsize=(4.6 * len(ks), 3.6), squeeze=False, sharey=True)
    for ax, k in zip(axes.flat, ks):
        sel = ok[ok["k"] == k]
        for solver in sorted(sel["solver"].unique(), key=_solver_key):
            g = sel[sel["solver"] == solver].groupby("n_nodes")["solver_time_s"].median()
            ax.plot(g.index, g.values.clip(min=1e-6), "-o", markersize=3, label=solver)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set_xlabel("graph nodes")
        ax.set_title(f"{int(k)} devices", fontsize=9)
        ax.grid(True, alpha=0.3)
    axes.flat[0].set_ylabel("solver time (s, median)")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, root / "solver_time.png")


def write_plots(df: pd.DataFrame, records: list[dict], root: Path, max_timelines: int = 24,
                reference: str = REFERENCE) -> list[Path]:
    """Write every plot that the data supports; returns their paths."""
    out = [
        _latency_vs_bandwidth(df, root),
        _gap_hist(df, root, reference),
        _peak_memory(records, root),
        _solver_time(df, root),
    ]
    out += _timelines(records, root, max_timelines)
    return [p for p in out if p is not None]
