"""The ILP on the larger strategy space (placements, device subsets): model size and time, before and after.

Cases (assumed devices and networks, as in ``bench_ilp.py``):

- ``resnet50`` on 8 heterogeneous IoT-class devices, switched gigabit and shared Wi-Fi: proven optimal, target < 10 s;
- ``resnet50`` on 4 devices with every capacity at 0.4x the single-device peak (memory rows bind), with CBC and
  with HiGHS: the hard, memory-capped case.

Per case: strategies per node (mean), variables, binaries, rows, seconds for the cost-term tables, the model
build and the backend, and the termination; medians over ``--repeats``. ``--root DIR`` imports iopopt from another
checkout (e.g. the commit before placements, exported with ``git archive``), for the "before" figures::

    .venv/bin/python benchmarks/bench_space.py [--repeats 3] [--subsets] [--root /tmp/old]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--root", default=str(Path(__file__).resolve().parent.parent), help="iopopt checkout to import")
    ap.add_argument("--subsets", action="store_true", help="clusters with device subsets (oc@2, ...)")
    ap.add_argument("--cases", default="k8,capped", help="comma-separated: k8, capped")
    args = ap.parse_args(argv)
    sys.path.insert(0, args.root)
    import iopopt
    from iopopt import Cluster, Device, Problem, evaluate
    from iopopt.network import SharedNetwork, SwitchedNetwork
    from iopopt.solvers.ilp import IlpSolver

    print(f"iopopt from {Path(iopopt.__file__).parent}; load {os.getloadavg()[0]:.1f}", flush=True)
    module, shape = iopopt.zoo.build("resnet50")
    graph = iopopt.trace(module, shape, name="resnet50")
    speeds = (5e9, 10e9, 2.5e9)
    extra = {"subsets": True} if args.subsets else {}

    def cluster(k, cap=float("inf")):
        devs = tuple(Device(f"d{i}", speeds[i % 3], cap) for i in range(k))
        return Cluster(devs, **extra)

    def tables(problem):
        t = iopopt.compile.terms(problem)
        for n in graph.order:
            for s in problem.strategies(n):
                t.node(n, s)
        for u, v, i in graph.edges():
            for s in problem.strategies(u):
                for q in problem.strategies(v):
                    t.edge(u, v, i, s, q)

    def case(label, make, backend="PULP_CBC_CMD"):
        rows = []
        for _ in range(args.repeats):
            problem = make()
            t0 = time.perf_counter()
            tables(problem)
            tab = time.perf_counter() - t0
            r = IlpSolver(backend=backend, time_limit_s=120).solve(problem)
            rows.append((tab, r.extra["build_s"], r.extra.get("solve_s", 0.0), r))
        r = rows[-1][3]
        per_node = statistics.mean(len(make().strategies(n)) for n in graph.order)
        med = [statistics.median(x[i] for x in rows) for i in range(3)]
        print(f"{label:<34} strategies/node {per_node:5.1f}  vars {r.extra['variables']:>7}  "
              f"bins {r.extra['binaries']:>6}  rows {r.extra['constraints']:>6}  tables {med[0]:6.2f}s  "
              f"model {med[1]:5.2f}s  backend {med[2]:6.2f}s  total {sum(med):6.2f}s  {r.termination}  "
              f"{(r.objective or float('nan')) * 1e3:.2f} ms", flush=True)

    wanted = set(args.cases.split(","))
    if "k8" in wanted:
        for name, net in (("gigabit", SwitchedNetwork(125e6, 1e-4)), ("wifi", SharedNetwork(12.5e6, 1e-3))):
            case(f"resnet50 k=8 {name}", lambda net=net: Problem(graph, cluster(8), net))
    if "capped" in wanted:
        net = SwitchedNetwork(125e6, 1e-4)
        single = evaluate(Problem(graph, cluster(4), net), Problem(graph, cluster(4), net).plan({}))
        cap = 0.4 * single.peak_memory_bytes
        for backend in ("PULP_CBC_CMD", "HiGHS"):
            case(f"resnet50 k=4 cap 0.4x {backend}", lambda: Problem(graph, cluster(4, cap), net), backend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
