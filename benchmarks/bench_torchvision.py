"""torchvision's classification CNNs: trace, exact ILP and verification times, one line per family.

For one model per family, at its published input size (224x224, Inception-v3
299x299), with seeded random weights: ``trace`` is :func:`iopopt.trace`
(torch.export and the walk), ``ilp`` the exact solver on a fresh problem (its
cost terms, the PuLP model and the backend; time limit 60 s) on 4
heterogeneous devices over a fast switched network, ``verify`` the float64
check of the ILP's plan against torch. With ``--all``, the ILP then runs on
every one of the 68 models (traced on the meta device: no weights needed to
plan) and the slowest are listed: the ILP is meant to stay proven-optimal in
under 10 s on 4 devices for every model.

The cluster is an assumption, not a measurement: 8, 4, 4 and 2 GFLOP/s, no
per-operator overhead, a switched 10 Gbit/s network with 20 µs per message.
torchvision is imported with the tests' workaround (tests/_torchvision.py).
Run from the repository root::

    .venv/bin/python benchmarks/bench_torchvision.py [--all] [--backend HiGHS] [--devices 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))
from _machine import machine  # noqa: E402
from _torchvision import FAMILIES, classification_models, family, meta_model  # noqa: E402

import iopopt  # noqa: E402
from iopopt import Cluster, Device, Problem  # noqa: E402
from iopopt.frontend import tvmodels  # noqa: E402
from iopopt.network import SwitchedNetwork  # noqa: E402
from iopopt.solvers.ilp import IlpSolver  # noqa: E402

SPEEDS = (8e9, 4e9, 2e9, 4e9, 8e9, 2e9)
NETWORK = SwitchedNetwork(bandwidth_bytes_per_s=1.25e9, latency_s=2e-5)


def _ilp(graph, cluster, backend: str):
    problem = Problem(graph, cluster, NETWORK)  # fresh: the cost terms are built inside the timing
    t = time.perf_counter()
    res = IlpSolver(backend=backend, time_limit_s=60).solve(problem)
    return problem, res, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--all", action="store_true", help="also time the ILP on all 68 models")
    ap.add_argument("--backend", default="HiGHS", help="backend of the ILP (default HiGHS, the ILP's; or PULP_CBC_CMD)")
    ap.add_argument("--devices", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cluster = Cluster(tuple(Device(f"d{i}", SPEEDS[i % len(SPEEDS)]) for i in range(args.devices)))
    print(machine())
    print(f"torch threads 1; load average now {os.getloadavg()}; {args.devices} devices "
          f"{[d.flops_per_s / 1e9 for d in cluster.devices]} GFLOP/s; {NETWORK.name} 10 Gbit/s, 20 us; "
          f"ILP backend {args.backend}, time limit 60 s")
    print(f"{'family':<16}{'model':<20}{'input':<18}{'nodes':>6}{'trace':>8}{'ilp':>8}  {'termination':<11}"
          f"{'latency':>11}{'verify':>8}  check")
    for fam, (name, _) in sorted(FAMILIES.items()):
        shape = tvmodels.default_input_shape(name)
        model = tvmodels.build(name, seed=0, input_shape=shape)
        t = time.perf_counter()
        graph = iopopt.trace(model, shape, name=name)
        trace_s = time.perf_counter() - t
        problem, res, ilp_s = _ilp(graph, cluster, args.backend)
        t = time.perf_counter()
        rep = iopopt.verify(problem, res.plan, model)
        verify_s = time.perf_counter() - t
        print(f"{fam:<16}{name:<20}{'x'.join(map(str, shape)):<18}{len(graph):>6}{trace_s:>7.2f}s{ilp_s:>7.2f}s  "
              f"{res.termination:<11}{res.objective * 1e3:>9.3f}ms{verify_s:>7.2f}s  "
              f"{'PASSED' if rep.passed else 'FAILED'} (max abs err {rep.max_abs_err:.2g})", flush=True)
        del model, problem
    if not args.all:
        return
    print(f"\nILP on every model ({args.devices} devices; traced on the meta device):")
    print(f"{'model':<22}{'family':<16}{'nodes':>6}{'ilp':>8}  {'build':>6}{'solve':>7}  termination")
    rows = []
    for name in classification_models():
        graph = iopopt.trace(meta_model(name), tvmodels.default_input_shape(name), name=name)
        _, res, ilp_s = _ilp(graph, cluster, args.backend)
        rows.append((ilp_s, name, res.termination))
        print(f"{name:<22}{family(name):<16}{len(graph):>6}{ilp_s:>7.2f}s  {res.extra['build_s']:>5.2f}s"
              f"{res.extra.get('solve_s', 0.0):>6.2f}s  {res.termination}", flush=True)
    rows.sort(reverse=True)
    optimal = sum(term == "optimal" for _, _, term in rows)
    print(f"\n{optimal} of {len(rows)} proven optimal; slowest: "
          + ", ".join(f"{n} {s:.2f}s" for s, n, _ in rows[:5])
          + f"; under 10 s: {sum(s < 10 for s, _, _ in rows)} of {len(rows)}")


if __name__ == "__main__":
    main()
