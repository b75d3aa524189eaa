"""``latency_normalised.png``: every solver's latency relative to the reference's, instance by instance.

A few instances (the paper comparison: 18): one panel per model, a group of
bars per cluster and network, one bar per solver, height = latency ÷ the
reference's latency on that instance (1 = as fast as the reference). The axis
stops a little above the cooperative solvers, so that greedy_iop, coedge and
the optimum, which differ by a few percent, stay apart; bars beyond the axis
(one device alone, output-channel splits on a slow link) carry their ratio as
a label. Many instances (the gap study): one panel per cluster and network, the
ratios of each solver as points on a log axis, with their median.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .constants import BASELINE, OPTIMAL_RTOL
from .plots import MAX_PANELS, _plt, plain_log_axis, save, solver_color, solvers_of
from .stats import _identity

__all__ = ["latency_normalised", "normalised"]

#: With at most this many instances, one bar per solver and instance; beyond, distributions.
MAX_BAR_INSTANCES = 36
#: Solvers whose median ratio in a panel is at most this set its axis; the others' bars may be cut and labelled.
_NEAR = 1.25
#: A ratio this close to 1 is "equal to the reference" (a dot instead of an invisible bar).
_EQUAL = 1e-9


def normalised(df: pd.DataFrame, reference: str) -> tuple[pd.DataFrame, str] | None:
    """Records with a plan and ``ratio`` = latency ÷ ``reference``'s (or coedge's when there is none)."""
    ok = df[df["termination"].ne("error") & df["latency_s"].notna()].copy()
    for ref in dict.fromkeys((reference, BASELINE)):
        ref_lat = ok[ok["solver"].eq(ref)].groupby("instance")["latency_s"].first()
        if len(ref_lat):
            ok["ratio"] = ok["latency_s"] / ok["instance"].map(ref_lat)
            ok["ref_ms"] = ok["instance"].map(ref_lat) * 1e3
            return ok[ok["ratio"].notna()], ref
    return None


def latency_normalised(df: pd.DataFrame, root: Path, reference: str) -> Path | None:
    found = normalised(df, reference)
    if found is None:
        return None
    ok, ref = found
    if ok["solver"].nunique() < 2:
        return None
    if ok["instance"].nunique() <= MAX_BAR_INSTANCES:
        return _bars(ok, ref, root)
    return _distributions(ok, ref, root)


def _ratio_text(r: float) -> str:
    return f"×{r:.0f}" if r >= 10 else f"×{r:.2f}" if r < 2 else f"×{r:.1f}"


def _axis_top(g: pd.DataFrame, solvers: list[str]) -> float:
    """The top of a panel's axis: a little above the solvers that stay near the reference (median ≤ ×1.25).

    The far ones (one device alone, output-channel splits on slow links) are
    cut at the top and labelled, so that a few percent between greedy_iop,
    coedge and the optimum stay visible.
    """
    near = [s for s in solvers if g.loc[g["solver"].eq(s), "ratio"].median() <= _NEAR]
    ratios = g.loc[g["solver"].isin(near or solvers), "ratio"]
    return 1.0 + max(float(ratios.max()) - 1.0, 0.01) * 1.25


def _instances(ok: pd.DataFrame, ident: list[str]) -> list[tuple[tuple, pd.DataFrame]]:
    """``(label parts, records)`` per instance, sorted by label; the instance key is added where labels repeat."""
    out = sorted(((tuple(g.iloc[0][c] for c in ident), inst, g) for inst, g in ok.groupby("instance")),
                 key=lambda t: tuple(map(str, t[0])) + (t[1],))
    labels = [t[0] for t in out]
    return [(key + ((inst.rpartition("#")[2] or inst,) if labels.count(key) > 1 else ()), g)
            for key, inst, g in out]


def _bars(ok: pd.DataFrame, ref: str, root: Path) -> Path:
    plt = _plt()
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter

    solvers = [s for s in solvers_of(ok) if s != ref]
    ident = _identity(ok, ("cluster", "network"))
    models = list(dict.fromkeys(sorted(ok["model"].astype(str))))[:MAX_PANELS]
    groups = {m: _instances(ok[ok["model"].astype(str) == m], ident) for m in models}
    n_groups = max(len(g) for g in groups.values())
    fig_w = min(22.0, max(9.0, 0.24 * len(solvers) * n_groups + 1.6))
    # heights in inches: title and legend, then per model an axes and its group labels (one line per key)
    head_in, axes_in, labels_in = 0.95, 1.6, 0.13 * (len(ident) + 1) + 0.45
    fig_h = head_in + (axes_in + labels_in) * len(models)
    fig, axes = plt.subplots(len(models), 1, figsize=(fig_w, fig_h), squeeze=False)
    bar_w = 0.8 / max(len(solvers), 1)
    for ax, m in zip(axes.flat, models):
        top = _axis_top(ok[ok["model"].astype(str) == m], solvers)
        labels = []
        for x, (key, g) in enumerate(groups[m]):
            by = g.groupby("solver")["ratio"].first()
            for i, s in enumerate(solvers):
                if s not in by:
                    continue
                r = float(by[s])
                xi = x - 0.4 + bar_w * (i + 0.5)
                cut = r > top
                ax.bar(xi, min(r, top) - 1.0, bar_w * 0.92, bottom=1.0, color=solver_color(s),
                       hatch="//" if cut else None, edgecolor="white" if cut else None, linewidth=0)
                if abs(r - 1.0) <= _EQUAL:  # no bar to see: mark "equal to the reference" at its foot
                    ax.plot(xi, 1.0, marker="o", markersize=4, color=solver_color(s), zorder=3, clip_on=False)
                if cut:  # off the axis: say how far
                    ax.text(xi, top - 0.03 * (top - 1.0), _ratio_text(r), rotation=90, ha="center", va="top",
                            fontsize=6.5, bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.6})
            labels.append("\n".join(str(k) for k in key) + f"\n{ref} {g['ref_ms'].iloc[0]:.0f} ms")
        ax.axhline(1.0, color=solver_color(ref), linewidth=1.4)
        ax.set_xticks(range(len(labels)), labels, fontsize=7)
        ax.set_xlim(-0.55, len(labels) - 0.45)
        ax.set_ylim(1.0 - 0.03 * (top - 1.0), top)
        digits = 3 if top < 1.05 else 2
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _, d=digits: f"{v:.{d}f}"))
        ax.tick_params(axis="y", labelsize=7)
        ax.set_ylabel(f"latency ÷ {ref}'s", fontsize=8)
        ax.set_title(m, fontsize=9, loc="left", fontweight="bold")
        ax.grid(True, axis="y", alpha=0.3)
    handles = [Patch(color=solver_color(s), label=s) for s in solvers]
    handles.append(plt.Line2D([], [], color=solver_color(ref), linewidth=1.4, label=f"{ref} = 1"))
    handles.append(plt.Line2D([], [], color="0.4", marker="o", markersize=4, linestyle="none",
                              label=f"equal to {ref}"))
    fig.text(0.5, 1 - 0.06 / fig_h, f"Latency relative to {ref} on each instance: lower is better, 1 = {ref}, "
             "each model on its own scale.\nBars beyond the axis are hatched and labelled with their ratio.",
             ha="center", va="top", fontsize=9)
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 1 - 0.45 / fig_h))
    fig.subplots_adjust(left=0.9 / fig_w, right=1 - 0.2 / fig_w, top=1 - head_in / fig_h,
                        bottom=(labels_in - 0.2) / fig_h, hspace=labels_in / axes_in)
    return save(fig, root / "latency_normalised.png")


def _distributions(ok: pd.DataFrame, ref: str, root: Path) -> Path:
    plt = _plt()
    solvers = [s for s in solvers_of(ok) if s != ref]
    keys = _identity(ok, ("cluster", "network"))
    panels = list(ok.groupby(keys, sort=True))[:MAX_PANELS]
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.3 * cols, 3.0 * rows + 0.7), squeeze=False, sharey=True)
    hi = max(2.0, float(ok["ratio"].max()) * 1.2)
    lo = min(1.0, float(ok["ratio"].min())) / 1.1
    for ax, (key, g) in zip(axes.flat, panels):
        key = key if isinstance(key, tuple) else (key,)
        for i, s in enumerate(solvers):
            r = g.loc[g["solver"].eq(s), "ratio"].sort_values()
            if r.empty:
                continue
            # spread the points sideways by rank, so that many equal ratios read as a wide band
            spread = [i + 0.3 * ((j / max(len(r) - 1, 1)) - 0.5) for j in range(len(r))]
            ax.scatter(spread, r.clip(lower=lo), s=6, color=solver_color(s), alpha=0.5, edgecolors="none")
            ax.hlines(float(r.median()), i - 0.35, i + 0.35, color="black", linewidth=1.2)
            equal = float((r <= 1.0 + OPTIMAL_RTOL).mean()) * 100
            ax.text(i, hi, f"{equal:.0f}%", ha="center", va="top", fontsize=7)
        ax.axhline(1.0, color=solver_color(ref), linewidth=1.2)
        ax.set_yscale("log")
        ax.set_ylim(lo, hi)
        plain_log_axis(ax.yaxis)
        ax.set_xticks(range(len(solvers)), solvers, rotation=30, ha="right", fontsize=7)
        ax.set_title(" / ".join(str(k) for k in key), fontsize=9)
        ax.grid(True, axis="y", which="major", alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel(f"latency ÷ {ref}'s (log)", fontsize=8)
    fig.suptitle(f"Latency relative to {ref} per instance (points; black bar: median; top: share of instances "
                 f"equal to {ref})", fontsize=9)
    fig.tight_layout()
    return save(fig, root / "latency_normalised.png")
