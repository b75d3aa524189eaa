"""Per-plan timelines: ``timelines/timeline_<job>.png``, one row per device, one segment per step.

Execution is layer-synchronous (DESIGN §4): each step first reshards its
inputs (communication, dark grey, on the devices that send or receive), then
every device computes its share (coloured by the layer's strategy, as in the
plan diagrams). The layers that take a visible share of the time are named
along the top axis.
"""

from __future__ import annotations

from pathlib import Path

from .constants import BASELINE, GREEDY
from .plan import strategy_style
from .plots import _plt, save, slug

__all__ = ["plot_timeline", "timeline_tasks"]

_COMM = "#404040"
#: A layer is named on the top axis when it takes at least this share of the latency.
_LABEL_SHARE = 0.025


def plot_timeline(record: dict, path: Path) -> Path | None:
    """The per-device timeline of one plan; None when the record has no ``per_op``."""
    per_op = record.get("per_op")
    devices = [d["name"] for d in record.get("per_device") or []]
    if not per_op or not devices:
        return None
    plt = _plt()
    from matplotlib.patches import Patch

    k = len(devices)
    total = sum((op["comm_s"] or 0.0) + (op["compute_s"] or 0.0) for op in per_op) or 1.0
    named = [op for op in per_op if (op["comm_s"] or 0.0) + (op["compute_s"] or 0.0) >= _LABEL_SHARE * total]
    longest = max((len(f"{op['node']} ({op.get('strategy')})") for op in named), default=0)
    # heights in inches: title, layer names (60° text, 6.5 pt), device rows, time axis, legend
    title_in, names_in, rows_in, axis_in, legend_in = 0.3, 0.055 * longest * 0.87 + 0.1, 0.5 * k + 0.2, 0.5, 0.45
    fig_h = title_in + names_in + rows_in + axis_in + legend_in
    fig, ax = plt.subplots(figsize=(11, fig_h))
    comm: list[list] = [[] for _ in range(k)]
    comp: dict[str, list[list]] = {}
    ticks, labels, starts = [], [], []
    t = 0.0
    for op in per_op:
        c = op["comm_s"] or 0.0
        dur = c + (op["compute_s"] or 0.0)
        if c > 0:
            for d in op.get("comm_devices") or range(k):
                comm[d].append((t * 1e3, c * 1e3))
        rows = comp.setdefault(str(op.get("strategy")), [[] for _ in range(k)])
        for d, s in enumerate(op.get("device_compute_s") or []):
            if s > 0:
                rows[d].append(((t + c) * 1e3, s * 1e3))
        if dur / total >= _LABEL_SHARE:
            ticks.append((t + dur / 2) * 1e3)
            labels.append(f"{op['node']} ({op.get('strategy')})")
        starts.append(t * 1e3)
        t += dur
    for d in range(k):
        y = k - 1 - d
        ax.broken_barh(comm[d], (y - 0.35, 0.7), facecolors=_COMM, edgecolor="none")
        for strategy, rows in comp.items():
            ax.broken_barh(rows[d], (y - 0.35, 0.7), facecolors=strategy_style(strategy).color, edgecolor="none")
    ax.vlines(starts, -0.5, k - 0.5, colors="0.85", linewidth=0.4, zorder=0)
    ax.set_yticks(range(k), list(reversed(devices)))
    ax.set_ylim(-0.5, k - 0.5)
    ax.set_xlabel("time (ms)")
    ax.set_xlim(0, max(t * 1e3, 1e-9))
    names = ax.get_xaxis_transform()  # layer names above the axes (texts: cheaper than a second axis)
    for x, label in zip(ticks, labels):
        ax.text(x, 1.01, label, transform=names, rotation=60, ha="left", va="bottom", fontsize=6.5,
                rotation_mode="anchor")
    lat = record.get("latency_s")
    fig.text(0.01, 1 - 0.06 / fig_h, f"{record.get('model')} on {record.get('cluster')} / {record.get('network')} — "
             f"{record.get('solver')}" + (f": {lat * 1e3:.2f} ms" if lat else "")
             + f"   (layers taking ≥ {_LABEL_SHARE:.1%} of it named on top)", fontsize=9, va="top")
    shared = "Shared" in str(record.get("network_kind") or "")
    handles = [Patch(color=strategy_style(s).color, label=f"compute, {s}") for s in comp]
    handles.append(Patch(color=_COMM, label="communication" + (" (shared medium: transfers serialise)"
                                                               if shared else "")))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=7, frameon=False)
    fig.subplots_adjust(left=0.08, right=0.98, top=1 - (title_in + names_in) / fig_h,
                        bottom=(axis_in + legend_in) / fig_h)
    return save(fig, path)


def timeline_tasks(records: list[dict], root: Path, limit: int) -> list[tuple]:
    """Plotting tasks (see :func:`~iopopt.report.plots.draw_all`) for at most ``limit`` timelines.

    The greedy's and CoEdge's plans first (side by side per instance), then the others.
    """
    first = {GREEDY: 0, BASELINE: 0}
    ordered = sorted(range(len(records)), key=lambda i: (first.get(records[i].get("solver"), 1), i))
    tasks: list[tuple] = []
    for rec in (records[i] for i in ordered):
        if len(tasks) >= limit:
            break
        if not rec.get("per_op") or not rec.get("per_device") or rec.get("termination") == "error":
            continue
        name = slug(f"{rec.get('model')}_{rec.get('cluster')}_{rec.get('network')}_{rec.get('solver')}")
        src = slug(str(rec.get("source", "")).replace("/result.json", "").replace("instances.jsonl:", ""))
        tasks.append(("timeline", "plot_timeline", (rec, root / "timelines" / f"timeline_{src}_{name}.png")))
    return tasks
