"""Run the testbed studies (long: start them in the background, nice'd) into outputs/reference/.

    nice -n 5 .venv/bin/python scripts/testbed_studies.py paper            # outputs/reference/paper_measured/
    nice -n 5 .venv/bin/python scripts/testbed_studies.py fidelity         # outputs/reference/fidelity/
    nice -n 5 .venv/bin/python scripts/testbed_studies.py fidelity --all   # every model x cluster x network
    .venv/bin/python scripts/testbed_studies.py paper --summary-only      # summary.json of what points.jsonl has
    .venv/bin/python scripts/testbed_studies.py fidelity --minutes 12   # in pieces, on an otherwise idle machine

Needs root (the testbed) and an `iopopt profile` (outputs/profile/latest, or `--profile DIR`): CPU fractions are
relative to its core, and the predictions are its roofline's. `fidelity` without --all measures a balanced quarter
of the grid (every model, every cluster and every network appear; each model meets 6 of the 24 cluster x network
pairs, together all 24), which takes about half an hour on 2 cores. Each study appends to points.jsonl and resumes
from it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from iopopt.app.configs import ConfigError
from iopopt.app.measure import testbed_reference
from iopopt.app.testbed_studies import PAPER_SOLVERS, fidelity_configs, paper_configs
from iopopt.studies.testbed_study import run_fidelity, run_paper

REF = Path("outputs/reference")
MODELS = ("alexnet", "synthetic", "resnet18", "mobilenet_v2")


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _steps(model: str) -> int:
    """Operators that compute (every node but input and output) of a study model."""
    from iopopt.frontend.capture import trace
    from iopopt.studies.fidelity.run import build_model

    module, shape = build_model(model, None)
    return sum(1 for n in trace(module, shape) if n.kind not in ("input", "output"))


def calibrate_overhead(out: Path, core) -> dict:
    """A diagnostic, IN-SAMPLE: the per-operator overhead the testbed shows beyond the model's, fitted on the
    single-device plans (the model itself takes the profile's op_overhead_s / fraction, out of sample).

    Fitted: o = median over single plans of (measured - predicted) x fraction(host) / steps; then
    every prediction gets steps x o / fraction(host) added (one shift per configuration: ranks within a
    configuration are unchanged). Written into summary.json as `model_calibrated`.
    """
    import json
    import statistics

    from iopopt.studies.testbed_study import load_points, summarize

    rows = load_points(out / "points.jsonl")
    steps = {m: _steps(m) for m in {r["model"] for r in rows}}
    host_f = {}
    for c in fidelity_configs(sorted(steps)) + paper_configs():
        host_f[c.cluster_name] = c.cluster.devices[c.cluster.host].flops_per_s / core.flops_per_s
    singles = [(r["measured_s"] - r["predicted_s"]) * host_f[r["cluster"]] / steps[r["model"]]
               for r in rows if r["plan"] == "single" and r["cluster"] in host_f]
    o = statistics.median(singles)
    for r in rows:
        r["calibrated_s"] = r["predicted_s"] + steps[r["model"]] * o / host_f[r["cluster"]]
    with open(out / "points_calibrated.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    cal = summarize(rows, "calibrated_s")
    summary["model_calibrated"] = {"per_step_overhead_s_at_host_speed": o, "fitted_on_single_plans": len(singles),
                                   "spearman": cal["model"]["spearman"], "mdape": cal["model"]["mdape"],
                                   "groups": [{k: g[k] for k in ("model", "cluster", "network", "spearman", "mdape")}
                                              for g in cal["groups"]]}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary["model_calibrated"]


def plot(out: Path) -> Path:
    """measured vs predicted (and calibrated), log-log, one colour per model, y = x: out/fidelity.png."""
    import json

    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from iopopt.studies.testbed_study import load_points

    src = out / "points_calibrated.jsonl"
    rows = load_points(src if src.exists() else out / "points.jsonl")
    cal = json.loads((out / "summary.json").read_text()).get("model_calibrated")
    fig, axes = plt.subplots(1, 2 if cal else 1, figsize=(11 if cal else 6, 5), squeeze=False)
    models = sorted({r["model"] for r in rows})
    for ax, (title, key) in zip(axes[0], [("cost model (emulated devices)", "predicted_s"),
                                          ("with the calibrated per-step overhead", "calibrated_s")]):
        lo, hi = 1e9, 0.0
        for i, m in enumerate(models):
            rs = [r for r in rows if r["model"] == m and key in r]
            if key == "calibrated_s" and not rs:
                continue
            xs = [r[key] * 1e3 for r in rs]
            ys = [r["measured_s"] * 1e3 for r in rs]
            ax.scatter(xs, ys, s=14, label=m, color=f"C{i}")
            lo, hi = min(lo, *xs, *ys), max(hi, *xs, *ys)
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="measured = predicted")
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("predicted latency (ms)")
        ax.set_ylabel("measured on the testbed (ms)")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "fidelity.png"
    fig.savefig(path, dpi=110)
    return path


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line (``--help`` lists it); a bad value is one line naming it and the valid ones, exit 2."""
    ap = argparse.ArgumentParser(prog="scripts/testbed_studies.py",
                                 description="Run a testbed study into outputs/reference/ (see the module docstring).")
    ap.add_argument("study", choices=("paper", "fidelity"),
                    help="paper: outputs/reference/paper_measured/; fidelity: outputs/reference/fidelity/")
    ap.add_argument("--profile", default="latest", help="an `iopopt profile` directory, or 'latest' (the default)")
    ap.add_argument("--minutes", type=float, default=None, help="stop after about this many minutes (resume later)")
    ap.add_argument("--summary-only", action="store_true", help="measure nothing: summarise what points.jsonl has")
    ap.add_argument("--all", action="store_true", help="fidelity: every model x cluster x network, not a quarter")
    ap.add_argument("--k4-first", action="store_true",
                    help="fidelity: 4-device configurations first, the 10 Mbit/s ones last")
    a = ap.parse_args(argv)
    if a.minutes is not None and not a.minutes > 0:
        ap.error(f"--minutes must be a positive number of minutes, got {a.minutes:g}")
    return a


def main(argv: list[str]) -> int:
    a = parse(argv)
    try:
        core, overhead = testbed_reference(a.profile)
    except ConfigError as exc:
        print(f"testbed_studies.py: {exc}", file=sys.stderr)
        return 2
    opts = {"passes": 2, "message_overhead_s": overhead, "repeats": 3, "warmup": 1, "timeout_s": 300,
            "measure": not a.summary_only,
            "stop_after_s": None if a.minutes is None else a.minutes * 60}
    if a.study == "paper":
        s = run_paper(paper_configs(), REF / "paper_measured", core, _log, solvers=PAPER_SOLVERS,
                      **opts)
        _log(f"paper_measured: {len(s['instances'])} instances")
        return 0
    configs = fidelity_configs(MODELS)
    if not a.all:
        pairs = sorted({(c.cluster_name, c.network_name) for c in configs})
        # pair j = (cluster j // 4, network j % 4) goes to model (j % 4 + j // 4) % 4: a Latin square
        keep = {(MODELS[(j % 4 + j // 4) % 4], p) for j, p in enumerate(pairs)}
        by_model = [[c for c in configs if c.model == m and (m, (c.cluster_name, c.network_name)) in keep]
                    for m in MODELS]
        configs = [c for row in zip(*by_model) for c in row]  # interleaved: a partial run covers every model
        if a.k4_first:  # what a partial run was missing: 4 devices, then the slow 10 Mbit/s ones last
            configs.sort(key=lambda c: (c.network_name == "wifi_10mbps", -c.cluster.k))
    s = run_fidelity(configs, REF / "fidelity", core, _log, solvers=("single", "coedge", "oc", "greedy_iop", "ilp"),
                     randoms=2, ilp_time_s=20, **opts)
    _log(f"fidelity: {s['n']} plans, spearman {s['model']['spearman']:.3f}, mdape {s['model']['mdape']:.3f}")
    cal = calibrate_overhead(REF / "fidelity", core)
    plot(REF / "fidelity")
    _log(f"calibrated per-step overhead {cal['per_step_overhead_s_at_host_speed'] * 1e6:.0f} us at host speed: "
         f"spearman {cal['spearman']:.3f}, mdape {cal['mdape']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
