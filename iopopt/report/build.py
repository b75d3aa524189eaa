"""Summaries of a sweep: ``summary.csv``, ``summary.md`` and plots.

:func:`build_report` reads every ``result.json`` (and the per-instance
records of study jobs, ``instances.jsonl``) below a directory, pairs the
records that solve the same instance (same model, cluster, network and
settings: the ``instance`` key), and writes next to them:

- ``summary.csv``: one row per record, with the pairing columns
  ``ratio_to_ref`` (latency / the reference solver's, ``ilp`` by default),
  ``ratio_to_lb`` (latency / lower bound), ``gap_vs_ref`` (ratio − 1),
  ``speedup_vs_base`` (baseline latency / latency, ``coedge`` by default),
  ``latency_reduction_vs_base`` and ``peak_memory_reduction_vs_base``
  (1 − value / baseline's). Failed jobs are rows with ``termination`` ``error``.
- ``summary.md``: per-solver statistics, the gap of every solver to the
  reference on the instances where the reference is proven optimal, the paper
  comparison table, the per-instance latencies and the errors.
- PNG plots (see :mod:`iopopt.report.plots`): latency relative to the
  reference per instance, greedy's gap, peak memory per device against its
  capacity, solver time, plan diagrams and timelines.

``iopopt-report DIR`` rebuilds them; the sweep callback calls it when a
multirun ends.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from ..results.io import display_path, write_text_atomic
from ..results.records import INSTANCES_FILE, RESULT_FILE
from .constants import BASELINE, GREEDY, OPTIMAL_RTOL, PAIRS, PAPER_SOURCE, REFERENCE, TEXT_WIDTH
from .cooperation import cooperation_notes
from .load import job_folders, load_records
from .markdown import summary_markdown, text_tables
from .paper import paper_counts, paper_latency_table, paper_notes, paper_table
from .stats import _gap_percent, gap_stats, solver_stats, summary_frame
from .validate import expected_jobs

log = logging.getLogger("iopopt")


def build_report(
    root: str | Path,
    plots: bool = True,
    max_timelines: int = 24,
    reference: str = REFERENCE,
    baseline: str = BASELINE,
    echo: bool = False,
    max_plans: int = 24,
) -> list[Path]:
    """Write ``summary.csv``, ``summary.md`` and plots into ``root``; returns the written paths.

    With ``plots``, the plots of an earlier build that the data no longer
    supports are removed first, so the folder holds exactly this build's
    report. With ``echo``, print the per-solver table, the gap statistics and
    the paper comparison to stdout.
    """
    root = Path(root)
    records = load_records(root)
    if not records:
        raise FileNotFoundError(f"no {RESULT_FILE} or {INSTANCES_FILE} below {root}")
    df = summary_frame(records, reference, baseline)
    note = missing_jobs_note(root, records)
    if note:
        log.warning("%s", note)
    written = []
    csv = root / "summary.csv"
    write_text_atomic(csv, df.to_csv(index=False))
    written.append(csv)
    plot_paths: list[Path] = []
    if plots:
        from .plots import write_plots

        _remove_old_plots(root)
        plot_paths = write_plots(df, records, root, max_timelines=max_timelines, max_plans=max_plans,
                                 reference=reference)
    md = root / "summary.md"
    write_text_atomic(md, summary_markdown(df, root, plot_paths, reference, baseline, note))
    written += [md] + plot_paths
    if echo:
        _echo(df, root, reference, baseline)
    return written


def missing_jobs_note(root: Path, records: list[dict]) -> str:
    """``"k of n jobs of the sweep have no usable record"`` when the sweep's ``multirun.yaml`` expects more; else ""."""
    expected = expected_jobs(root)
    if expected is None:
        return ""
    found = len(job_folders(records))
    if found >= expected:
        return ""
    return (f"{expected - found} of the sweep's {expected} jobs have no usable record (not run yet, still "
            f"running, failed before writing, or skipped above); this report covers {found}")


def _remove_old_plots(root: Path) -> None:
    """Delete the PNGs an earlier build wrote (named plots at the top, everything in the plot folders)."""
    from .plots import PLOT_DIRS, PLOT_FILES

    for name in PLOT_FILES:
        (root / name).unlink(missing_ok=True)
    for folder in PLOT_DIRS:
        for png in (root / folder).glob("*.png"):
            png.unlink()


def _say(text: str) -> None:
    """Print prose wrapped to :data:`TEXT_WIDTH` (continuation lines indented)."""
    import textwrap

    print(textwrap.fill(text, TEXT_WIDTH, subsequent_indent="  ", break_on_hyphens=False))


def _echo(df: pd.DataFrame, root: Path, reference: str, baseline: str) -> None:
    print(f"\n== {len(df)} records in {display_path(root)} ({int(df['termination'].eq('error').sum())} errors) ==")
    stats = solver_stats(df)
    if not stats.empty:
        print(text_tables(stats[["solver", "jobs", "errors", "ratio_to_ref (geo)", "ratio_to_lb (geo)",
                                 "speedup_vs_base (geo)", "solver_time_s (mean)"]], keep=1))
    below = False
    for ref_name in dict.fromkeys((reference, PAIRS)):
        ref = df[df["solver"].eq(ref_name)]
        if len(ref):
            n_opt = int(ref["termination"].eq("optimal").sum())
            stats = gap_stats(df, ref_name, exclude=[reference])
            below |= bool(stats["below_ref"].sum())
            _say(f"{ref_name} proven optimal on {n_opt} of {len(ref)} instances; relative gap to it "
                 f"(share_optimal: |gap| <= {OPTIMAL_RTOL:g}):")
            print(text_tables(_gap_percent(stats), keep=1))
            if ref_name == reference:
                for note in cooperation_notes(df, ref_name):
                    _say(note)
    if below:
        _say("below reference: faster than the reference, which is optimal only over its own decision space "
             "(e.g. single is not in ilp_pairs' space; see summary.md).")
        print()
    paper = paper_table(df, baseline)
    if not paper.empty:
        _say("Paper comparison: latency (ms) per solver (our cost model, assumed device/network numbers)")
        print(text_tables(paper_latency_table(df, baseline), keep=_n_ident(paper)))
        _say(f"{GREEDY} latency vs {baseline}: how much lower (↓) {GREEDY}'s latency and peak memory are than "
             f"{baseline}'s (our cost model), and whether that is within the range of {PAPER_SOURCE}: "
             "6.39%–16.83% lower latency, 21.22%–49.98% lower peak memory.")
        print(text_tables(paper, keep=_n_ident(paper)))
        _say(paper_counts(paper, baseline))
        for note in paper_notes(paper, baseline):
            _say(note)
        print()


def _n_ident(paper: pd.DataFrame) -> int:
    return sum(1 for c in paper.columns if c in ("model", "cluster", "network", "split"))


def written_line(root: str | Path, written: list[Path]) -> str:
    """One line listing what :func:`build_report` wrote: files by name, plot folders with their counts."""
    from .plots import PLOT_DIRS

    root = Path(root)
    names: list[str] = []
    folders = dict.fromkeys(PLOT_DIRS, 0)
    for p in written:
        rel = Path(p).relative_to(root) if Path(p).is_relative_to(root) else Path(p)
        if rel.parts[:1] and rel.parts[0] in folders and len(rel.parts) > 1:
            folders[rel.parts[0]] += 1
        else:
            names.append(str(rel))
    names += [f"{f}/ ({n} plot{'s' if n != 1 else ''})" for f, n in folders.items() if n]
    return f"report in {display_path(root)}/: {', '.join(names)}"
