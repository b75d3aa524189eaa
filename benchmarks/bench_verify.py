"""Executor speed: verify ResNet-50 (1x3x224x224) on 4 heterogeneous devices.

Times :func:`iopopt.verify` end to end (compile, deep copy + dtype conversion of the model, the
unsplit reference forward, the simulated k-device run, byte comparisons) for the alternating (IOP)
plan and a seeded random plan, in float32 and float64; median of 3 runs each. Target < 10 s.
Run from the repository root:

    .venv/bin/python benchmarks/bench_verify.py [--threads 1] [--repeats 3]
"""

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine, median

import iopopt
from iopopt import Cluster, Device, Problem, plans, zoo
from iopopt.network import SwitchedNetwork


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: stable on a shared machine)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(machine())
    print(f"torch threads: {torch.get_num_threads()}; load average now: {os.getloadavg()}")
    module, shape = zoo.build("resnet50")
    cluster = Cluster((Device("d0", 2e9), Device("d1", 1e9), Device("d2", 4e9), Device("d3", 1.5e9)))
    network = SwitchedNetwork(bandwidth_bytes_per_s=12.5e6, latency_s=1e-3)
    problem = Problem(iopopt.trace(module, shape), cluster, network)
    for label, plan in (("alternating", plans.alternating(problem)), ("random(seed 0)", plans.random_plan(problem, 0))):
        for dtype in (torch.float32, torch.float64):
            times, cpu, rep = [], [], None
            for _ in range(args.repeats):
                t, c = time.perf_counter(), time.process_time()
                rep = iopopt.verify(problem, plan, module, dtype=dtype)
                times.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)
            print(
                f"verify resnet50 {shape} x 4 devices, {label} plan {plan!r}, {rep.dtype}: "
                f"median {median(times):.2f} s wall, {median(cpu):.2f} s CPU over {args.repeats} (target < 10 s); "
                f"{rep.summary()}"
            )


if __name__ == "__main__":
    main()
