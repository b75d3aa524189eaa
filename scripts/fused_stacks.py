"""Fused spatial stacks against per-layer halo exchange (CoEdge) on a slow shared network.

VGG-16 on ``rpi4_x4`` over ``wifi_10mbps`` and ``wifi_50mbps`` (the shipped presets): the latency of ``single``,
``coedge`` (every conv and its followers in ``rows``, halos exchanged before each windowed op), ``deepthings`` (one
fused stack over the early layers), ``ilp`` without fused stacks and ``ilp`` with them (``fused_depth``), and the
stacks the ILP chooses. Every plan is verified in float64 with ``--verify`` (slow: VGG-16 on 4 simulated devices).
Run from the repository root::

    .venv/bin/python scripts/fused_stacks.py [--model vgg16] [--cluster rpi4_x4] [--networks wifi_10mbps wifi_50mbps]
        [--depth 12] [--verify]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import torch
from omegaconf import OmegaConf

import iopopt
from iopopt import Problem
from iopopt.app.configs import build_cluster
from iopopt.app.targets import build_network
from iopopt.model.fused import stacks
from iopopt.solvers import make_solver
from iopopt.solvers.registry import CONF_DIR


def _preset(group: str, name: str):
    return OmegaConf.load(CONF_DIR / group / f"{name}.yaml")


def _row(label: str, problem: Problem, plan, solve_s: float, module, verify: bool) -> dict:
    r = iopopt.evaluate(problem, plan)
    out = {"solver": label, "latency_ms": r.latency_s * 1e3, "compute_ms": r.compute_s * 1e3,
           "comm_ms": r.comm_s * 1e3, "messages": r.messages, "MB_sent": r.bytes_sent / 1e6,
           "solve_s": solve_s, "stacks": stacks(problem.graph, plan), "plan": plan}
    if verify:
        check = iopopt.verify(problem, plan, module)
        out["verified"] = check.passed and check.messages_match and check.weights_match and check.memory_match
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="vgg16")
    ap.add_argument("--cluster", default="rpi4_x4")
    ap.add_argument("--networks", nargs="+", default=["wifi_10mbps", "wifi_50mbps"])
    ap.add_argument("--depth", type=int, default=12, help="fused_depth: longest stack, in ops after its first")
    ap.add_argument("--verify", action="store_true")
    args = ap.parse_args(argv)
    if args.depth < 1:
        print(f"--depth must be >= 1, got {args.depth}", file=sys.stderr)
        return 2
    for flag, group, names in (("--model", None, [args.model]), ("--cluster", "cluster", [args.cluster]),
                               ("--networks", "network", args.networks)):
        valid = iopopt.zoo.names() if group is None else sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
        bad = [n for n in names if n not in valid]
        if bad:
            print(f"{flag}: unknown {bad[0]!r}; valid: {', '.join(valid)}", file=sys.stderr)
            return 2
    torch.set_num_threads(1)
    module, shape = iopopt.zoo.build(args.model)
    graph = iopopt.trace(module, shape, name=args.model)
    cluster = build_cluster(_preset("cluster", args.cluster))
    fused_cluster = dataclasses.replace(cluster, fused_depth=args.depth)
    for net_name in args.networks:
        network = build_network(_preset("network", net_name))
        plain = Problem(graph, cluster, network)
        fused = Problem(graph, fused_cluster, network)
        rows = []
        for label, name, problem in (("single", "single", plain), ("coedge", "coedge", plain),
                                     ("deepthings", "deepthings", plain), ("ilp", "ilp", plain),
                                     (f"ilp+fused{args.depth}", "ilp", fused)):
            start = time.perf_counter()
            res = make_solver(name).solve(problem)
            took = time.perf_counter() - start
            row = _row(label, problem, res.plan, took, module, args.verify)
            row["termination"] = res.termination
            rows.append(row)
        print(f"\n{args.model} on {args.cluster}, {net_name}")
        for row in rows:
            extra = f" verified={row['verified']}" if "verified" in row else ""
            print(f"  {row['solver']:<14} {row['latency_ms']:9.1f} ms  compute {row['compute_ms']:8.1f}  comm "
                  f"{row['comm_ms']:8.1f}  {row['messages']:4d} msgs  {row['MB_sent']:7.2f} MB  "
                  f"({row['termination']}, {row['solve_s']:.1f} s){extra}")
        by = {row["solver"]: row for row in rows}
        best = by[f"ilp+fused{args.depth}"]
        print(f"  deepthings vs coedge: {by['coedge']['latency_ms'] / by['deepthings']['latency_ms']:.2f}x; "
              f"ilp with fused stacks vs coedge: {by['coedge']['latency_ms'] / best['latency_ms']:.2f}x, "
              f"vs ilp without: {by['ilp']['latency_ms'] / best['latency_ms']:.3f}x")
        for s in best["stacks"]:
            print(f"  ilp fuses {len(s)} ops: {s[0]} .. {s[-1]}")
        plan = best["plan"]
        print("  ilp+fused plan: " + " ".join(f"{n}={plan[n]}" for n in graph.order if plan[n] != "host"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
