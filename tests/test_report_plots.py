"""The plots say what the data says: bar heights, counts in titles, capacity lines, points not lines,
layer names on timelines, IOP pairs and fused stacks in plan diagrams.

Each plot function runs on records written by hand for the test; its figure is caught before it is
saved and read back (bar heights, texts, line positions), and compared with figures computed here
from the same hand-written latencies.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from iopopt.report import plan as plan_mod
from iopopt.report import plan_plot, plot_gap, plot_latency, plot_memory, plots, timeline
from iopopt.report.cooperation import cooperation_notes, cooperation_table
from iopopt.report.stats import summary_frame
from iopopt.results import RESULT_KEYS


@pytest.fixture
def caught(monkeypatch):
    """The figures the plot functions would save, keyed by file name (not closed)."""
    figs: dict[str, object] = {}

    def keep(fig, path: Path, dpi: int = 100) -> Path:
        figs[Path(path).name] = fig
        return Path(path)

    for module in (plots, plot_gap, plot_latency, plot_memory, plan_plot, timeline):
        monkeypatch.setattr(module, "save", keep)
    yield figs
    import matplotlib.pyplot as plt

    plt.close("all")


def _rec(**kw) -> dict:
    base = {k: None for k in RESULT_KEYS}
    base.update(cluster="c2", network="net", lower_bound_s=0.1, k=2, termination="completed")
    base.update(kw)
    return base


def _texts(fig) -> list[str]:
    out = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        out += [t.get_text() for t in ax.texts] + [ax.get_title(), ax.get_title(loc="left")]
    return out


# -- latency relative to the reference -----------------------------------------------------------------


LATENCY = {  # instance -> solver -> latency (s)
    "A": {"ilp": 1.00, "greedy_iop": 1.03, "coedge": 1.10, "single": 3.00},
    "B": {"ilp": 2.00, "greedy_iop": 2.00, "coedge": 2.02, "single": 2.50},
}


def test_latency_bars_are_ratios_to_ilp_with_far_ones_cut_and_labelled(tmp_path, caught):
    recs = [_rec(model="m", instance=i, solver=s, latency_s=v, termination="optimal" if s == "ilp" else "completed")
            for i, by in LATENCY.items() for s, v in by.items()]
    plot_latency.latency_normalised(summary_frame(recs), tmp_path, "ilp")
    fig = caught["latency_normalised.png"]
    (ax,) = [a for a in fig.axes if a.get_title(loc="left") == "m"]
    top = ax.get_ylim()[1]
    from matplotlib.colors import to_hex

    heights: dict[str, list[float]] = {}
    for bar in ax.patches:  # bars start at 1 (the reference); height = ratio - 1, cut at the axis top
        assert bar.get_y() == 1.0
        heights.setdefault(to_hex(bar.get_facecolor()), []).append(round(bar.get_height(), 9))

    def bars(solver):
        return heights[to_hex(plots.solver_color(solver))]

    for solver in ("greedy_iop", "coedge"):
        expected = [round(min(LATENCY[i][solver] / LATENCY[i]["ilp"], top) - 1.0, 9) for i in ("A", "B")]
        assert bars(solver) == expected
    # single is far: cut at the top and labelled with its ratio
    assert top < LATENCY["B"]["single"] / LATENCY["B"]["ilp"]
    labels = _texts(fig)
    assert "×3.0" in labels and "×1.25" in labels
    # greedy_iop equals ilp on B: a dot marks it (a bar of height 0 would be invisible)
    dots = [line for line in ax.lines if line.get_marker() == "o"]
    assert len(dots) == 1 and dots[0].get_xdata()[0] > 0.5  # on the second instance


def test_latency_with_many_instances_shows_distributions(tmp_path, caught):
    recs = []
    for i in range(40):
        recs += [_rec(model=f"m{i}", instance=f"I{i}", solver="ilp", termination="optimal", latency_s=1.0),
                 _rec(model=f"m{i}", instance=f"I{i}", solver="greedy_iop", latency_s=1.0 + (i % 4) * 0.5)]
    plot_latency.latency_normalised(summary_frame(recs), tmp_path, "ilp")
    ax = caught["latency_normalised.png"].axes[0]
    assert ax.get_yscale() == "log"
    (points,) = [c for c in ax.collections if c.__class__.__name__ == "PathCollection"]
    assert len(points.get_offsets()) == 40
    assert "25%" in [t.get_text() for t in ax.texts]  # i % 4 == 0: equal to ilp on a quarter


# -- the gap histogram -------------------------------------------------------------------------------


def test_gap_histogram_counts_agree_with_the_data(tmp_path, caught):
    # 3 instances where greedy equals ilp, 8 a little above it (0.1%..0.8%), 2 far above: an "equal" bar must
    # hold exactly 3, and no bin may mix "equal" with "a little above"
    gaps = [0.0] * 3 + [0.001 * (j + 1) for j in range(8)] + [0.5, 1.2]
    recs = []
    for j, g in enumerate(gaps):
        net = "wifi" if j % 2 else "eth"
        recs += [_rec(model="m", network=net, instance=f"I{j}", solver="ilp", termination="optimal", latency_s=1.0),
                 _rec(model="m", network=net, instance=f"I{j}", solver="greedy_iop", latency_s=1.0 + g)]
    plot_gap.gap_hist(summary_frame(recs), tmp_path, "ilp")
    fig = caught["greedy_gap_hist.png"]
    ax_eq, ax = fig.axes[:2]
    assert sum(p.get_height() for p in ax_eq.patches) == 3
    assert ax_eq.texts[0].get_text() == "3"
    assert round(sum(p.get_height() for p in ax.patches)) == len(gaps) - 3
    title = ax.get_title(loc="left")
    assert f"{len(gaps)} instances: 3 equal to it (left bar), {len(gaps) - 3} above it" in title
    assert "max 120.00%" in title
    assert ax.get_xscale() == "log"  # 0.1% .. 120%: three decades


# -- peak memory and capacities ------------------------------------------------------------------------


def test_peak_memory_draws_capacities_in_range_and_labels_far_ones(tmp_path, caught):
    def dev(name, peak):
        return {"name": name, "weights_bytes": 0, "activation_peak_bytes": peak, "peak_bytes": peak}

    caps = [3e9, 8e6]  # a board far above every bar, an MCU within the axis
    recs = [_rec(model="m", instance="I", solver=s, latency_s=1.0, device_memory_bytes=caps,
                 per_device=[dev("big", p0), dev("mcu", p1)])
            for s, p0, p1 in (("coedge", 20e6, 12e6), ("greedy_iop", 15e6, 6e6))]
    plot_memory.peak_memory(recs, tmp_path)
    fig = caught["peak_memory.png"]
    ax = fig.axes[0]
    lines = [seg for c in ax.collections for seg in c.get_segments()]
    assert len(lines) == 1 and lines[0][0][1] == pytest.approx(8.0)  # the MCU's 8 MB, in MB
    assert lines[0][0][0] > 0.5  # over the second device's group
    assert "▲ 3.0 GB" in [t.get_text() for t in ax.texts]
    assert sorted(round(p.get_height(), 6) for p in ax.patches) == [6.0, 12.0, 15.0, 20.0]


# -- solver time ---------------------------------------------------------------------------------------


def test_solver_time_is_points_with_size_labels(tmp_path, caught):
    recs = [_rec(model=m, instance=m, solver=s, latency_s=1.0, n_nodes=n, solver_time_s=t)
            for m, n in (("small", 10), ("big", 100)) for s, t in (("coedge", 0.001), ("ilp", 0.1))]
    plots._solver_time(summary_frame(recs), tmp_path)
    ax = caught["solver_time.png"].axes[0]
    assert not ax.lines  # no line joins two different models
    assert sum(len(c.get_offsets()) for c in ax.collections) == 4
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["10\nsmall", "100\nbig"]


# -- plans: spans, styles, diagrams, timelines ----------------------------------------------------------


def _op(node, strategy, inputs=(), nbytes=0, kind="conv"):
    return {"node": node, "kind": kind, "strategy": strategy, "comm_s": 0.001 if nbytes else 0.0,
            "compute_s": 0.01, "bytes_sent": nbytes, "messages": 1 if nbytes else 0, "device_compute_s": [0.01, 0.01],
            "comm_devices": [0, 1] if nbytes else [],
            "inputs": [{"src": s, "messages": 1 if nbytes else 0, "bytes": nbytes, "comm_s": 0.0} for s in inputs]}


PER_OP = [
    _op("x", "host", kind="input"),
    _op("a", "oc", ["x"], 100),
    _op("a_relu", "channel", ["a"], kind="act"),
    _op("b", "ic", ["a_relu"]),                 # a → b: a pair through a channel-wise layer
    _op("c", "oc", ["b"], 50),
    _op("d", "host", ["c"], 50),
    _op("e", "ic", ["d"]),                      # c → e broken by a host layer: no pair
    _op("f", "oc", ["e"], 10),
    _op("g", "oc", ["e"], 10),
    _op("h", "channel", ["f", "g"], kind="add"),
    _op("i", "ic", ["h"]),                      # two producers: not a pair
    _op("s1", "rows_fused", ["i"], 5),
    _op("s2", "rows_fused", ["s1"]),
    _op("s3", "rows", ["s2"]),                  # a fused stack s1..s3
    _op("output", "host", ["s3"], 5, kind="output"),
]


def test_spans_find_iop_pairs_and_fused_stacks():
    pairs = plan_mod.iop_pairs(PER_OP)
    assert [(PER_OP[s.first]["node"], PER_OP[s.last]["node"]) for s in pairs] == [("a", "b")]
    assert pairs[0].members == (1, 2, 3)
    stacks = plan_mod.fused_stacks(PER_OP)
    assert [(PER_OP[s.first]["node"], PER_OP[s.last]["node"]) for s in stacks] == [("s1", "s3")]


def test_new_strategy_families_get_a_style():
    assert plan_mod.strategy_style("dev2").short == "D2"
    assert plan_mod.strategy_style("rows_fused").color == plan_mod.strategy_style("rows").color
    plan_mod.register_strategy_style("diag", "#123456", "dg", "diag: split along a diagonal")
    try:
        rec = {"model": "m", "per_op": [_op("x", "host", kind="input"), _op("a", "diag", ["x"], 8)]}
        assert "diag: split along a diagonal" in plan_mod.plan_table(rec)
    finally:
        del plan_mod.STRATEGY_STYLES["diag"]


def test_plan_diagram_marks_pairs_and_stacks_and_draws_every_layer(tmp_path, caught):
    rec = _rec(model="m", instance="I", solver="greedy_iop", latency_s=1.0, messages=6, per_op=PER_OP)
    plan_plot.plot_plans([rec], tmp_path / "p.png")
    ax = caught["p.png"].axes[0]
    names = [t.get_text() for t in ax.texts]
    assert [n for n in names if n in {op["node"] for op in PER_OP}] == [op["node"] for op in PER_OP]
    brackets = [c for c in ax.collections if c.__class__.__name__ == "LineCollection"]
    assert len(brackets) == 2  # one IOP pair, one fused stack
    assert "1× 100 B" in names  # one plan alone: every edge's messages and bytes written out


def test_timeline_names_the_layers_that_take_time(tmp_path, caught):
    per_op = [_op("small", "host", kind="input"), _op("big_conv", "rows", ["small"], 1000),
              _op("big_fc", "host", ["big_conv"], 10)]
    per_op[0]["compute_s"] = 1e-6  # far below 2.5% of the latency
    per_op[0]["device_compute_s"] = [1e-6, 0.0]
    rec = _rec(model="m", solver="s", latency_s=0.03, per_op=per_op,
               per_device=[{"name": "d0", "peak_bytes": 1}, {"name": "d1", "peak_bytes": 1}])
    timeline.plot_timeline(rec, tmp_path / "t.png")
    texts = _texts(caught["t.png"])
    assert "big_conv (rows)" in texts and "big_fc (host)" in texts
    assert not any(t.startswith("small") for t in texts)


# -- where cooperation pays ----------------------------------------------------------------------------


def test_cooperation_notes_say_where_one_device_is_optimal():
    recs = []
    for j in range(4):  # slow: the optimum is one device alone; greedy stays split, 5x slower
        recs += [_rec(model="m", network="slow", instance=f"S{j}", solver="ilp", termination="optimal", latency_s=1.0),
                 _rec(model="m", network="slow", instance=f"S{j}", solver="single", latency_s=1.0),
                 _rec(model="m", network="slow", instance=f"S{j}", solver="coedge", latency_s=6.0),
                 _rec(model="m", network="slow", instance=f"S{j}", solver="greedy_iop", latency_s=5.0)]
    for j in range(4):  # fast: splitting pays, greedy 2% above the optimum
        recs += [_rec(model="m", network="fast", instance=f"F{j}", solver="ilp", termination="optimal", latency_s=1.0),
                 _rec(model="m", network="fast", instance=f"F{j}", solver="single", latency_s=3.0),
                 _rec(model="m", network="fast", instance=f"F{j}", solver="coedge", latency_s=1.1),
                 _rec(model="m", network="fast", instance=f"F{j}", solver="greedy_iop", latency_s=1.02)]
    df = summary_frame(recs)
    table = cooperation_table(df, "ilp").set_index("network")
    assert table.loc["slow", "single optimal"] == 1.0 and table.loc["fast", "single optimal"] == 0.0
    assert table.loc["slow", "gap greedy_iop"] == pytest.approx(4.0)
    assert table.loc["slow", "gap greedy_iop, single optimal"] == pytest.approx(4.0)
    assert pd.isna(table.loc["slow", "gap greedy_iop, split optimal"])
    notes = cooperation_notes(df, "ilp")
    assert notes[0].startswith("Cooperation does not pay on slow (one device alone optimal on 100.0% of 4 instances;")
    assert "greedy_iop 400.0% above ilp" in notes[0]
    assert notes[1] == "Where cooperation pays, greedy_iop's mean gap to ilp is fast: 2.0% (one device alone " \
                       "optimal on 0.0%)."
    # a network in between: one device alone optimal on half the instances, greedy's gap given for each half
    mixed = [dict(r, network="mid") for r in recs if r["instance"] in ("S0", "S1", "F0", "F1")]
    for r in mixed:
        r["instance"] = "M" + r["instance"]
    notes = cooperation_notes(summary_frame(recs + mixed), "ilp")
    assert "On mid one device alone is optimal on 50.0% of 4 instances: greedy_iop is 400.0% above ilp on " \
           "those and 2.0% on the others." in notes
