"""How long the exact ILP takes: zoo models, device counts and synthetic graph sizes.

Run from the repository root::

    .venv/bin/python benchmarks/bench_ilp.py                  # full run (a few minutes)
    .venv/bin/python benchmarks/bench_ilp.py --quick          # resnet18 and smaller sweeps
    .venv/bin/python benchmarks/bench_ilp.py --backend HiGHS

Every timing starts from a fresh :class:`iopopt.Problem`, so the cost tables
(``problem.tables``, computed lazily and cached) are built inside the timed
region and reported apart (``tables``); ``model`` is building the PuLP model
on those tables, ``backend`` the MILP solve (including PuLP's file I/O for
CBC). Figures are medians over ``--repeats`` runs. Tracing the torch model is
not timed.

The clusters are assumptions, not measurements: heterogeneous IoT-class
devices at 5, 10 and 2.5 GFLOP/s (cycled; ``mcu``: 10-30 MFLOP/s), a switched
1 Gbit/s network with 100 µs per message, and (for comparison) a shared
100 Mbit/s Wi-Fi link with 1 ms per message.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import iopopt
from iopopt import Cluster, Device, Problem
from iopopt.frontend.synthetic import random_cnn
from iopopt.network import SharedNetwork, SwitchedNetwork
from iopopt.solvers.ilp import IlpSolver

NETWORKS = {
    "gigabit": SwitchedNetwork(125e6, 1e-4),
    "wifi": SharedNetwork(12.5e6, 1e-3),
}
#: Device FLOP/s, cycled over the k devices: IoT boards, and microcontroller-class devices whose
#: compute is so slow next to the network that almost every operator is worth splitting.
CLUSTERS = {"iot": (5e9, 10e9, 2.5e9), "mcu": (1e7, 2e7, 1e7, 3e7)}


def cluster(k: int, kind: str = "iot") -> Cluster:
    flops = CLUSTERS[kind]
    return Cluster(tuple(Device(f"d{i}", flops[i % len(flops)]) for i in range(k)), name=f"{kind}{k}")


def machine_info() -> str:
    import pulp
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        from importlib.metadata import version

        import highspy  # noqa: F401

        highs = version("highspy")
    except Exception:  # pragma: no cover - optional backend
        highs = "not installed"
    return "\n".join(
        [
            f"command: {' '.join([Path(sys.executable).name, *sys.argv])}",
            f"date:    {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
            f"machine: {platform.node()} — {cpu}, {os.cpu_count()} logical CPUs, {platform.platform()}",
            f"python {platform.python_version()}, torch {torch.__version__}, pulp {pulp.__version__}, highspy {highs}",
        ]
    )


def touch_tables(problem: Problem) -> None:
    """Compute every node and edge term the full-space ILP can use (what it would build lazily)."""
    t = problem.tables
    g = problem.graph
    for n in g.order:
        for s in problem.strategies(n):
            t.node(n, s)
    for u, v, i in g.edges():
        for s in problem.strategies(u):
            for q in problem.strategies(v):
                t.edge(u, v, i, s, q)


def run(graph, k: int, net: str, args, space: str = "full", kind: str = "iot") -> dict:
    rows = []
    for _ in range(args.repeats):
        problem = Problem(graph, cluster(k, kind), NETWORKS[net])
        t0 = time.perf_counter()
        touch_tables(problem)
        tables_s = time.perf_counter() - t0
        solver = IlpSolver(space=space, backend=args.backend, time_limit_s=args.time_limit, threads=1)
        result = solver.solve(problem)
        rows.append((tables_s, result.extra["build_s"], result.extra.get("solve_s", 0.0), result))
    med = lambda i: statistics.median(r[i] for r in rows)  # noqa: E731
    last = rows[-1][3]
    return {
        "nodes": len(graph),
        "vars": last.extra["variables"],
        "bins": last.extra["binaries"],
        "rows": last.extra["constraints"],
        "tables": med(0),
        "model": med(1),
        "backend": med(2),
        "total": statistics.median(r[0] + r[3].wall_time_s for r in rows),
        "term": last.termination,
        "obj_ms": None if last.objective is None else last.objective * 1e3,
        "gap": last.gap,
    }


HEAD = (
    f"{'case':<26}{'k':>3}{'nodes':>7}{'vars':>8}{'bins':>7}{'rows':>7}"
    f"{'tables':>9}{'model':>8}{'backend':>9}{'total':>8}  {'termination':<12}{'latency':>11}{'gap':>8}"
)


def line(case: str, k: int, r: dict, target: float | None = None) -> str:
    obj = f"{r['obj_ms']:.3f}ms" if r["obj_ms"] is not None else "-"
    gap = f"{100 * r['gap']:.2f}%" if r["gap"] is not None else "-"
    verdict = ""
    if target is not None:
        verdict = f"  target < {target:g} s: {'met' if r['total'] < target and r['term'] == 'optimal' else 'MISSED'}"
    return (
        f"{case:<26}{k:>3}{r['nodes']:>7}{r['vars']:>8}{r['bins']:>7}{r['rows']:>7}"
        f"{r['tables']:>8.2f}s{r['model']:>7.2f}s{r['backend']:>8.2f}s{r['total']:>7.2f}s"
        f"  {r['term']:<12}{obj:>11}{gap:>8}"
        + verdict
    )


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="runs per case; medians are reported")
    ap.add_argument("--backend", default="PULP_CBC_CMD", help="PuLP solver name, e.g. HiGHS")
    ap.add_argument("--time-limit", type=float, default=120.0, help="backend time limit per solve, seconds")
    ap.add_argument("--quick", action="store_true", help="resnet18 for the device sweep, synthetic sizes up to 200")
    args = ap.parse_args(argv)
    print(machine_info())
    print(f"backend {args.backend}, threads 1, time limit {args.time_limit:g} s, median of {args.repeats}\n")

    graphs: dict[str, object] = {}

    def zoo(name):
        if name not in graphs:
            module, shape = iopopt.zoo.build(name)
            graphs[name] = iopopt.trace(module, shape, name=name)
        return graphs[name]

    print("1. zoo models, 4 devices, proven optimum (full space; ilp_pairs for reference)")
    print(HEAD)
    for name, target in (("alexnet", 5), ("vgg16", 5), ("resnet50", 30)):
        for net in ("gigabit", "wifi"):
            print(line(f"{name} {net}", 4, run(zoo(name), 4, net, args), target), flush=True)
    print(line("resnet50 gigabit (pairs)", 4, run(zoo("resnet50"), 4, "gigabit", args, space="pairs")), flush=True)

    sweep_model = "resnet18" if args.quick else "resnet50"
    print(f"\n2. devices: {sweep_model}, gigabit")
    print(HEAD)
    for k in (2, 3, 4, 6, 8):
        print(line(f"{sweep_model} gigabit", k, run(zoo(sweep_model), k, "gigabit", args)), flush=True)

    sizes = (50, 100, 200) if args.quick else (50, 100, 200, 400)
    print("\n3. graph size: random_cnn(seed 0, kind dag, channels 4-32, 32x32 input), 4 devices, gigabit;")
    print("   iot devices, then mcu devices (10-30 MFLOP/s: splitting pays almost everywhere, a harder MILP)")
    print(HEAD)
    for kind in ("iot", "mcu"):
        for n in sizes:
            if n not in graphs:
                module, shape = random_cnn(0, n, kind="dag", channels=(4, 32), input_hw=(32, 32))
                graphs[n] = iopopt.trace(module, shape, name=f"dag{n}")
            print(line(f"dag {n} layers, {kind}", 4, run(graphs[n], 4, "gigabit", args, kind=kind)), flush=True)


if __name__ == "__main__":
    main()
