"""Core speed: tracing ResNet-50 and evaluating one plan on 4 devices.

Targets: trace < 2 s; evaluate < 10 ms median. Run from the repository root:

    .venv/bin/python benchmarks/bench_core.py
"""

import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine, median

import iopopt
from iopopt import zoo
from iopopt.model.layouts import strategies_for
from iopopt.network import SharedNetwork


def main(repeats: int = 5) -> None:
    torch.set_num_threads(2)
    print(machine())
    module, shape = zoo.build("resnet50")
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        graph = iopopt.trace(module, shape)
        times.append(time.perf_counter() - t)
    print(f"trace resnet50 {shape}: median {median(times):.3f} s over {repeats} (target < 2 s); {len(graph)} nodes")

    cluster = iopopt.Cluster.homogeneous(4, 5e9)
    network = SharedNetwork(bandwidth_bytes_per_s=12.5e6, latency_s=1e-3)
    rng = random.Random(0)
    plans = []
    base = iopopt.Problem(graph, cluster, network)
    for _ in range(20):
        chosen = {}
        for op in graph:
            s = rng.choice(strategies_for(op))
            if s == "partial" and any(chosen[i] not in ("ic", "partial") for i in op.inputs):
                s = "host"
            chosen[op.name] = s
        plans.append(base.plan(chosen))

    cold, warm = [], []
    for plan in plans:
        problem = iopopt.Problem(graph, cluster, network)  # fresh: no cached terms
        t = time.perf_counter()
        iopopt.evaluate(problem, plan)
        cold.append(time.perf_counter() - t)
        t = time.perf_counter()
        iopopt.evaluate(problem, plan)
        warm.append(time.perf_counter() - t)
    print(
        f"evaluate a random plan on resnet50 x 4 devices: median {median(warm) * 1e3:.2f} ms with cached terms, "
        f"{median(cold) * 1e3:.2f} ms on a fresh problem (target < 10 ms), over {len(plans)} plans"
    )
    problem = iopopt.Problem(graph, cluster, network)
    t = time.perf_counter()
    t_ = problem.tables
    n = 0
    for op in graph:
        for s in strategies_for(op):
            t_.node(op.name, s)
            n += 1
    for u, v, i in graph.edges():
        for a in strategies_for(graph[u]):
            for b in strategies_for(graph[v]):
                t_.edge(u, v, i, a, b)
                n += 1
    print(f"every node and edge term of resnet50 x 4 devices ({n} terms): {time.perf_counter() - t:.3f} s")


if __name__ == "__main__":
    main()
