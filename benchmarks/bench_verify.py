"""Executor speed: verify ResNet-50 (1x3x224x224) on 4 heterogeneous devices, against the unsplit forward.

Times :func:`iopopt.verify` end to end (compile, copy + dtype conversion of the model, the unsplit
reference forward, the simulated k-device run, byte comparisons) for the alternating (IOP) plan and a
seeded random plan, in float32 and float64, and the unsplit forward alone (same dtype, same thread
count, on the same converted copy verify makes, same input). Forward and verify runs alternate, so
both see the same machine load; medians over the repeats (the ratio of CPU times, and of the best
wall times, are printed too: steadier on a shared machine). Targets: verify <= 3x the forward in
float32, <= 5x in float64. Run from the repository root:

    .venv/bin/python benchmarks/bench_verify.py [--threads 1] [--repeats 5]
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
from iopopt.exec.convert import converted_copy
from iopopt.exec.verify import default_input
from iopopt.network import SwitchedNetwork

TARGET = {torch.float32: 3.0, torch.float64: 5.0}


def forward_s(module, x, dtype) -> tuple[float, float]:
    """Wall and CPU seconds of one unsplit forward, on the converted copy verify makes."""
    model = converted_copy(module, dtype)
    x = x.to(dtype)
    with torch.no_grad():
        t, c = time.perf_counter(), time.process_time()
        model(x)
        return time.perf_counter() - t, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: stable on a shared machine)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(machine())
    print(f"torch threads: {torch.get_num_threads()}; load average now: {os.getloadavg()}")
    module, shape = zoo.build("resnet50")
    cluster = Cluster((Device("d0", 2e9), Device("d1", 1e9), Device("d2", 4e9), Device("d3", 1.5e9)))
    network = SwitchedNetwork(bandwidth_bytes_per_s=12.5e6, latency_s=1e-3)
    problem = Problem(iopopt.trace(module, shape), cluster, network)
    x = default_input(problem.graph)  # the input verify draws (seed 0), for the forward alone
    for label, plan in (("alternating", plans.alternating(problem)), ("random(seed 0)", plans.random_plan(problem, 0))):
        for dtype in (torch.float32, torch.float64):
            forward_s(module, x, dtype)  # warm-up
            fwd, fwd_cpu, times, cpu, rep = [], [], [], [], None
            for _ in range(args.repeats):
                wall_s, cpu_s = forward_s(module, x, dtype)
                fwd.append(wall_s)
                fwd_cpu.append(cpu_s)
                t, c = time.perf_counter(), time.process_time()
                rep = iopopt.verify(problem, plan, module, dtype=dtype)
                times.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)
            ratio = median(times) / median(fwd)
            cpu_ratio = median(cpu) / median(fwd_cpu)
            verdict = "met" if ratio <= TARGET[dtype] else "MISSED"
            print(
                f"verify resnet50 {shape} x 4 devices, {label} plan {plan!r}, {rep.dtype}: "
                f"forward {median(fwd):.3f} s, verify {median(times):.3f} s wall ({median(cpu):.3f} s CPU), "
                f"ratio {ratio:.2f} (target <= {TARGET[dtype]:.0f}x: {verdict}; CPU {cpu_ratio:.2f}, "
                f"best/best {min(times) / min(fwd):.2f}), "
                f"medians over {args.repeats}; {rep.summary()}"
            )


if __name__ == "__main__":
    main()
