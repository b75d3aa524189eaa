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
- PNG plots (see :mod:`iopopt.plots`).

``iopopt-report DIR`` rebuilds them; the sweep callback calls it when a
multirun ends.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Iterable

import pandas as pd

from .results import INSTANCES_FILE, RESULT_FILE, display_path, write_text_atomic

__all__ = [
    "load_records",
    "summary_frame",
    "gap_stats",
    "paper_table",
    "paper_latency_table",
    "summary_markdown",
    "build_report",
    "written_line",
    "main",
]

log = logging.getLogger("iopopt")

REFERENCE = "ilp"
BASELINE = "coedge"
GREEDY = "greedy_iop"
#: The exact optimum of the greedy's decision space (base plan + disjoint IOP pairs).
PAIRS = "ilp_pairs"
#: A solver is "optimal" on an instance when its latency is within this relative tolerance of the reference's.
OPTIMAL_RTOL = 1e-9
#: The models the paper evaluates; the paper table lists only these.
PAPER_MODELS = ("alexnet", "vgg16", "resnet18")
#: Who reported the paper's figures; every place that shows them says so.
PAPER_SOURCE = "Liu et al. 2024 (paper's figures)"
#: The paper's reported reductions vs CoEdge (fractions): latency and peak memory, lowest and highest.
PAPER_LATENCY_RANGE = (0.0639, 0.1683)
PAPER_MEMORY_RANGE = (0.2122, 0.4998)
PAPER_LATENCY = "6.39–16.83%"
PAPER_MEMORY = "21.22–49.98%"
#: The reported figures of the paper, shown beside ours and labelled as the paper's.
PAPER_CLAIM = (
    f"{PAPER_SOURCE}: 6.39%–16.83% lower latency and 21.22%–49.98% lower peak memory vs CoEdge "
    "(their testbed, not our cost model)"
)
#: What a latency below the reference means (summary.md and the terminal).
BELOW_REF_NOTE = (
    "A reference is optimal only over its own decision space, so a solver whose plan lies outside that space "
    "can beat it: `ilp_pairs` searches the base plan plus disjoint IOP pairs, so `single` (everything on one "
    "device), `oc` or `ilp` plans are not in its space and may be faster. `ilp` searches every strategy of "
    "every node within each device's memory, so only a plan that exceeds a device's memory (`*`) should beat it."
)
#: Solvers whose plans split the layers across the devices (for the "single fastest" note).
COOPERATIVE = ("coedge", "oc", "greedy_iop", "ilp_pairs")
#: Terminal tables are kept at most this wide (wider ones are split by columns).
TEXT_WIDTH = 120
#: Solvers in this order first in tables; others follow alphabetically.
SOLVER_ORDER = ("single", "coedge", "oc", "best_uniform", "random", "greedy_iop", "ilp_pairs", "ilp", "dp", "brute")
_MAX_INSTANCE_ROWS = 60
_COLUMNS = (
    "instance", "model", "cluster", "network", "solver", "termination", "latency_s", "compute_s", "comm_s",
    "bytes_sent", "messages", "peak_memory_bytes", "lower_bound_s", "solver_time_s", "objective", "bound", "gap",
    "k", "split", "network_kind", "bandwidth_bytes_per_s", "n_nodes", "total_flops", "study", "verify_passed",
    "verify_max_abs_err", "error", "source",
)


# -- loading and pairing -----------------------------------------------------------------


def _read_json(path: Path) -> dict | None:
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("skipping unreadable %s: %s", path, exc)
        return None
    return rec if isinstance(rec, dict) else None


