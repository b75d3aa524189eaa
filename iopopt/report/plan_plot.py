"""Plan diagrams: the layers in execution order, the strategy of each, IOP pairs and messages per edge.

``plans/plans_<instance>.png`` draws the plan of every solver on one instance,
one row per solver on a shared layer axis, so a reader sees at a glance which
layers greedy_iop splits differently from coedge and from the optimum:

- one cell per layer, coloured by its strategy (:mod:`iopopt.report.plan`);
- a bracket above the cells for each span the :data:`~iopopt.report.plan.SPAN_RULES`
  find (an IOP pair from its ``oc`` layer to its ``ic`` layer; a fused stack);
- under each cell, a bar for the bytes its input edges carry (height ∝ √bytes,
  so small transfers stay visible), with the messages and bytes written out
  when one plan is drawn alone (``iopopt show RESULT --plot FILE``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from .plan import nbytes_text, spans, strategy_style
from .plots import _plt, save, slug
from .stats import _solver_key

__all__ = ["plot_plans", "plan_tasks"]

_COMM = "#404040"
_SPAN_COLORS = {"IOP pair": "#000000", "fused stack": "#2ca02c"}
#: At most this many layer names along the axis (every n-th beyond).
_MAX_LABELS = 90


def plot_plans(records: Sequence[dict], path: Path, title: str | None = None) -> Path | None:
    """Draw the plans of ``records`` (one row each, all on the same graph); None when none has ``per_op``."""
    records = [r for r in records if r.get("per_op")]
    if not records:
        return None
    plt = _plt()
    from matplotlib.collections import LineCollection, PolyCollection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    layers = [op["node"] for op in records[0]["per_op"]]
    n, rows = len(layers), len(records)
    alone = rows == 1
    fig_w = max(10.0 if alone else 8.0, min(26.0, 0.17 * n + 3.0))
    longest = max(len(name) for name in layers)
    names_in = 0.065 * longest + 0.1  # room for the rotated layer names (6 pt)
    legend_in = 0.75 if fig_w >= 12 else 0.95
    extra_in = 0.5 if alone else 0.0  # one plan alone: room for the messages and bytes of every edge
    fig_h = 0.95 * rows + 0.45 + names_in + legend_in + extra_in
    fig, ax = plt.subplots(figsize=(fig_w, fig_h))
    top_bytes = max((op.get("bytes_sent") or 0) for r in records for op in r["per_op"]) or 1
    used: dict[str, None] = {}
    kinds: dict[str, None] = {}
    ylabels = []
    comm: list = []
    for r, rec in enumerate(records):
        y = rows - 1 - r
        per_op = rec["per_op"]
        cells: dict[str, list] = {}
        for i, op in enumerate(per_op):
            cells.setdefault(str(op.get("strategy")), []).append((i - 0.45, 0.9))
        for strategy, xs in cells.items():
            used[strategy] = None
            ax.broken_barh(xs, (y - 0.15, 0.42), facecolors=strategy_style(strategy).color, edgecolor="none")
        heights = [0.3 * math.sqrt((op.get("bytes_sent") or 0) / top_bytes) for op in per_op]
        bars = [(i - 0.275, 0.55) for i, h in enumerate(heights) if h > 0]
        for (x, w), h in zip(bars, [h for h in heights if h > 0]):  # one collection per row: cheap to draw
            comm.append([(x, y - 0.18 - h), (x + w, y - 0.18 - h), (x + w, y - 0.18), (x, y - 0.18)])
        if alone and n <= 80:  # room to write every edge's messages and bytes
            for i, op in enumerate(per_op):
                if op.get("messages"):
                    ax.text(i, y - 0.2 - heights[i], f"{op['messages']}× {nbytes_text(op.get('bytes_sent'))}",
                            rotation=90, ha="center", va="top", fontsize=5.5)
        segs = []
        for sp in spans(per_op):
            kinds[sp.kind] = None
            h = y + 0.33
            segs += [[(sp.first - 0.3, h), (sp.last + 0.3, h)], [(sp.first - 0.3, h), (sp.first - 0.3, h - 0.05)],
                     [(sp.last + 0.3, h), (sp.last + 0.3, h - 0.05)]]
            color = _SPAN_COLORS.get(sp.kind, "#8c564b")
            ax.add_collection(LineCollection(segs[-3:], colors=color, linewidths=1.2))
        lat = rec.get("latency_s")
        outcome = f"{lat * 1e3:.1f} ms, {rec.get('messages')} msg" if lat else "no plan"
        ylabels.append(f"{rec.get('solver')}\n{outcome}")
    ax.add_collection(PolyCollection(comm, facecolors=_COMM, edgecolors="none"))
    ax.set_yticks(range(rows), list(reversed(ylabels)), fontsize=8)
    ax.tick_params(axis="y", length=0)
    # layer names as plain texts under the axis (a tick per layer costs several artists each)
    ax.set_xticks([])
    step = max(1, math.ceil(n / _MAX_LABELS))
    names = ax.get_xaxis_transform()
    for i in range(0, n, step):
        ax.text(i, -0.01, layers[i], transform=names, rotation=90, ha="center", va="top", fontsize=6)
    ax.set_xlim(-0.7, n - 0.3)
    ax.set_ylim(-0.75 if not alone else -1.55, rows - 0.45)
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    rec = records[0]
    ax.set_title(title or f"{rec.get('model')} on {rec.get('cluster')} / {rec.get('network')}: the plan of each "
                 "solver, layer by layer", fontsize=10, loc="left")
    styles = dict.fromkeys(strategy_style(s) for s in used)  # rows_fused1, rows_fused2, ... share one entry
    handles = [Patch(color=st.color, label=st.meaning) for st in styles]
    handles += [Line2D([], [], color=_SPAN_COLORS.get(k, "#8c564b"), linewidth=1.2, label=f"{k} (bracket)")
                for k in kinds]
    handles.append(Patch(color=_COMM, label="bytes into the layer (bar height ∝ √bytes)"
                         + ("; label: messages× bytes" if alone and n <= 80 else "")))
    bottom_in = names_in + legend_in
    fig.legend(handles=handles, loc="lower left", bbox_to_anchor=(1.4 / fig_w, 0.02), ncol=3 if fig_w >= 12 else 2,
               fontsize=7, frameon=False)
    # fixed margins (tight_layout would draw every text once more to measure it)
    fig.subplots_adjust(left=1.4 / fig_w, right=1 - 0.2 / fig_w, top=1 - 0.35 / fig_h, bottom=bottom_in / fig_h)
    return save(fig, path)


def plan_tasks(records: list[dict], root: Path, limit: int) -> list[tuple]:
    """Plotting tasks (see :func:`~iopopt.report.plots.draw_all`): one diagram per instance, at most ``limit``.

    Each diagram holds every solver's plan on its instance; instances in the
    report's order (model, number of devices, instance key).
    """
    by_inst: dict[str, list[dict]] = {}
    for rec in records:
        if rec.get("per_op") and rec.get("termination") != "error":
            by_inst.setdefault(str(rec.get("instance") or ""), []).append(rec)
    order = sorted(by_inst, key=lambda k: (str(by_inst[k][0].get("model")), by_inst[k][0].get("k") or 0, k))
    tasks = []
    for key in order[: max(limit, 0)]:
        recs = sorted(by_inst[key], key=lambda r: _solver_key(str(r.get("solver"))))
        tasks.append(("plan_plot", "plot_plans", (recs, root / "plans" / f"plans_{slug(key)}.png")))
    return tasks
