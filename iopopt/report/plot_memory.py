"""``peak_memory.png``: each device's peak memory under each solver's plan, against its capacity.

One panel per model and cluster (on the sweep's most frequent network, named
in the title), one group of bars per device, one bar per solver. A device's
memory capacity is a dashed red line over its group when it lies within the
axis; when it is far above every bar (4 GB boards holding tens of MB), the
group is topped with a red ``▲ capacity`` label instead, so the bars stay
readable.
"""

from __future__ import annotations

import math
from pathlib import Path

from .plots import MAX_PANELS, _plt, save, solver_color
from .stats import _solver_key

__all__ = ["peak_memory"]

_CAPACITY = "#d62728"


def _mb(v: float) -> str:
    return f"{v / 1e9:.1f} GB" if v >= 1e9 else f"{v / 1e6:.0f} MB"


def _instances(records: list[dict]) -> tuple[list[tuple[dict, dict]], list[str], str, int]:
    by_inst: dict[str, dict[str, dict]] = {}
    for rec in records:
        if rec.get("per_device") and rec.get("termination") != "error":
            by_inst.setdefault(rec.get("instance") or "", {}).setdefault(rec.get("solver"), rec)
    multi = [recs for recs in by_inst.values() if len(recs) >= 2]
    if not multi:
        return [], [], "", 0
    first = [next(iter(recs.values())) for recs in multi]
    networks = list(dict.fromkeys(str(r.get("network")) for r in first))
    # the network with the most instances (the first of them on a tie) is shown
    network = max(networks, key=lambda n: sum(str(r.get("network")) == n for r in first))
    chosen = [(r, recs) for r, recs in zip(first, multi) if str(r.get("network")) == network]
    chosen.sort(key=lambda t: (str(t[0].get("model")), t[0].get("k") or 0, str(t[0].get("cluster")),
                               str(t[0].get("split"))))
    return chosen[:MAX_PANELS], networks, network, len(chosen)


def peak_memory(records: list[dict], root: Path) -> Path | None:
    chosen, networks, network, n_all = _instances(records)
    if not chosen:
        return None
    plt = _plt()
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    splits = {r.get("split") for r, _ in chosen}
    models = list(dict.fromkeys(str(r.get("model")) for r, _ in chosen))
    per_model = max(sum(str(r.get("model")) == m for r, _ in chosen) for m in models)
    by_model = 2 <= per_model <= 4 and len(models) * per_model <= MAX_PANELS
    cols = per_model if by_model else min(3, len(chosen))
    slots: list = []
    if by_model:  # one row per model, its clusters side by side
        for m in models:
            mine = [c for c in chosen if str(c[0].get("model")) == m]
            slots += mine + [None] * (cols - len(mine))
    else:
        slots = list(chosen)
    rows = math.ceil(len(slots) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 2.9 * rows + 1.0), squeeze=False)
    solvers_all = sorted({s for _, recs in chosen for s in recs}, key=_solver_key)
    any_line = any_label = False
    for ax, slot in zip(axes.flat, slots):
        if slot is None:
            ax.axis("off")
            continue
        first_rec, recs = slot
        solvers = sorted(recs, key=_solver_key)
        devices = [d["name"] for d in recs[solvers[0]]["per_device"]]
        caps = first_rec.get("device_memory_bytes") or [None] * len(devices)
        width = 0.8 / len(solvers)
        top = 0.0
        for i, s in enumerate(solvers):
            peaks = [d["peak_bytes"] / 1e6 for d in recs[s]["per_device"]]
            top = max(top, *peaks)
            ax.bar([j + i * width - 0.4 + width / 2 for j in range(len(peaks))], peaks, width,
                   color=solver_color(s))
        top *= 1.15
        near = [c / 1e6 for c in caps if c is not None and c / 1e6 <= top * 1.6]
        top = max([top] + [c * 1.08 for c in near])
        for j, cap in enumerate(caps):
            if cap is None:
                continue
            if cap / 1e6 <= top:
                ax.hlines(cap / 1e6, j - 0.45, j + 0.45, colors=_CAPACITY, linestyles="--", linewidth=1.3)
                any_line = True
            else:
                ax.text(j, top, f"▲ {_mb(cap)}", ha="center", va="top", fontsize=7, color=_CAPACITY)
                any_label = True
        ax.set_ylim(0, top)
        ax.set_xticks(range(len(devices)), devices, fontsize=8, rotation=0 if len(devices) <= 4 else 30)
        ax.set_ylabel("peak memory (MB)", fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
        split = f", {first_rec.get('split')} split" if len(splits) > 1 else ""
        ax.set_title(f"{first_rec.get('model')} on {first_rec.get('cluster')}{split}", fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(slots):]:
        ax.axis("off")
    handles = [Patch(color=solver_color(s), label=s) for s in solvers_all]
    if any_line:
        handles.append(Line2D([], [], color=_CAPACITY, linestyle="--", label="device capacity"))
    if any_label:
        handles.append(Line2D([], [], color=_CAPACITY, marker="^", linestyle="none",
                              label="capacity (above the axis)"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 9), fontsize=8, frameon=False)
    others = [n for n in networks if n != network]
    shown = f"network {network}" + (f" (not shown: {', '.join(others)})" if others else "")
    more = f"; first {len(chosen)} of {n_all} model/cluster combinations" if n_all > len(chosen) else ""
    fig.suptitle(f"Peak memory per device (weights + activation peak) per solver — {shown}{more}", fontsize=10)
    fig.tight_layout(rect=(0, 0.45 / (2.9 * rows + 1.0), 1, 1))
    return save(fig, root / "peak_memory.png")
