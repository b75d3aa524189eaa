"""The ILP's backends (HiGHS in process, CBC as a subprocess) on the instances of the speed targets.

Cases (assumed devices and networks, as in ``bench_space.py`` and ``bench_torchvision.py``):

- ``paper``: the ILP solves of the paper comparison, alexnet / vgg16 / resnet18 on 2-4 Raspberry Pi 4 over
  gigabit Ethernet and 100 Mbit/s Wi-Fi, full and pairs spaces (36 solves; the total is printed);
- ``k8``: resnet50 on 8 devices, switched gigabit (target < 10 s);
- ``capped``: resnet50 on 4 devices, every capacity 0.4x the single-device peak (target < 10 s);
- ``dense4``: densenet201 (torchvision) on 4 devices, switched 10 Gbit/s (target < 10 s);
- ``dense16``: densenet201 on 16 devices, cost-term tables plus solve (target < 10 s).

Every case runs on a fresh problem (its cost terms are built inside the timing); per case and backend:
variables, binaries, rows, seconds (build: tables and model; solve: the backend), termination and the
optimum, medians over ``--repeats``. ``--root DIR`` imports iopopt from another checkout (e.g. ``git archive``
of an older commit) for "before" figures. Run from the repository root::

    .venv/bin/python benchmarks/bench_backends.py [--cases paper,k8,capped,dense4,dense16] [--repeats 3]
        [--backends HiGHS,PULP_CBC_CMD] [--root DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--root", default=str(HERE.parent), help="iopopt checkout to import")
    ap.add_argument("--cases", default="paper,k8,capped,dense4,dense16")
    ap.add_argument("--backends", default="HiGHS,PULP_CBC_CMD")
    args = ap.parse_args(argv)
    sys.path.insert(0, args.root)
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(HERE.parent / "tests"))
    import torch

    torch.set_num_threads(1)
    from _machine import machine

    import iopopt
    from iopopt import Cluster, Device, Problem, evaluate
    from iopopt.network import SwitchedNetwork
    from iopopt.solvers.ilp import IlpSolver

    print(machine())
    print(f"iopopt from {Path(iopopt.__file__).parent}; load average {os.getloadavg()}; torch threads 1; "
          f"medians of {args.repeats}", flush=True)
    backends = args.backends.split(",")

    def run(label, make, space="full"):
        for backend in backends:
            rows = []
            for _ in range(args.repeats):
                problem = make()
                t0 = time.perf_counter()
                r = IlpSolver(backend=backend, space=space, time_limit_s=120).solve(problem)
                rows.append((time.perf_counter() - t0, r.extra["build_s"], r.extra.get("solve_s", 0.0), r))
            r = rows[-1][3]
            med = [statistics.median(x[i] for x in rows) for i in range(3)]
            print(f"{label:<30} {backend:<13} vars {r.extra['variables']:>7} bins {r.extra['binaries']:>6} "
                  f"rows {r.extra['constraints']:>6}  total {med[0]:6.2f}s  build {med[1]:5.2f}s  "
                  f"solve {med[2]:6.2f}s  {r.termination}  {(r.objective or float('nan')) * 1e3:.4f} ms", flush=True)
            yield med[0]

    wanted = args.cases.split(",")
    if "paper" in wanted:
        from omegaconf import OmegaConf

        from iopopt.app.configs import build_cluster
        from iopopt.app.targets import build_network

        conf = Path(iopopt.__file__).parent / "conf"

        def preset(group, name):
            return OmegaConf.load(conf / group / f"{name}.yaml")

        totals = dict.fromkeys(backends, 0.0)
        for model in ("alexnet", "vgg16", "resnet18"):
            module, shape = iopopt.zoo.build(model)
            graph = iopopt.trace(module, shape, name=model)
            for k in (2, 3, 4):
                cl = build_cluster(preset("cluster", f"rpi4_x{k}"))
                for net_name in ("ethernet_1g", "wifi_100mbps"):
                    net = build_network(preset("network", net_name))
                    for space in ("full", "pairs"):
                        label = f"{model} k={k} {net_name} {space}"
                        make = lambda cl=cl, net=net: Problem(graph, cl, net)  # noqa: E731
                        for backend, total in zip(backends, run(label, make, space)):
                            totals[backend] += total
        print("paper-like ILP solves (36): " + ", ".join(f"{b} {t:.2f} s" for b, t in totals.items()), flush=True)
    if "k8" in wanted or "capped" in wanted:
        module, shape = iopopt.zoo.build("resnet50")
        graph = iopopt.trace(module, shape, name="resnet50")
        speeds = (5e9, 10e9, 2.5e9)

        def cluster(k, cap=float("inf")):
            return Cluster(tuple(Device(f"d{i}", speeds[i % 3], cap) for i in range(k)))

        if "k8" in wanted:
            net = SwitchedNetwork(125e6, 1e-4)
            list(run("resnet50 k=8 gigabit", lambda: Problem(graph, cluster(8), net)))
        if "capped" in wanted:
            net = SwitchedNetwork(125e6, 1e-4)
            single = evaluate(Problem(graph, cluster(4), net), Problem(graph, cluster(4), net).plan({}))
            cap = 0.4 * single.peak_memory_bytes
            list(run("resnet50 k=4 cap 0.4x", lambda: Problem(graph, cluster(4, cap), net)))
    if "dense4" in wanted or "dense16" in wanted:
        from _torchvision import meta_model

        from iopopt.frontend import tvmodels

        graph = iopopt.trace(meta_model("densenet201"), tvmodels.default_input_shape("densenet201"),
                             name="densenet201")
        speeds = (8e9, 4e9, 2e9, 4e9, 8e9, 2e9)
        net = SwitchedNetwork(1.25e9, 2e-5)
        for k in (4, 16):
            if f"dense{k}" in wanted:
                cl = Cluster(tuple(Device(f"d{i}", speeds[i % 6]) for i in range(k)))
                list(run(f"densenet201 k={k}", lambda cl=cl: Problem(graph, cl, net)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
