"""Fidelity of the cost model: measured distributed latency against the calibrated model's prediction.

For each model (AlexNet and ResNet-18 from the zoo at 224×224, and a seeded
synthetic DAG CNN) and each rank count (default 2, 3 and 4, one torch thread
per rank, all on this machine's loopback), the plans of the solvers
``single``, ``coedge``, ``oc``, ``greedy_iop`` and ``ilp`` (time-limited) are
found on a problem whose cluster and network come from ``iopopt profile``
measurements of this machine, then run for real with the
:class:`~iopopt.distributed.DistributedExecutor` (float32, warm-up, then the
median of ``repeats`` timed inferences). Per plan the relative error of the
prediction is ``predicted / measured − 1``; overall the Spearman rank
correlation and the median absolute percentage error.

Besides the cost model's prediction (``predicted_s``) the report gives two
diagnostic predictions computed here, from the same Program, to show what the
model misses:

* ``contention_s`` -- the model with compute time of step v divided by the
  core share ``min(1, cores / (active ranks of v · threads))`` and the solo
  throughput: ranks that outnumber the cores slow each other only when they
  compute at the same time;
* ``extended_s`` -- ``contention_s`` plus per-kind costs: linear layers at the
  measured (memory-bound) linear throughput, max/avg pooling at the measured
  pooling throughput, and activations / batchnorm / add / cat / adaptive
  pooling at the measured memory bandwidth (bytes in + out), instead of FLOPs
  at the conv throughput.

Writes ``fidelity.csv`` (one row per plan), ``kinds.csv`` (measured vs
predicted compute per operator kind), ``fidelity.md`` (tables, figures and
the diagnosis) and ``fidelity.png`` (measured vs predicted, log-log, with
y = x) into ``--out``. Entry: ``python -m iopopt.fidelity --out DIR``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .report import load_points, report
from .run import MODELS, SOLVERS, FidelityPoint, predict_contention, predict_extended, run_fidelity, summarize

__all__ = ["FidelityPoint", "run_fidelity", "predict_contention", "predict_extended", "summarize", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    from ..profile import run_profile, summary_line, write_presets

    ap = argparse.ArgumentParser(prog="python -m iopopt.fidelity", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--profile", default=None, help="an existing `iopopt profile` directory (profile.json); "
                    "default: profile now into OUT/profile")
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--ranks", nargs="+", type=int, default=[2, 3, 4])
    ap.add_argument("--solvers", nargs="+", default=list(SOLVERS))
    ap.add_argument("--hw", type=int, default=None, help="input height=width of zoo models (default: the zoo's 224)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--ilp-time", type=float, default=30.0)
    ap.add_argument("--no-barrier", action="store_true", help="skip the second run with a barrier after each step")
    ap.add_argument("--report-only", action="store_true",
                    help="rebuild the report of OUT from its fidelity.csv, kinds.csv and profile/profile.json")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = dict(models=a.models, ranks=a.ranks, solvers=a.solvers, ilp_time_s=a.ilp_time, warmup=a.warmup,
                    repeats=a.repeats, hw_text=f"{a.hw}×{a.hw}" if a.hw else "zoo default 224×224; synthetic 96×96")
    if a.report_only:
        prof = json.loads(((Path(a.profile) if a.profile else out / "profile") / "profile.json").read_text())
        if (out / "settings.json").exists():
            settings = json.loads((out / "settings.json").read_text())
        points = load_points(out / "fidelity.csv")
        with open(out / "kinds.csv", newline="") as fh:
            kinds = [{k: (v if k in ("model", "solver", "kind") else float(v)) for k, v in row.items()}
                     for row in csv.DictReader(fh)]
        s = report(out, points, kinds, prof, settings)
        print(f"[fidelity] report rebuilt: ρ {s['model']['spearman']:.3f}, median abs error "
              f"{s['model']['mdape'] * 100:.1f}%; {out}/fidelity.md")
        return 0
    t0 = time.perf_counter()
    if a.profile:
        prof = json.loads((Path(a.profile) / "profile.json").read_text())
    else:
        print("[fidelity] profiling this machine ...", flush=True)
        prof = run_profile(ranks=max(a.ranks))
        prof["stamp"] = time.strftime("%Y-%m-%d_%H-%M-%S")
        write_presets(prof, out / "profile")
    print(f"[fidelity] profile: {summary_line(prof)}", flush=True)
    points, kinds = run_fidelity(
        out, prof, a.models, a.ranks, a.solvers, a.hw, a.warmup, a.repeats, a.ilp_time, not a.no_barrier,
        log=lambda m: print(m, flush=True),
    )
    if not points:
        print("[fidelity] no plan was measured", file=sys.stderr)
        return 1
    s = report(out, points, kinds, prof, settings)
    seconds = time.perf_counter() - t0
    print(f"[fidelity] {len(points)} plans in {seconds:.0f} s: Spearman ρ {s['model']['spearman']:.3f}, "
          f"median abs error {s['model']['mdape'] * 100:.1f}% (extended: ρ {s['extended']['spearman']:.3f}, "
          f"{s['extended']['mdape'] * 100:.1f}%); wrote {out}/fidelity.md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
