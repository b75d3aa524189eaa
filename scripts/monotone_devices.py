"""Adding a device never slows the optimum: ilp on k devices and on the same k plus one more, with device subsets.

On the paper's instances (alexnet, vgg16, resnet18 on rpi4_x2 → x3 → x4, ethernet_1g and wifi_100mbps) and on
``--synthetic N`` random CNNs (2-4 random devices plus one random device), it solves each instance with
``Cluster(subsets=True)`` (every split also on the m fastest devices) and, for comparison, without, and counts the
instances whose optimum on k+1 devices is slower than on k. Run from the repository root::

    .venv/bin/python scripts/monotone_devices.py [--synthetic 50] [--no-paper]
"""

from __future__ import annotations

import argparse
import random
import sys
import time

import iopopt
from iopopt import Cluster, Device, Problem
from iopopt.frontend.synthetic import random_cnn
from iopopt.network import SharedNetwork, SwitchedNetwork
from iopopt.solvers.ilp import IlpSolver

RTOL = 1e-9


def _optimum(graph, devices, network, subsets: bool) -> float:
    problem = Problem(graph, Cluster(tuple(devices), subsets=subsets), network)
    r = IlpSolver(time_limit_s=300).solve(problem)
    if r.termination != "optimal":
        raise RuntimeError(f"{graph.name} on {len(devices)} devices: {r.termination}")
    return r.objective


def paper_instances():
    rpi = dict(flops_per_s=8e9, memory_bytes=3e9, op_overhead_s=1e-4, memory_bandwidth_bytes_per_s=5.5e9)
    nets = {"ethernet_1g": SwitchedNetwork(1.25e8, 1e-4), "wifi_100mbps": SharedNetwork(1.25e7, 1e-3)}
    for name in ("alexnet", "vgg16", "resnet18"):
        module, shape = iopopt.zoo.build(name)
        graph = iopopt.trace(module, shape, name=name)
        for net_name, net in nets.items():
            for k in (2, 3):
                devices = [Device(f"rpi{i}", **rpi) for i in range(k + 1)]
                yield f"{name} rpi4_x{k}->x{k + 1} {net_name}", graph, devices, net


def synthetic_instances(n: int):
    for seed in range(n):
        rng = random.Random(seed)
        module, shape = random_cnn(seed, rng.randint(3, 8), kind=rng.choice(["chain", "dag"]), channels=(4, 32),
                                   input_hw=(16, 32))
        graph = iopopt.trace(module, shape, name=f"syn{seed}")
        k = rng.randint(2, 4)
        devices = [Device(f"d{i}", rng.choice([1e8, 2e8, 5e8, 1e9])) for i in range(k + 1)]
        bw = rng.choice([1e6, 6.25e6, 1.25e7, 1.25e8])
        net = SharedNetwork(bw, 1e-3) if rng.random() < 0.5 else SwitchedNetwork(bw, 1e-4)
        yield f"syn{seed} k{k}->{k + 1}", graph, devices, net


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--synthetic", type=int, default=50, help="number of synthetic instances")
    ap.add_argument("--no-paper", action="store_true", help="skip the paper's instances")
    args = ap.parse_args(argv)
    groups = ([] if args.no_paper else [("paper", paper_instances())]) + [
        ("synthetic", synthetic_instances(args.synthetic))]
    for group, instances in groups:
        slower = {True: 0, False: 0}
        count = 0
        t0 = time.perf_counter()
        for label, graph, devices, net in instances:
            count += 1
            row = [label]
            for subsets in (True, False):
                small = _optimum(graph, devices[:-1], net, subsets)
                big = _optimum(graph, devices, net, subsets)
                worse = big > small * (1 + RTOL)
                slower[subsets] += worse
                row.append(f"{'subsets' if subsets else 'no subsets'}: {small * 1e3:.3f} -> {big * 1e3:.3f} ms"
                           + (" SLOWER" if worse else ""))
            print("  ".join(row), flush=True)
        print(f"{group}: {count} instances; k+1 slower than k: {slower[True]} with subsets, "
              f"{slower[False]} without ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
