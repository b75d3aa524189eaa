"""Full executor acceptance: every zoo model at its real input size, 4 heterogeneous devices.

For each model: the all-host, all-oc, CoEdge-style and alternating (IOP) plans plus 20 seeded
random plans, each verified in float64 and float32 (:func:`iopopt.verify`: numerics against the
unsplit model, byte-exact messages, weight shards and activation peaks against the cost model).
Prints one row per model (``--verbose``: one per plan and dtype). Run from the repository root:

    .venv/bin/python scripts/verify_zoo.py [--models resnet18 vgg16] [--random 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

import iopopt
from iopopt import Cluster, Device, Problem, plans, zoo
from iopopt.network import SwitchedNetwork

#: Four heterogeneous devices (assumed speeds; only the split proportions matter here).
DEVICES = (("d0", 2e9), ("d1", 1e9), ("d2", 4e9), ("d3", 1.5e9))


def verify_model(name: str, n_random: int, verbose: bool) -> dict:
    module, shape = zoo.build(name)
    problem = Problem(
        iopopt.trace(module, shape),
        Cluster(tuple(Device(n, f) for n, f in DEVICES)),
        SwitchedNetwork(bandwidth_bytes_per_s=12.5e6, latency_s=1e-3),
    )
    todo = [(kind, plans.build_plan(problem, kind)) for kind in plans.PLAN_KINDS]
    todo += [(f"random{s}", plans.random_plan(problem, s)) for s in range(n_random)]
    row = {"model": name, "plans": len(todo), "passed": 0, "runs": 0, "failures": []}
    errs = {torch.float64: [0.0, 0.0], torch.float32: [0.0, 0.0]}
    t0 = time.perf_counter()
    for label, plan in todo:
        for dtype in (torch.float64, torch.float32):
            t = time.perf_counter()
            rep = iopopt.verify(problem, plan, module, dtype=dtype)
            row["runs"] += 1
            row["passed"] += rep.passed
            errs[dtype][0] = max(errs[dtype][0], rep.max_abs_err)
            errs[dtype][1] = max(errs[dtype][1], rep.max_rel_err)
            if not rep.passed:
                row["failures"].append(f"{label} {rep.dtype}: {rep.summary()}\n{rep.diff}")
            if verbose:
                print(f"  {name:<15}{label:<13}{rep.dtype:<9}{'ok' if rep.passed else 'FAIL':<6}"
                      f"abs {rep.max_abs_err:9.2e}  rel {rep.max_rel_err:9.2e}  {time.perf_counter() - t:6.2f} s",
                      flush=True)
    row["f64"], row["f32"] = errs[torch.float64], errs[torch.float32]
    row["scale"] = rep.output_scale
    row["time_s"] = time.perf_counter() - t0
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=zoo.names())
    ap.add_argument("--random", type=int, default=20, help="random plans per model")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    head = (f"{'model':<16}{'runs':>5}{'passed':>8}{'f64 max abs':>13}{'f64 max rel':>13}"
            f"{'f32 max abs':>13}{'f32 max rel':>13}{'|ref| max':>11}{'time s':>9}")
    rows = []
    for name in args.models:
        rows.append(verify_model(name, args.random, args.verbose))
        r = rows[-1]
        if len(rows) == 1:
            print(head)
        print(f"{r['model']:<16}{r['runs']:>5}{r['passed']:>8}{r['f64'][0]:>13.2e}{r['f64'][1]:>13.2e}"
              f"{r['f32'][0]:>13.2e}{r['f32'][1]:>13.2e}{r['scale']:>11.3g}{r['time_s']:>9.1f}", flush=True)
    failures = [f for r in rows for f in r["failures"]]
    for f in failures:
        print("FAILED", f)
    total = sum(r["runs"] for r in rows)
    print(f"{total - len(failures)}/{total} verifications passed "
          f"({len(rows)} models x ({len(plans.PLAN_KINDS)} plan kinds + {args.random} random) x float64/float32)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
