"""Tables as markdown and as terminal text, and the whole ``summary.md``."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pandas as pd

from .constants import _MAX_INSTANCE_ROWS, BELOW_REF_NOTE, GREEDY, OPTIMAL_RTOL, PAIRS, PAPER_CLAIM, TEXT_WIDTH
from .cooperation import cooperation_notes, cooperation_table, percent_table
from .paper import paper_counts, paper_latency_table, paper_notes, paper_table
from .stats import _gap_percent, _identity, _solver_key, gap_breakdown, gap_stats, solver_stats

log = logging.getLogger("iopopt")


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


def _instance_table(df: pd.DataFrame) -> pd.DataFrame:
    keys = _identity(df, ("model", "cluster", "network")) + ["instance"]
    cell = df.apply(
        lambda r: "error"
        if r["termination"] == "error"
        else (r["termination"] if pd.isna(r["latency_s"]) else f"{r['latency_s'] * 1e3:.3f}")
        + ("*" if r["over_memory"] else "")
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


def summary_markdown(df: pd.DataFrame, root: Path, plots: list[Path], reference: str, baseline: str,
                     note: str = "") -> str:
    """The text of ``summary.md`` (``note``: a warning shown under the title, e.g. missing jobs)."""
    terms = ", ".join(f"{k}: {v}" for k, v in df["termination"].value_counts().items())
    out = [
        f"# Sweep summary: `{Path(root).resolve().name}`\n",
        f"{len(df)} records on {df['instance'].nunique()} instances; terminations: {terms}. "
        f"Reference solver `{reference}`, baseline `{baseline}`. Latencies in ms; `*` = plan exceeds a device's "
        "memory (`memory_fits: false`), `(t)` = stopped by the time limit. All figures come from iopopt's cost "
        "model with the assumed device and network numbers of the presets.\n",
        *([f"**Incomplete sweep:** {note}.\n"] if note else []),
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
        coop = cooperation_table(df, ref_name) if ref_name == reference else pd.DataFrame()
        if not coop.empty:
            out += ["### Where cooperation pays\n",
                    f"Per cluster and network: the share of instances where one device alone (`single`) is "
                    f"optimal, the mean gap of `single`, `coedge` and `{GREEDY}` to `{ref_name}`, and "
                    f"`{GREEDY}`'s mean gap on the instances where one device alone is optimal and on the others.\n",
                    markdown_table(percent_table(coop))]
            out += [f"{note}\n" for note in cooperation_notes(df, ref_name)]
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
