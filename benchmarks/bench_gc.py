"""The garbage collector during the ILP build: cost-term tables plus the PuLP model of resnet50 on 8 devices,
with the collector on and paused (``IlpSolver`` pauses it), median of 3. Run from the repository root::

    .venv/bin/python benchmarks/bench_gc.py
"""

import gc
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pulp

import iopopt
from iopopt import Cluster, Device, Problem
from iopopt.network import SwitchedNetwork
from iopopt.solvers.ilp.model import build

m, s = iopopt.zoo.build("resnet50")
g = iopopt.trace(m, s)
speeds = (5e9, 10e9, 2.5e9)
res = {True: [], False: []}
for _ in range(3):
    for on in (True, False):
        p = Problem(g, Cluster(tuple(Device(f"d{i}", speeds[i % 3]) for i in range(8))), SwitchedNetwork(125e6, 1e-4))
        gc.collect()
        if not on:
            gc.disable()
        t = time.perf_counter()
        build(pulp, p, "full", "coedge", "auto")
        res[on].append(time.perf_counter() - t)
        gc.enable()
medians = {("gc on" if k else "gc off"): round(statistics.median(v), 2) for k, v in res.items()}
print(medians, "load", os.getloadavg()[0])
