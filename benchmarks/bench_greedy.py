"""Benchmark: greedy_iop on ResNet-50 with 4 devices (target: < 0.5 s per solve).

Run::

    .venv/bin/python benchmarks/bench_greedy.py [--repeat 3] [--model resnet50] [--k 4]
        [--network shared|switched] [--bandwidth 12.5e6] [--latency 1e-3]

Reports the machine, the command, and medians over ``--repeat`` runs of:

- ``cold``: a solve on a fresh problem (cost tables empty: every node and
  edge term the greedy reads is computed during the solve);
- ``warm``: a solve on a problem whose tables are already filled;
- ``tables``: cold − warm, the share of the cold solve spent building terms;
- ``greedy loop``: the solver's own work with warm tables (base plan, pair
  search, incremental benefits), without the base class's cost-model check;
- ``check``: the base class's full :func:`iopopt.evaluate` of the result.

The default cluster is an assumption standing for small IoT boards: ``k``
devices at 5 GFLOP/s sharing one 100 Mbit/s (12.5 MB/s) network with 1 ms per
message. Exit status 1 when the default greedy (coedge, recompute) misses the
target with cold tables.
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

import torch

from iopopt import Cluster, Problem, evaluate, trace, zoo
from iopopt.network import NetworkModel, make_network
from iopopt.solvers.greedy_iop import GreedyIop

TARGET_S = 0.5


def machine() -> str:
    return (
        f"{platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, torch {torch.__version__}"
    )


def make_problem(graph, k: int, network: NetworkModel) -> Problem:
    cluster = Cluster.homogeneous(k, 5e9, name=f"{k}x5GFLOPs")
    return Problem(graph, cluster, network, name=graph.name)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def bench(graph, k: int, network: NetworkModel, repeat: int, base: str, recompute: bool) -> dict:
    solver = GreedyIop(base=base, recompute=recompute)
    cold, warm, loop, check = [], [], [], []
    result = None
    for _ in range(repeat):
        problem = make_problem(graph, k, network)
        cold.append(timed(lambda: solver.solve(problem))[0])
        dt, result = timed(lambda: solver.solve(problem))
        warm.append(dt)
        loop.append(timed(lambda: solver._solve(problem))[0])
        check.append(timed(lambda: evaluate(problem, result.plan))[0])
    med = statistics.median
    return {
        "base": base,
        "recompute": recompute,
        "cold": med(cold),
        "warm": med(warm),
        "tables": med(c - w for c, w in zip(cold, warm)),
        "loop": med(loop),
        "check": med(check),
        "result": result,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--network", default="shared", choices=["shared", "switched"])
    ap.add_argument("--bandwidth", type=float, default=12.5e6, help="bytes/s")
    ap.add_argument("--latency", type=float, default=1e-3, help="seconds per message")
    args = ap.parse_args(argv)
    network = make_network(args.network, bandwidth_bytes_per_s=args.bandwidth, latency_s=args.latency)
    torch.set_num_threads(1)

    print(f"machine: {machine()}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    t_trace, graph = timed(lambda: trace(*zoo.build(args.model), name=args.model))
    heavy = sum(op.kind in ("conv", "linear") for op in graph)
    print(f"model: {graph!r}, {heavy} conv/linear; traced in {t_trace:.2f} s")
    print(
        f"cluster: {args.k} devices at 5 GFLOP/s, {args.network} network "
        f"{args.bandwidth / 1e6:g} MB/s, {args.latency * 1e3:g} ms per message"
    )
    print(f"medians of {args.repeat} runs, seconds\n")
    header = (
        "| base | recompute | cold total | tables | warm total | greedy loop | check | pairs | evals "
        "| T_base ms | T ms |"
    )
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    rows = []
    for base in ("coedge", "oc"):
        for recompute in (True, False):
            r = bench(graph, args.k, network, args.repeat, base, recompute)
            rows.append(r)
            res = r["result"]
            print(
                f"| {base} | {recompute} | {r['cold']:.4f} | {r['tables']:.4f} | {r['warm']:.4f} | {r['loop']:.4f} "
                f"| {r['check']:.4f} | {len(res.extra['pairs'])}/{res.extra['candidates']} "
                f"| {res.extra['evaluations']} "
                f"| {res.extra['base_latency_s'] * 1e3:.2f} | {res.objective * 1e3:.2f} |"
            )
    default = rows[0]
    verdict = "PASS" if default["cold"] < TARGET_S else "FAIL"
    print(f"\ndefault greedy_iop (coedge, recompute), cold tables: {default['cold']:.4f} s < {TARGET_S} s: {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
