"""Pareto fronts and robustness sweeps as tables and plots, from the plain records of the studies.

:func:`write_pareto` writes ``pareto.csv``, ``pareto.md`` and ``pareto.png``
from the records of :func:`iopopt.studies.pareto.pareto_records`;
:func:`write_robustness` writes ``robustness.csv``, ``robustness.md`` and
``robustness.png`` from those of :func:`iopopt.studies.robustness.robustness_records`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..results.io import write_text_atomic
from .markdown import markdown_table
from .plots import _plt, save

__all__ = ["pareto_frame", "write_pareto", "robustness_frame", "write_robustness"]

_AXIS = {"energy": ("energy_j", "energy per inference (J)", 1.0), "memory": ("peak_memory_bytes",
                                                                              "peak memory, largest device (MB)", 1e-6)}
_FRONT_TITLE = {"energy": "latency – energy", "memory": "latency – peak memory"}
_MARKERS = {"single": "s", "coedge": "^", "oc": "v", "greedy_iop": "D", "best_uniform": "P", "random": "X"}


def pareto_frame(records: Sequence[dict]) -> pd.DataFrame:
    """One row per point: front points numbered by latency (``#``), then the baselines."""
    rows = []
    for name in dict.fromkeys(r["front"] for r in records):
        pts = [r for r in records if r["front"] == name]
        front = sorted((r for r in pts if r["source"] == "front"), key=lambda r: r["latency_s"])
        number = {r["label"]: str(i) for i, r in enumerate(front, 1)}
        for i, r in enumerate(front, 1):
            rows.append(_row(r, str(i)))
        for r in (r for r in pts if r["source"] == "baseline"):
            rows.append(_row(r, r["label"], number))
    return pd.DataFrame(rows)


def _row(r: dict, point: str, number: dict | None = None) -> dict:
    return {
        "front": r["front"],
        "point": point,
        "latency_ms": r["latency_s"] * 1e3,
        "energy_j": r["energy_j"],
        "peak_memory_mb": r["peak_memory_bytes"] / 1e6,
        "budget": r["label"] if r["source"] == "front" else "",
        "termination": r["termination"],
        "proven": r["proven"] if r["source"] == "front" else "",
        "pareto": r["pareto"] if r["source"] == "front" else "",
        "dominated_or_met_by": _point_of(r["dominated_by"], number or {}) if r["source"] == "baseline" else "",
        "plan": r["plan_id"],
    }


def _point_of(label: str | None, number: dict) -> str:
    """The front point (its number in the table) dominating or meeting a baseline."""
    return "not dominated" if label is None else f"point {number.get(label, label)}"


def plot_pareto(records: Sequence[dict], path: Path, title: str) -> Path:
    """Per front, two panels: every point (top), and the front zoomed (bottom), its points numbered as in the table.

    The front is drawn as a staircase: every plan above and to the right of
    it is dominated. Baselines are red, labelled by name; a baseline outside
    the zoom is named in the bottom panel's corner.
    """
    plt = _plt()
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import FuncFormatter

    fronts = list(dict.fromkeys(r["front"] for r in records))
    fig, axes = plt.subplots(2, len(fronts), figsize=(6.6 * len(fronts), 9.0), squeeze=False)
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    for col, name in enumerate(fronts):
        key, label, unit = _AXIS[name]
        pts = sorted((r for r in records if r["front"] == name and r["source"] == "front"),
                     key=lambda r: r["latency_s"])
        base = [r for r in records if r["front"] == name and r["source"] == "baseline"]
        xs = [r["latency_s"] * 1e3 for r in pts]
        ys = [r[key] * unit for r in pts]
        x0, x1, y0, y1 = _zoom(xs, ys)
        for row, ax in enumerate(axes[:, col]):
            ax.step(xs, ys, where="post", color="tab:blue", lw=1.2, alpha=0.6, zorder=2)
            whole = "the whole front" if pts and pts[0].get("complete") else "a sample of the front"
            ax.plot(xs, ys, "o", color="tab:blue", ms=5, zorder=3,
                    label=f"{whole}: {len(pts)} point{'s' * (len(pts) != 1)}, "
                          f"{sum(r['proven'] for r in pts)} proven optimal (ilp)")
            outside, shown = [], []
            for r in base:
                x, y = r["latency_s"] * 1e3, r[key] * unit
                if row == 1 and not (x0 <= x <= x1 and y0 <= y <= y1):
                    outside.append(f"{r['label']} ({x:.4g} ms, {y:.4g})")
                    continue
                ax.plot(x, y, _MARKERS.get(r["label"], "o"), color="tab:red", ms=7, mfc="none", mew=1.5, zorder=4)
                shown.append((r["label"], x, y))
            ax.set_ylabel(label)
            ax.grid(True, alpha=0.3, which="both")
            if row == 0:
                spread = [r["latency_s"] * 1e3 for r in pts + base]
                if max(spread) > 4 * min(spread):
                    ax.set_xscale("log")
                    ax.xaxis.set_major_formatter(plain)
                    ax.xaxis.set_minor_formatter(plain)
                    ax.tick_params(axis="x", which="both", labelsize=8)
                ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ls="--", lw=0.8, color="grey"))
                _label_baselines(ax, shown)
                ax.set_title(f"{_FRONT_TITLE[name]}: every point (dashed box: the zoom below)", fontsize=10)
                ax.set_xlabel("latency (ms)" + (", log scale" if ax.get_xscale() == "log" else ""))
                ax.legend(loc="best", fontsize=8)
                continue
            ax.set_xlim(x0, x1)
            ax.set_ylim(y0, y1)
            ax.ticklabel_format(axis="both", style="plain", useOffset=False)  # whole values, even 3.65973 J
            ax.set_title(f"{_FRONT_TITLE[name]}: the front (blue, numbered as in the table), baselines (red)",
                         fontsize=10)
            ax.set_xlabel("latency (ms)")
            _label_baselines(ax, shown)
            _number(ax, xs, ys)
            if outside:
                ax.text(0.98, 0.97, "baselines outside this view:\n" + "\n".join(outside), transform=ax.transAxes,
                        ha="right", va="top", fontsize=7.5, color="tab:red",
                        bbox={"facecolor": "white", "edgecolor": "0.8", "alpha": 0.9})
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return save(fig, path, dpi=110, bbox_inches="tight")