def _natural(path: Path) -> tuple:
    """Sort key putting job 10 after job 9."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in path.parts)


def load_records(root: str | Path) -> list[dict]:
    """Every record below ``root``: each job's ``result.json``, or its ``instances.jsonl`` lines for study jobs.

    Each record gets ``source``: its file relative to ``root`` (plus ``:line`` for JSON lines).
    """
    root = Path(root)
    records: list[dict] = []
    study_dirs = set()
    for path in sorted(root.rglob(INSTANCES_FILE), key=_natural):
        study_dirs.add(path.parent)
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                log.warning("skipping a bad line %s:%d", path, i)
                continue
            rec["source"] = f"{path.relative_to(root)}:{i}"
            records.append(rec)
    for path in sorted(root.rglob(RESULT_FILE), key=_natural):
        rec = _read_json(path)
        if rec is None or path.parent in study_dirs or rec.get("instances_file"):
            continue  # a study job's result.json only summarises its instances.jsonl
        rec["source"] = str(path.relative_to(root))
        records.append(rec)
    return records


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

        def geo(col: str) -> float:
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
                row[s] = f"{lat * 1e3:.1f}" + ("*" if r.termination == "memory_exceeded" else "")
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


# -- markdown ---------------------------------------------------------------------------


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        if v == 0:
            return "0"
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table of ``df`` (no extra dependency)."""
    if df.empty:
        return "_(none)_\n"
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def text_table(df: pd.DataFrame) -> str:
    """A plain aligned text table for the terminal."""
    if df.empty:
        return "(none)\n"
    cells = [[str(c) for c in df.columns]] + [[_fmt(v) for v in row] for row in df.itertuples(index=False)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def text_tables(df: pd.DataFrame, keep: int = 0, width: int = TEXT_WIDTH) -> str:
    """:func:`text_table`, split by columns into several tables when wider than ``width``.

    The first ``keep`` columns (the row's identity) are repeated in every part.
    """
    if df.empty or len(df.columns) <= keep + 1:
        return text_table(df)

    def col_width(c) -> int:
        return max([len(str(c))] + [len(_fmt(v)) for v in df[c]])

    ident = list(df.columns[:keep])
    base = sum(col_width(c) + 2 for c in ident)
    parts, current, used = [], [], base
    for c in df.columns[keep:]:
        w = col_width(c) + 2
        if current and used + w - 2 > width:
            parts.append(current)
            current, used = [], base
        current.append(c)
        used += w
    parts.append(current)
    return "\n".join(text_table(df[ident + cols]) for cols in parts)


def _identity(df: pd.DataFrame, columns: tuple[str, ...]) -> list[str]:
    """``columns`` plus ``split`` when the records mix split policies (otherwise rows would look alike)."""
    return list(columns) + (["split"] if df["split"].nunique() > 1 else [])


def _instance_table(df: pd.DataFrame) -> pd.DataFrame:
    keys = _identity(df, ("model", "cluster", "network")) + ["instance"]
    cell = df.apply(
        lambda r: "error"
        if r["termination"] == "error"
        else (r["termination"] if pd.isna(r["latency_s"]) else f"{r['latency_s'] * 1e3:.3f}")
        + ("*" if r["termination"] == "memory_exceeded" else "")
        + (" (t)" if r["termination"] == "time_limit" else ""),
        axis=1,
    )
    t = df.assign(cell=cell).pivot_table(
        index=keys, columns="solver", values="cell", aggfunc="first"
    )
    t = t[sorted(t.columns, key=_solver_key)].fillna("")
    lb = df.groupby(keys)["lower_bound_s"].first() * 1e3
    t.insert(0, "lower bound", lb.map(lambda v: f"{v:.3f}" if pd.notna(v) else ""))
    return t.reset_index().drop(columns="instance")


def summary_markdown(df: pd.DataFrame, root: Path, plots: list[Path], reference: str, baseline: str) -> str:
    """The text of ``summary.md``."""
    terms = ", ".join(f"{k}: {v}" for k, v in df["termination"].value_counts().items())
    out = [
        f"# Sweep summary: `{root}`\n",
        f"{len(df)} records on {df['instance'].nunique()} instances; terminations: {terms}. "
        f"Reference solver `{reference}`, baseline `{baseline}`. Latencies in ms; `*` = plan exceeds a device's "
        "memory (`memory_exceeded`), `(t)` = stopped by the time limit. All figures come from iopopt's cost "
        "model with the assumed device and network numbers of the presets.\n",
        "## Per solver\n",
        "Ratios are geometric means over the instances where both sides have a plan.\n",
        markdown_table(solver_stats(df)),
    ]
    sections = ((reference, "the reference"), (PAIRS, "the greedy's own decision space: its algorithmic gap"))
    for ref_name, what in sections:
        ref = df[df["solver"].eq(ref_name)]
        if not len(ref) or (ref_name == PAIRS and ref_name == reference):
            continue
        n_opt = int(ref["termination"].eq("optimal").sum())
        out += [
            f"## Gap to `{ref_name}` ({what})\n",
            f"`{ref_name}` proven optimal on **{n_opt} of {len(ref)}** instances "
            f"({', '.join(f'{k}: {v}' for k, v in ref['termination'].value_counts().items())}). "
            "Gaps are relative, (latency − reference) / reference, over the proven instances only (the "
            f"statistics count a negative gap as 0); `share_optimal` = share with |gap| ≤ {OPTIMAL_RTOL:g} "
            f"(equal to the reference); `below reference` = number of instances more than {OPTIMAL_RTOL:g} "
            f"below it. {BELOW_REF_NOTE}\n",
            markdown_table(_gap_percent(gap_stats(df, ref_name, exclude=[reference]))),
        ]
        groups = df.groupby(["cluster", "network"]).ngroups
        if groups > 1 and df["solver"].eq(GREEDY).any():
            out += [f"`{GREEDY}` per cluster and network:\n",
                    markdown_table(_gap_percent(gap_breakdown(df, ref_name)))]
    paper = paper_table(df, baseline)
    if not paper.empty:
        out += [
            "## Paper comparison\n",
            "Latency (ms) per solver, from our cost model with the presets' assumed numbers:\n",
            markdown_table(paper_latency_table(df, baseline)),
            f"`{GREEDY}` vs `{baseline}`: how much lower (↓) `{GREEDY}`'s latency and peak memory are than "
            f"`{baseline}`'s (our cost model), and whether that lies within, below or above the range reported by "
            f"**{PAPER_CLAIM}**.\n",
            markdown_table(paper),
            f"{paper_counts(paper, baseline)}.\n",
        ]
        out += [f"- {note}\n" for note in paper_notes(paper, baseline)]
    out.append("## Per instance\n")
    if df["instance"].nunique() <= _MAX_INSTANCE_ROWS:
        out.append(markdown_table(_instance_table(df)))
    else:
        out.append(f"{df['instance'].nunique()} instances: see `summary.csv`.\n")
    errors = df[df["termination"].eq("error")]
    out.append(f"## Errors ({len(errors)})\n")
    if len(errors):
        out.append(markdown_table(errors[["model", "cluster", "network", "solver", "error", "source"]]))
    if plots:
        out.append("## Plots\n")
        out.append("\n".join(f"- [{p.relative_to(root)}]({p.relative_to(root)})" for p in plots) + "\n")
    return "\n".join(out)


# -- entry points -------------------------------------------------------------------------


def build_report(
    root: str | Path,
    plots: bool = True,
    max_timelines: int = 24,
    reference: str = REFERENCE,
    baseline: str = BASELINE,
    echo: bool = False,
) -> list[Path]:
    """Write ``summary.csv``, ``summary.md`` and plots into ``root``; returns the written paths.

    With ``echo``, print the per-solver table, the gap statistics and the
    paper comparison to stdout.
    """
    root = Path(root)
    records = load_records(root)
    if not records:
        raise FileNotFoundError(f"no {RESULT_FILE} or {INSTANCES_FILE} below {root}")
    df = summary_frame(records, reference, baseline)
    written = []
    csv = root / "summary.csv"
    write_text_atomic(csv, df.to_csv(index=False))
    written.append(csv)
    plot_paths: list[Path] = []
    if plots:
        from .plots import write_plots

        plot_paths = write_plots(df, records, root, max_timelines=max_timelines, reference=reference)
    md = root / "summary.md"
    write_text_atomic(md, summary_markdown(df, root, plot_paths, reference, baseline))
    written += [md] + plot_paths
    if echo:
        _echo(df, root, reference, baseline)
    return written


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
    """One line listing what :func:`build_report` wrote: files by name, ``timelines/`` with its count."""
    root = Path(root)
    names, timelines = [], 0
    for p in written:
        rel = Path(p).relative_to(root) if Path(p).is_relative_to(root) else Path(p)
        if rel.parts[:1] == ("timelines",):
            timelines += 1
        else:
            names.append(str(rel))
    if timelines:
        names.append(f"timelines/ ({timelines} plot{'s' if timelines != 1 else ''})")
    return f"report in {display_path(root)}/: {', '.join(names)}"


def main(argv: list[str] | None = None) -> int:
    """``iopopt-report DIR``: rebuild the summary and plots of a sweep (or any directory of results)."""
    parser = argparse.ArgumentParser(prog="iopopt-report", description=main.__doc__)
    parser.add_argument("directory", type=Path, help="a sweep directory (holding multirun.yaml) or any results tree")
    parser.add_argument("--no-plots", action="store_true", help="write only summary.csv and summary.md")
    parser.add_argument("--max-timelines", type=int, default=24, help="at most this many per-plan timeline plots")
    parser.add_argument("--reference", default=REFERENCE, help="solver the others are compared to (default: ilp)")
    parser.add_argument("--baseline", default=BASELINE, help="baseline for speedup and memory (default: coedge)")
    parser.add_argument("-q", "--quiet", action="store_true", help="do not print the tables")
    args = parser.parse_args(argv)
    if not args.directory.is_dir():
        print(f"iopopt-report: error: {args.directory} is not a directory", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        written = build_report(
            args.directory, plots=not args.no_plots, max_timelines=args.max_timelines,
            reference=args.reference, baseline=args.baseline, echo=not args.quiet,
        )
    except FileNotFoundError as exc:
        print(f"iopopt-report: error: {exc}", file=sys.stderr)
        return 2
    print(written_line(args.directory, written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
