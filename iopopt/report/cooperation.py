"""Where cooperation pays: the gap of greedy_iop beside the baselines, per cluster and network.

greedy_iop starts from coedge's split plan and only ever adds IOP pairs; it
never falls back to running the model on one device. Where the links are too
slow for any split to pay, the optimum (``ilp``) is the single-device plan,
and greedy_iop's gap to it is the cost of splitting at all, not of its
pairing. This module measures that per cluster and network (instances where
the reference is proven optimal) and says it in a sentence.
"""

from __future__ import annotations

import math

import pandas as pd

from .constants import BASELINE, GREEDY, OPTIMAL_RTOL

__all__ = ["cooperation_table", "cooperation_notes", "percent_table"]

SINGLE = "single"
#: Cooperation does not pay on a network where one device alone is optimal on at least this share of instances,
_NEVER = 0.9
#: and pays where it is on at most this share.
_ALWAYS = 0.1


def _latencies(df: pd.DataFrame, reference: str) -> pd.DataFrame | None:
    """One row per instance where ``reference`` is proven optimal: the latency of each solver present."""
    ok = df[df["termination"].ne("error") & df["latency_s"].notna()]
    ref = ok[ok["solver"].eq(reference) & ok["termination"].eq("optimal")]
    if ref.empty or not ok["solver"].isin([SINGLE]).any() or not ok["solver"].isin([GREEDY]).any():
        return None
    wide = ok[ok["instance"].isin(ref["instance"])].pivot_table(index="instance", columns="solver",
                                                                 values="latency_s", aggfunc="first")
    ident = ok.groupby("instance")[["cluster", "network"]].first()
    return wide.join(ident, how="inner")


def cooperation_table(df: pd.DataFrame, reference: str, by: tuple[str, ...] = ("cluster", "network")) -> pd.DataFrame:
    """Per group of ``by``: instances, how often one device alone is optimal, each solver's mean gap.

    Columns: ``instances``; ``single optimal`` (share of instances where
    ``single`` is within 1e-9 of ``reference``: no split pays); ``gap single``,
    ``gap coedge``, ``gap greedy_iop`` (mean relative gap to ``reference``, as
    in :func:`~iopopt.report.stats.gap_stats`, negative gaps counted as 0).
    Empty when the records lack ``single``, ``greedy_iop`` or a proven reference.
    """
    wide = _latencies(df, reference)
    if wide is None:
        return pd.DataFrame()
    rows = []
    for key, g in wide.groupby(list(by), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key))
        row["instances"] = len(g)
        alone = g[SINGLE] <= g[reference] * (1 + OPTIMAL_RTOL)
        row["single optimal"] = float(alone.mean())
        for s in (SINGLE, BASELINE, GREEDY):
            if s in g:
                row[f"gap {s}"] = float((g[s] / g[reference] - 1.0).clip(lower=0).mean())
        gaps = (g[GREEDY] / g[reference] - 1.0).clip(lower=0)
        # greedy's gap where one device alone is optimal, and where a split is (NaN when there is none)
        row[f"gap {GREEDY}, single optimal"] = float(gaps[alone].mean()) if alone.any() else math.nan
        row[f"gap {GREEDY}, split optimal"] = float(gaps[~alone].mean()) if (~alone).any() else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def percent_table(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`cooperation_table` with shares and gaps as percentage strings, for reading."""
    out = table.copy()
    for c in out.columns:
        if c == "single optimal" or c.startswith("gap "):
            out[c] = out[c].map(_pct)
    return out


def _pct(v: float) -> str:
    return f"{v * 100:,.1f}%"


def cooperation_notes(df: pd.DataFrame, reference: str) -> list[str]:
    """Sentences saying on which networks cooperation does not pay and what that does to greedy_iop's gap.

    A network where one device alone is optimal on at least 90% of the
    instances is one where cooperation does not pay; on at most 10% it pays;
    in between, greedy_iop's gap is given apart for the two kinds of instance.
    """
    by_net = cooperation_table(df, reference, by=("network",))
    if by_net.empty or f"gap {GREEDY}" not in by_net:
        return []
    share = by_net["single optimal"]
    notes = []
    no = by_net[share >= _NEVER]
    if len(no):
        parts = [f"{r['network']} (one device alone optimal on {_pct(r['single optimal'])} of {r['instances']} "
                 f"instances; {GREEDY} {_pct(r[f'gap {GREEDY}'])} above {reference} on average"
                 + (f", {BASELINE} {_pct(r[f'gap {BASELINE}'])}" if f"gap {BASELINE}" in r else "") + ")"
                 for _, r in no.iterrows()]
        notes.append(
            f"Cooperation does not pay on {'; '.join(parts)}: there every split costs more in communication than "
            f"it saves, and {GREEDY}, which starts from {BASELINE}'s split plan and only adds IOP pairs, never "
            "falls back to one device; its gap there is the cost of splitting at all, not of its pairing."
        )
    for _, r in by_net[(share > _ALWAYS) & (share < _NEVER)].iterrows():
        notes.append(
            f"On {r['network']} one device alone is optimal on {_pct(r['single optimal'])} of {r['instances']} "
            f"instances: {GREEDY} is {_pct(r[f'gap {GREEDY}, single optimal'])} above {reference} on those and "
            f"{_pct(r[f'gap {GREEDY}, split optimal'])} on the others."
        )
    pays = by_net[share <= _ALWAYS]
    if len(pays):
        parts = [f"{r['network']}: {_pct(r[f'gap {GREEDY}'])} (one device alone optimal on "
                 f"{_pct(r['single optimal'])})" for _, r in pays.iterrows()]
        notes.append(f"Where cooperation pays, {GREEDY}'s mean gap to {reference} is {'; '.join(parts)}.")
    return notes