def _label_baselines(ax, shown: list[tuple[str, float, float]], min_px: float = 11.0) -> None:
    """Name each baseline beside its marker; a name that would overlap one already written moves down a line."""
    ax.autoscale_view()
    placed: list[tuple[float, float]] = []
    for name, x, y in shown:
        px, py = ax.transData.transform((x, y))
        dy = -11.0
        while any(abs(px - qx) < 60 and abs(py + dy - qy) < min_px for qx, qy in placed):
            dy -= min_px
        placed.append((px, py + dy))
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(6, dy), fontsize=8, color="tab:red")


def _zoom(xs: list[float], ys: list[float]) -> tuple[float, float, float, float]:
    """Limits around the front's points, with a margin (a single point gets a few per cent around it)."""
    def span(v):
        lo, hi = min(v), max(v)
        pad = (hi - lo) * 0.12 or abs(hi) * 0.03 or 1.0
        return lo - pad, hi + pad
    return (*span(xs), *span(ys))


def _number(ax, xs: list[float], ys: list[float], min_px: float = 14.0) -> None:
    """Number the points 1..n, leaving out a number that would overlap the last one written."""
    last = None
    for i, (x, y) in enumerate(zip(xs, ys), 1):
        px = ax.transData.transform((x, y))
        if last is not None and abs(px[0] - last[0]) < min_px and abs(px[1] - last[1]) < min_px and i != len(xs):
            continue
        ax.annotate(str(i), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, color="tab:blue")
        last = px


def write_pareto(records: Sequence[dict], out: str | Path, title: str, plots: bool = True) -> list[Path]:
    """``pareto.csv``, ``pareto.md`` and (with ``plots``) ``pareto.png`` of one problem's fronts, in ``out``."""
    out = Path(out)
    df = pareto_frame(records)
    written = [write_text_atomic(out / "pareto.csv", df.to_csv(index=False))]
    png = plot_pareto(records, out / "pareto.png", title) if plots and records else None
    lines = [f"# Pareto fronts: {title}", ""]
    for name in dict.fromkeys(r["front"] for r in records):
        pts = [r for r in records if r["front"] == name and r["source"] == "front"]
        base = [r for r in records if r["front"] == name and r["source"] == "baseline"]
        proven = sum(r["proven"] for r in pts)
        whole = "the whole front (the walk ended by itself)" if pts and pts[0]["complete"] else "a sample of the front"
        covered = sum(r["dominated_by"] is not None for r in base)
        lines += [f"## {_FRONT_TITLE[name]}", "",
                  f"{len(pts)} points, {proven} proven optimal, {whole}; {covered} of {len(base)} baselines "
                  "dominated by or on the front.", "",
                  markdown_table(df[df["front"] == name].drop(columns="front")), ""]
    if png is not None:
        lines += [f"![Pareto fronts]({png.name})", ""]
    written.insert(0, write_text_atomic(out / "pareto.md", "\n".join(lines)))
    if png is not None:
        written.append(png)
    return written


