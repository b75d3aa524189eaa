"""The paper comparison table: greedy IOP against CoEdge beside the paper's reported ranges."""

from __future__ import annotations

import logging
import math

import pandas as pd

from .constants import (
    BASELINE,
    COOPERATIVE,
    GREEDY,
    OPTIMAL_RTOL,
    PAIRS,
    PAPER_LATENCY,
    PAPER_LATENCY_RANGE,
    PAPER_MEMORY,
    PAPER_MEMORY_RANGE,
    PAPER_MODELS,
)
from .stats import _identity, _solver_key

log = logging.getLogger("iopopt")


def _paper_groups(df: pd.DataFrame, baseline: str, greedy: str):
    """``(identity row, {solver: record})`` per instance of a paper model solved by both ``baseline`` and ``greedy``."""
    df = df[df["model"].isin(PAPER_MODELS)]
    if df.empty or not (df["solver"].eq(baseline).any() and df["solver"].eq(greedy).any()):
        return df, []
    keys = _identity(df, ("model", "k", "cluster", "network"))
    out = []
    for _, g in df.groupby("instance", sort=False):
        by = {s: r for s, r in zip(g["solver"], g.itertuples(index=False))}
        if baseline in by and greedy in by:
            out.append(({c: g.iloc[0][c] for c in keys}, by))
    out.sort(key=lambda t: tuple(_sortable(t[0][c]) for c in keys))
    return df, out


def _sortable(v):
    return (1, 0, "") if v is None or (isinstance(v, float) and math.isnan(v)) else (
        (0, v, "") if isinstance(v, (int, float)) else (0, 0, str(v)))


def _latency(r) -> float | None:
    lat = getattr(r, "latency_s", None)
    return None if r.termination == "error" or lat is None or pd.isna(lat) else float(lat)


def paper_latency_table(df: pd.DataFrame, baseline: str = BASELINE, greedy: str = GREEDY) -> pd.DataFrame:
    """Latency (ms) of every solver per instance of :func:`paper_table` (``*``: exceeds a device's memory)."""
    df, groups = _paper_groups(df, baseline, greedy)
    solvers = sorted(df["solver"].dropna().unique(), key=_solver_key)
    rows = []
    for ident, by in groups:
        row = {c: v for c, v in ident.items() if c != "k"}
        for s in solvers:
            r = by.get(s)
            lat = None if r is None else _latency(r)
            if r is None:
                row[s] = ""
            elif lat is None:
                row[s] = "error" if r.termination == "error" else r.termination
            else:
                row[s] = f"{lat * 1e3:.1f}" + ("*" if r.over_memory else "")
        rows.append(row)
    return pd.DataFrame(rows)


def _in_range(v, lo_hi) -> str:
    if v is None or pd.isna(v):
        return ""
    v = round(float(v), 4)  # as shown, to two decimals in percent
    return "within" if lo_hi[0] <= v <= lo_hi[1] else ("below" if v < lo_hi[0] else "above")


def paper_table(df: pd.DataFrame, baseline: str = BASELINE, greedy: str = GREEDY) -> pd.DataFrame:
    """Greedy's latency and peak-memory reduction vs the baseline per instance, beside the paper's ranges.

    One row per instance of a paper model (:data:`PAPER_MODELS`) solved by both
    ``baseline`` and ``greedy``; empty when the records have no such instance.
    Columns: the instance's model, cluster and network; ``latency ↓`` and
    ``peak mem ↓`` (greedy's reduction vs the baseline, negative = greedy is
    worse), each followed by whether it lies ``within``, ``below`` or
    ``above`` the paper's reported range (:data:`PAPER_LATENCY_RANGE`,
    :data:`PAPER_MEMORY_RANGE`); ``note``: ``single fastest`` when one device
    alone beats every cooperative plan in the row (:data:`COOPERATIVE`), else
    ``no pair pays`` when greedy, the baseline and ``ilp_pairs`` (the optimum of
    greedy's decision space) have the same latency.
    """
    df, groups = _paper_groups(df, baseline, greedy)
    rows = []
    for ident, by in groups:
        row = {c: v for c, v in ident.items() if c != "k"}
        gr = by[greedy]
        lat_red, mem_red = gr.latency_reduction_vs_base, gr.peak_memory_reduction_vs_base
        row["latency ↓"] = _pct(lat_red)
        row[f"paper {PAPER_LATENCY}"] = _in_range(lat_red, PAPER_LATENCY_RANGE)
        row["peak mem ↓"] = _pct(mem_red)
        row[f"paper {PAPER_MEMORY}"] = _in_range(mem_red, PAPER_MEMORY_RANGE)
        lats = {s: _latency(r) for s, r in by.items()}
        coop = [v for s, v in lats.items() if s in COOPERATIVE and v is not None]
        same = [lats.get(s) for s in (greedy, baseline, PAIRS)]
        if lats.get("single") is not None and coop and lats["single"] < min(coop) * (1 - OPTIMAL_RTOL):
            row["note"] = "single fastest"
        elif all(v is not None for v in same) and max(same) - min(same) <= OPTIMAL_RTOL * max(same):
            row["note"] = "no pair pays"
        else:
            row["note"] = ""
        rows.append(row)
    return pd.DataFrame(rows)


def paper_counts(paper: pd.DataFrame, baseline: str = BASELINE) -> str:
    """``latency within the paper's range on X of N rows; memory on Y of N`` for a :func:`paper_table`."""
    n = len(paper)
    lat = int(paper[f"paper {PAPER_LATENCY}"].eq("within").sum())
    mem = int(paper[f"paper {PAPER_MEMORY}"].eq("within").sum())
    return f"latency within the paper's range on {lat} of {n} rows; memory on {mem} of {n}"


def paper_notes(paper: pd.DataFrame, baseline: str = BASELINE, greedy: str = GREEDY) -> list[str]:
    """Explanations of the notes that occur in a :func:`paper_table`."""
    notes = set(paper["note"]) if "note" in paper else set()
    out = []
    if "single fastest" in notes:
        out.append(f"single fastest: one device alone is faster than every cooperative plan "
                   f"({', '.join(COOPERATIVE)}): here their communication costs more than splitting the layers saves")
    if "no pair pays" in notes:
        out.append(f"no pair pays: {greedy} = {baseline} = {PAIRS} (the optimum of {greedy}'s decision space): "
                   f"no IOP pairing lowers the latency of the {baseline} plan here")
    return out


def _pct(v) -> str:
    return "" if v is None or pd.isna(v) else f"{v * 100:.2f}%"
