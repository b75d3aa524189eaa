"""PNG plots of a sweep (matplotlib, Agg backend), written by :func:`iopopt.report.build_report`.

- ``latency_normalised.png``: every solver's latency divided by the
  reference's (``ilp``) on the same instance, the solvers side by side:
  grouped bars per instance for a few instances (one panel per model), the
  distribution per solver (one panel per cluster and network) for many;
- ``greedy_gap_hist.png``: greedy_iop's relative gap to the reference (and to
  ``ilp_pairs``, its own decision space): the instances where it equals the
  reference in a bar of their own, the others in bins, by network;
- ``peak_memory.png``: per-device peak memory per solver with each device's
  capacity, one panel per model and cluster, on one network (named);
- ``solver_time.png``: solver time against graph size, one point per solve;
- ``plans/plans_<instance>.png``: the plan of every solver on one instance,
  layer by layer (:mod:`iopopt.report.plan_plot`);
- ``timelines/timeline_<job>.png``: per plan and device, the communication
  and compute of every step, layers labelled (:mod:`iopopt.report.timeline`).

Colours are fixed per solver (:func:`solver_color`) and per strategy
(:mod:`iopopt.report.plan`) in every plot.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from ..results.io import atomic_path
from .constants import REFERENCE, SOLVER_COLORS
from .stats import _solver_key

__all__ = ["write_plots", "draw_all", "PLOT_FILES", "PLOT_DIRS", "solver_color"]

#: Every file name the report writes at the top of a sweep directory (and ones earlier versions wrote),
#: so that a rebuild removes those the data no longer supports.
PLOT_FILES = ("latency_normalised.png", "greedy_gap_hist.png", "peak_memory.png", "solver_time.png",
              "latency_vs_bandwidth.png")
#: Folders of per-plan plots; their PNGs are rewritten on every build.
PLOT_DIRS = ("timelines", "plans")
MAX_PANELS = 12


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_")[:120]


def save(fig, path: Path, dpi: int = 100, bbox_inches: str | None = None) -> Path:
    """Write ``fig`` to ``path`` atomically (an interrupt leaves the old file or none, never a part) and close it."""
    try:
        with atomic_path(path) as tmp:
            # zlib 3 of 9: a little larger, much faster
            fig.savefig(tmp, dpi=dpi, bbox_inches=bbox_inches, pil_kwargs={"compress_level": 3})
    finally:
        _plt().close(fig)
    return path


def solver_color(name: str) -> str:
    """The colour of a solver in every plot (a fixed one for the shipped solvers)."""
    if name in SOLVER_COLORS:
        return SOLVER_COLORS[name]
    palette = ("#8c564b", "#e377c2", "#bcbd22", "#17becf", "#aec7e8", "#ffbb78")
    return palette[sum(map(ord, str(name))) % len(palette)]


def solvers_of(df: pd.DataFrame) -> list[str]:
    return sorted(df["solver"].dropna().unique(), key=_solver_key)


def plain_log_axis(axis, values=None) -> None:
    """Log axis with plain-number tick labels (10, 50, 100 rather than 10^1, 5x10^1)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator

    fmt = FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 10 else f"{v:g}")
    if values is not None:  # ticks exactly at the values plotted (e.g. the graph sizes of the sweep)
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


