"""Per-solver statistics and gaps to the reference, paired by instance."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

import pandas as pd

from .constants import _COLUMNS, BASELINE, GREEDY, OPTIMAL_RTOL, REFERENCE, SOLVER_ORDER

log = logging.getLogger("iopopt")


def _solver_key(name: str) -> tuple:
    return (SOLVER_ORDER.index(name), "") if name in SOLVER_ORDER else (len(SOLVER_ORDER), str(name))


def summary_frame(records: Iterable[dict], reference: str = REFERENCE, baseline: str = BASELINE) -> pd.DataFrame:
    """One row per record with the pairing columns (see the module docstring)."""
    rows = []
    for rec in records:
        row = {c: rec.get(c) for c in _COLUMNS}
        ver = rec.get("verify") or {}
        row["verify_passed"] = ver.get("passed")
        row["verify_max_abs_err"] = ver.get("max_abs_err")
        # a plan over some device's memory: `memory_fits: false` (records of iopopt 0.1: termination memory_exceeded)
        row["over_memory"] = rec.get("memory_fits") is False or rec.get("termination") == "memory_exceeded"
        if not row["instance"]:
            row["instance"] = f"{row['model']}|{row['cluster']}|{row['network']}"
        rows.append(row)
    df = pd.DataFrame(rows, columns=list(_COLUMNS))
    for c in ("latency_s", "peak_memory_bytes", "lower_bound_s", "solver_time_s", "bandwidth_bytes_per_s"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    ok = df["termination"].ne("error") & df["latency_s"].notna()

    def first(solver: str, column: str) -> pd.Series:
        sel = df[ok & df["solver"].eq(solver)]
        return sel.groupby("instance")[column].first()

    ref_lat = df["instance"].map(first(reference, "latency_s"))
    ref_term = df["instance"].map(df[df["solver"].eq(reference)].groupby("instance")["termination"].first())
    base_lat = df["instance"].map(first(baseline, "latency_s"))
    base_mem = df["instance"].map(first(baseline, "peak_memory_bytes"))
    lat = df["latency_s"].where(ok)
    df["ref_latency_s"] = ref_lat
    df["ref_optimal"] = ref_term.eq("optimal")
    df["ratio_to_ref"] = lat / ref_lat
    df["gap_vs_ref"] = df["ratio_to_ref"] - 1.0
    df["ratio_to_lb"] = lat / df["lower_bound_s"]
    df["speedup_vs_base"] = base_lat / lat
    df["latency_reduction_vs_base"] = 1.0 - lat / base_lat
    df["peak_memory_reduction_vs_base"] = 1.0 - df["peak_memory_bytes"].where(ok) / base_mem
    df["_order"] = df["solver"].map(_solver_key)
    df = df.sort_values(["model", "cluster", "network", "instance", "_order", "source"], kind="stable")
    return df.drop(columns="_order").reset_index(drop=True)


def gap_stats(df: pd.DataFrame, reference: str = REFERENCE, exclude: Iterable[str] = ()) -> pd.DataFrame:
    """Per solver: its relative gap to ``reference`` on the instances where ``reference`` is proven optimal.

    Columns: ``instances`` (paired instances), ``mean``, ``median``, ``p95``,
    ``max`` (relative gaps, (latency − reference) / reference, negative ones
    counted as 0; solvers in ``exclude`` are left out), ``share_optimal``
    (share with abs(gap) ≤ :data:`OPTIMAL_RTOL`: equal to the reference) and
    ``below_ref`` (count with gap < −:data:`OPTIMAL_RTOL`: faster than the
    reference, which is optimal only over its own decision space; see
    :data:`BELOW_REF_NOTE`).
    """
    ok = df[df["termination"].ne("error") & df["latency_s"].notna()]
    proven = ok[ok["solver"].eq(reference) & ok["termination"].eq("optimal")]
    ref = proven.groupby("instance")["latency_s"].first()
    sel = ok[~ok["solver"].isin({reference, *exclude}) & ok["instance"].isin(ref.index)]
    rel = sel["latency_s"] / sel["instance"].map(ref) - 1.0
    rows = []
    for solver, g in rel.groupby(sel["solver"], sort=False):
        gaps = g.clip(lower=0.0)
        rows.append(
            {
                "solver": solver,
                "instances": len(gaps),
                "mean": gaps.mean(),
                "median": gaps.median(),
                "p95": gaps.quantile(0.95),
                "max": gaps.max(),
                "share_optimal": float((g.abs() <= OPTIMAL_RTOL).mean()),
                "below_ref": int((g < -OPTIMAL_RTOL).sum()),
            }
        )
    columns = ["solver", "instances", "mean", "median", "p95", "max", "share_optimal", "below_ref"]
    out = pd.DataFrame(rows, columns=columns)
    return out.sort_values("solver", key=lambda s: s.map(_solver_key)).reset_index(drop=True)


def gap_breakdown(df: pd.DataFrame, reference: str = REFERENCE, solver: str = GREEDY,
                  by: tuple[str, ...] = ("cluster", "network")) -> pd.DataFrame:
    """:func:`gap_stats` of ``solver`` to ``reference`` per group of ``by`` (e.g. per cluster and network)."""
    rows = []
    for key, g in df.groupby(list(by), sort=True):
        stats = gap_stats(g, reference)
        stats = stats[stats["solver"].eq(solver)]
        if len(stats):
            rows.append(dict(zip(by, key if isinstance(key, tuple) else (key,)), **stats.iloc[0].drop("solver")))
    return pd.DataFrame(rows)


def _gap_percent(stats: pd.DataFrame) -> pd.DataFrame:
    """``gap_stats`` with the gaps and the share as percentage strings, for reading."""
    out = stats.copy()
    if out.empty or "mean" not in out:
        return out
    for c in ("mean", "median", "p95", "max"):
        out[c] = out[c].map(lambda v: f"{v * 100:,.2f}%")
    out["share_optimal"] = out["share_optimal"].map(lambda v: f"{v * 100:.1f}%")
    names = {c: f"gap {c}" for c in ("mean", "median", "p95", "max")}
    return out.rename(columns=dict(names, below_ref="below reference"))


def solver_stats(df: pd.DataFrame) -> pd.DataFrame:
    """Per solver: jobs, errors, terminations and mean ratios (geometric means for ratios)."""
    rows = []
    for solver, g in df.groupby("solver", sort=False):
        ok = g[g["latency_s"].notna() & g["termination"].ne("error")]

        def geo(col: str, ok: pd.DataFrame = ok) -> float:
            v = ok[col].dropna()
            v = v[v > 0]
            return float(math.exp(sum(math.log(x) for x in v) / len(v))) if len(v) else math.nan

        rows.append(
            {
                "solver": solver,
                "jobs": len(g),
                "errors": int(g["termination"].eq("error").sum()),
                "terminations": ", ".join(f"{k} {v}" for k, v in g["termination"].value_counts().items()),
                "ratio_to_ref (geo)": geo("ratio_to_ref"),
                "ratio_to_ref (max)": ok["ratio_to_ref"].max(),
                "ratio_to_lb (geo)": geo("ratio_to_lb"),
                "speedup_vs_base (geo)": geo("speedup_vs_base"),
                "peak_mem_reduction_vs_base (mean)": ok["peak_memory_reduction_vs_base"].mean(),
                "solver_time_s (mean)": ok["solver_time_s"].mean(),
                "solver_time_s (max)": ok["solver_time_s"].max(),
            }
        )
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    return out.sort_values("solver", key=lambda s: s.map(_solver_key)).reset_index(drop=True)


def _identity(df: pd.DataFrame, columns: tuple[str, ...]) -> list[str]:
    """``columns`` plus ``split`` when the records mix split policies (otherwise rows would look alike)."""
    return list(columns) + (["split"] if df["split"].nunique() > 1 else [])
