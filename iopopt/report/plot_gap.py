"""``greedy_gap_hist.png``: how far greedy_iop is from the optimum, instance by instance.

One panel per reference: the exact optimum ``ilp`` (where it is proven) and
``ilp_pairs``, the optimum of greedy_iop's own decision space (its
algorithmic gap). In each, the instances where greedy_iop *equals* the
reference (relative gap ≤ 1e-9) have a bar of their own on the left, so that
no bin mixes "equal" with "a little above"; the others are binned by their
gap (log-spaced bins when the gaps span more than two decades), stacked by
network, so a reader sees on which links the gap arises.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .constants import GREEDY, OPTIMAL_RTOL, PAIRS
from .plots import _plt, save

__all__ = ["gap_hist", "gap_panels"]

_NET_COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860")


def gap_panels(df: pd.DataFrame, reference: str) -> list[tuple[str, pd.DataFrame]]:
    """``(title, frame of instance, network, gap)`` for greedy_iop against each reference present."""
    ok = df[df["termination"].ne("error") & df["latency_s"].notna()]
    greedy = ok[ok["solver"].eq(GREEDY)].groupby("instance").first()
    panels = []
    for ref, what in ((reference, "proven optimal"), (PAIRS, "optimum of its own decision space")):
        if panels and ref == reference:
            continue
        proven = ok[ok["solver"].eq(ref) & ok["termination"].eq("optimal")].groupby("instance")["latency_s"].first()
        common = greedy.index.intersection(proven.index)
        if not len(common):
            continue
        frame = pd.DataFrame({"network": greedy.loc[common, "network"].astype(str),
                              "gap": greedy.loc[common, "latency_s"] / proven.loc[common] - 1.0})
        panels.append((f"{GREEDY} vs {ref} ({what})", frame))
    return panels


def _decades(axis, lo: float, hi: float) -> None:
    """Log axis labelled at powers of ten only (plain numbers), so that six decades stay readable."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    ticks = [10.0**d for d in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)]
    if len(ticks) <= 3:  # a narrow range: also 2 and 5 times
        ticks = sorted(t * m for t in ticks for m in (1, 2, 5))
    axis.set_major_locator(FixedLocator([t for t in ticks if lo / 1.01 <= t <= hi * 1.01] or ticks[:1]))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    axis.set_minor_locator(LogLocator(base=10, subs=tuple(range(2, 10))))
    axis.set_minor_formatter(NullFormatter())


def gap_hist(df: pd.DataFrame, root: Path, reference: str) -> Path | None:
    panels = gap_panels(df, reference)
    if not panels:
        return None
    plt = _plt()
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    networks = sorted({n for _, f in panels for n in f["network"]})
    colors = {n: _NET_COLORS[i % len(_NET_COLORS)] for i, n in enumerate(networks)}
    fig = plt.figure(figsize=(6.6 * len(panels), 3.9))
    # per panel: the "equal" bar, the histogram, and a spacer before the next panel's axis labels
    ratios = ([1, 6, 1.0] * len(panels))[:-1]
    grid = fig.add_gridspec(1, len(ratios), width_ratios=ratios, wspace=0.08)
    for p, (title, frame) in enumerate(panels):
        ax_eq = fig.add_subplot(grid[0, 3 * p])
        ax = fig.add_subplot(grid[0, 3 * p + 1])  # its own scale: 3 instances next to 429 must stay visible
        equal = frame[frame["gap"].abs() <= OPTIMAL_RTOL]
        below = frame[frame["gap"] < -OPTIMAL_RTOL]
        above = frame[frame["gap"] > OPTIMAL_RTOL]
        base = 0
        for n in networks:  # the "equal" bar, stacked by network
            c = int(equal["network"].eq(n).sum())
            if c:
                ax_eq.bar(0, c, 0.8, bottom=base, color=colors[n])
                base += c
        ax_eq.text(0, base, str(len(equal)), ha="center", va="bottom", fontsize=8)
        ax_eq.set_xticks([0], [f"= {title.split(' vs ')[1].split(' ')[0]}"], fontsize=8)
        ax_eq.set_xlim(-0.6, 0.6)
        ax_eq.set_ylabel("instances")
        ax_eq.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax_eq.grid(True, axis="y", alpha=0.3)
        pct = above["gap"] * 100
        if len(pct):
            lo, hi = float(pct.min()), float(pct.max())
            log = hi / lo > 100
            if log:
                edges = np.logspace(math.log10(lo), math.log10(hi), 25)
                edges[0], edges[-1] = lo * 0.999, hi * 1.001
            else:
                edges = np.linspace(0.0, hi * 1.001, 25)
            stacks = [pct[above["network"].eq(n)].to_numpy() for n in networks]
            ax.hist(stacks, bins=edges, stacked=True, color=[colors[n] for n in networks], edgecolor="white",
                    linewidth=0.4)
            counts, _ = np.histogram(pct.to_numpy(), bins=edges)
            for c, lo_edge, hi_edge in zip(counts, edges[:-1], edges[1:]):
                if c:  # every bin says how many it holds
                    mid = math.sqrt(lo_edge * hi_edge) if log else (lo_edge + hi_edge) / 2
                    ax.text(mid, c, str(int(c)), ha="center", va="bottom", fontsize=6)
            ax.set_ylim(0, max(counts) * 1.15 + 0.5)
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.yaxis.tick_right()  # its own scale, on its own side
            if log:
                ax.set_xscale("log")
                _decades(ax.xaxis, lo, hi)
        ax.set_xlabel("relative gap above the reference (%)" + (" — log scale" if len(pct) and log else ""))
        ax.grid(True, alpha=0.3)
        b = f", {len(below)} below it" if len(below) else ""
        top = f", max {pct.max():,.2f}%" if len(pct) else ""
        ax.set_title(f"{title}\n{len(frame)} instances: {len(equal)} equal to it (left bar), "
                     f"{len(above)} above it{b}{top}", fontsize=9, loc="left")
    fig.legend(handles=[Patch(color=colors[n], label=n) for n in networks], loc="lower center",
               ncol=len(networks), fontsize=8, frameon=False)
    fig.subplots_adjust(bottom=0.24, top=0.84, left=0.06, right=0.98)
    return save(fig, root / "greedy_gap_hist.png")