def _solver_time(df: pd.DataFrame, root: Path) -> Path | None:
    """Solver time against graph size: one point per solve (sizes are whole graphs, not a continuum)."""
    ok = df[df["solver_time_s"].notna() & df["n_nodes"].notna() & df["termination"].ne("error")]
    if ok["n_nodes"].nunique() < 2:
        return None
    plt = _plt()
    ks = sorted(ok["k"].dropna().unique())[:6]
    solvers = solvers_of(ok)
    sizes = sorted(ok["n_nodes"].unique())
    # few distinct sizes (a zoo sweep): name the model of each size under its tick
    names = ok.groupby("n_nodes")["model"].agg(lambda v: "/".join(sorted(set(map(str, v)))))
    named = len(sizes) <= 8
    fig, axes = plt.subplots(1, len(ks), figsize=(4.2 * len(ks) + 0.6, 3.6), squeeze=False, sharey=True)
    n_solvers = len(solvers)
    for ax, k in zip(axes.flat, ks):
        sel = ok[ok["k"] == k]
        for i, solver in enumerate(solvers):
            g = sel[sel["solver"] == solver]
            # solvers side by side around each size, so points of equal time stay visible
            shift = 10 ** ((i - (n_solvers - 1) / 2) * 0.012) if named else 1.0
            ax.scatter(g["n_nodes"] * shift, g["solver_time_s"].clip(lower=1e-6), s=14, color=solver_color(solver),
                       alpha=0.8, label=solver, edgecolors="none")
        ax.set_xscale("log")
        ax.set_yscale("log")
        if named:
            from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

            ax.xaxis.set_major_locator(FixedLocator(sizes))
            ax.xaxis.set_major_formatter(FixedFormatter([f"{int(n)}\n{names[n]}" for n in sizes]))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xlim(sizes[0] / 1.25, sizes[-1] * 1.25)
        else:
            plain_log_axis(ax.xaxis)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_xlabel("graph nodes")
        ax.set_title(f"{int(k)} devices", fontsize=9)
        ax.grid(True, which="major", alpha=0.3)
    axes.flat[0].set_ylabel("solver time (s)")
    axes.flat[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.suptitle("Solver time against graph size (one point per solve)", fontsize=10)
    fig.tight_layout()
    return save(fig, root / "solver_time.png")


def _draw(task: tuple) -> Path | None:
    """Run one plotting task ``(module, function, args)`` (module-level, so worker processes can run it)."""
    import importlib

    module, function, args = task
    return getattr(importlib.import_module(f"{__package__}.{module}"), function)(*args)


def _workers(n_tasks: int, workers: int | None) -> int:
    import os

    if workers is None:  # auto: both cores of a small machine pay off from a handful of figures on
        workers = min(2, os.cpu_count() or 1) if n_tasks >= 8 else 1
    return max(1, min(workers, n_tasks))


def draw_all(tasks: list[tuple], workers: int | None = None) -> list[Path | None]:
    """Run plotting tasks, in worker processes when there are many (the PNGs are the same either way).

    First the partial figures of an earlier report killed outright (SIGKILL: its writers could not clean
    up) are removed from the folders the tasks write to.
    """
    from ..results.io import remove_partial_files

    remove_partial_files(_folders(tasks))
    n = _workers(len(tasks), workers)
    if n <= 1:
        return [_draw(t) for t in tasks]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    try:  # fork: the workers inherit the imported modules instead of importing them again
        context = multiprocessing.get_context("fork")
    except ValueError:  # pragma: no cover - no fork on this platform
        return [_draw(t) for t in tasks]
    _plt()  # matplotlib imported once, here, before the workers fork
    import os

    pool = ProcessPoolExecutor(n, mp_context=context, initializer=_worker_init, initargs=(os.getpid(),))
    try:
        out = list(pool.map(_draw, tasks))
    except BaseException:  # an interrupt (or a failed figure): end the workers now, not after their figures
        _abandon(pool, tasks)
        raise
    pool.shutdown()
    return out


def _worker_init(parent: int) -> None:
    """A drawing worker leaves SIGINT (Ctrl-C reaches the whole process group) and SIGTERM to its parent,
    which ends it (:func:`_abandon`), and ends itself when the parent dies (a SIGKILL: it would wait for
    tasks forever, its sibling holding the task pipe open)."""
    import signal

    from .._lifecycle import watch_parent

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    watch_parent(parent=parent)


def _abandon(pool, tasks: list[tuple]) -> None:
    """Kill ``pool``'s workers and remove the partial figures they were writing (atomic writes' temporary files)."""
    import contextlib
    import os
    import signal

    from ..results.io import remove_partial_files

    pids = list(getattr(pool, "_processes", None) or {})
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    pool.shutdown(wait=True, cancel_futures=True)
    remove_partial_files(_folders(tasks), pids)


def _folders(tasks: list[tuple]) -> set[Path]:
    """The folders plotting tasks write to: a task names the sweep's root or its figure's file."""
    return {a if a.is_dir() else a.parent for _, _, args in tasks for a in args if isinstance(a, Path)}


def write_plots(df: pd.DataFrame, records: list[dict], root: Path, max_timelines: int = 24, max_plans: int = 24,
                reference: str = REFERENCE, workers: int | None = None) -> list[Path]:
    """Write every plot that the data supports; returns their paths.

    ``workers``: processes that draw (None: two on a multi-core machine when
    there are many figures, else one).
    """
    from .plan_plot import plan_tasks
    from .timeline import timeline_tasks

    tasks = [
        ("plot_latency", "latency_normalised", (df, root, reference)),
        ("plot_gap", "gap_hist", (df, root, reference)),
        ("plot_memory", "peak_memory", (records, root)),
        ("plots", "_solver_time", (df, root)),
    ]
    tasks += plan_tasks(records, root, max_plans)
    tasks += timeline_tasks(records, root, max_timelines)
    return [p for p in draw_all(tasks, workers) if p is not None]