# -- robustness -------------------------------------------------------------------------------


def robustness_frame(records: Sequence[dict]) -> pd.DataFrame:
    """One row per solver and bandwidth factor: latency of the nominal plan, re-optimised, regret."""
    cols = ["solver", "factor", "bandwidth_mbit_s", "latency_ms", "reoptimised_ms", "optimum_ms", "regret",
            "gap_to_optimum", "measured_ms", "energy_j", "plan"]
    rows = []
    for r in records:
        rows.append({
            "solver": r["solver"], "factor": r["factor"], "bandwidth_mbit_s": r["bandwidth_bytes_per_s"] * 8e-6,
            "latency_ms": r["latency_s"] * 1e3, "reoptimised_ms": r["reoptimised_s"] * 1e3,
            "optimum_ms": r["optimum_s"] * 1e3, "regret": r["regret"], "gap_to_optimum": r["gap_to_optimum"],
            "measured_ms": None if r["measured_s"] is None else r["measured_s"] * 1e3, "energy_j": r["energy_j"],
            "plan": r["plan_id"],
        })
    return pd.DataFrame(rows, columns=cols)


def plot_robustness(records: Sequence[dict], path: Path, title: str) -> Path:
    """Regret of each solver's nominal plan against the bandwidth factor (log x)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12.8, 4.6))
    for solver in dict.fromkeys(r["solver"] for r in records):
        rs = sorted((r for r in records if r["solver"] == solver), key=lambda r: r["factor"])
        xs = [r["factor"] for r in rs]
        marker = _MARKERS.get(solver, "o")
        axes[0].plot(xs, [r["latency_s"] * 1e3 for r in rs], marker=marker, label=f"{solver} (nominal plan)")
        axes[1].plot(xs, [100 * r["regret"] for r in rs], marker=marker, label=solver)
    rs = sorted({r["factor"]: r for r in records}.values(), key=lambda r: r["factor"])
    axes[0].plot([r["factor"] for r in rs], [r["optimum_s"] * 1e3 for r in rs], "k--", lw=1,
                 label="ilp re-optimised at each bandwidth")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks([r["factor"] for r in rs], [f"{r['factor']:g}×" for r in rs])
        ax.set_xlabel("bandwidth / nominal bandwidth")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("latency (ms)")
    axes[0].set_title("latency of the plan made for the nominal network", fontsize=10)
    axes[1].set_ylabel("regret (%): latency / same solver re-run − 1")
    axes[1].set_title("regret against re-optimising at each bandwidth", fontsize=10)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return save(fig, path, dpi=110, bbox_inches="tight")


def write_robustness(records: Sequence[dict], out: str | Path, title: str, plots: bool = True) -> list[Path]:
    """``robustness.csv``, ``robustness.md`` and (with ``plots``) ``robustness.png``, in ``out``."""
    out = Path(out)
    df = robustness_frame(records)
    written = [write_text_atomic(out / "robustness.csv", df.to_csv(index=False))]
    png = plot_robustness(records, out / "robustness.png", title) if plots and records else None
    measured = any(r["measured_s"] is not None for r in records)
    lines = [f"# Robustness to bandwidth: {title}", "",
             "Each solver's plan is made once for the nominal network and evaluated at other bandwidths (the cost "
             "model; `measured_ms` when a measure hook is given). `regret` = its latency / the latency of the same "
             "solver re-run at that bandwidth − 1; `gap_to_optimum` = its latency / the ilp optimum there − 1.",
             "" if measured else "No measurement: the testbed hook (`robustness.measure`) was not set.", "",
             markdown_table(df), ""]
    if png is not None:
        lines += [f"![robustness]({png.name})", ""]
    written.insert(0, write_text_atomic(out / "robustness.md", "\n".join(lines)))
    if png is not None:
        written.append(png)
    return written
