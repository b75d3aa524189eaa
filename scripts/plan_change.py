"""The per-kind rates change plans: the exact solver's plan under the roofline vs under one FLOP/s figure, measured.

On k devices like this machine (the newest ``iopopt profile``, or ``--profile DIR``) and its loopback network,
solve a zoo model with the ILP twice -- with the profiled roofline device, and with a device given only its conv
rate and overhead (the model of the first release) -- then run both plans for real with the DistributedExecutor
(gloo on loopback, one process and one torch thread per device, float32), alternating the two plans over
``--rounds`` launches, and write what differs, what each model predicts for each plan, and what was measured::

    .venv/bin/python scripts/plan_change.py --model alexnet --k 2 --out outputs/reference/roofline
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from datetime import datetime
from pathlib import Path

import torch

from iopopt import Cluster, Device, Problem, trace, zoo
from iopopt.compile import compile_plan
from iopopt.cost import evaluate
from iopopt.exec.distributed import DistributedExecutor, Job
from iopopt.solver import make_solver
from iopopt.studies.profile.presets import load_presets, resolve_profile


def _cluster(device: Device, k: int, name: str) -> Cluster:
    import dataclasses

    return Cluster(tuple(dataclasses.replace(device, name=f"d{i}") for i in range(k)), name=name)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="alexnet")
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--profile", default="latest")
    ap.add_argument("--rounds", type=int, default=5, help="launches, each running both plans")
    ap.add_argument("--repeats", type=int, default=10, help="timed inferences per plan and launch")
    ap.add_argument("--out", default="outputs/plan_change")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    try:
        where = resolve_profile(a.profile)
        profiled, network = load_presets(where)
    except (FileNotFoundError, ValueError) as exc:  # no such profile, or one of an earlier iopopt
        print(f"plan_change: --profile {exc}", file=sys.stderr)
        return 2
    roof = profiled.devices[0]
    flat = Device(roof.name, roof.flops_per_s, roof.memory_bytes, roof.op_overhead_s)
    module, shape = zoo.build(a.model)
    graph = trace(module, shape, name=a.model)
    problems = {"roofline": Problem(graph, _cluster(roof, a.k, "roofline"), network),
                "flops only": Problem(graph, _cluster(flat, a.k, "flops only"), network)}
    solver = make_solver("ilp", time_limit_s=300)
    results = {name: solver.solve(p) for name, p in problems.items()}
    plans = {name: r.plan for name, r in results.items()}
    diff = [(op.name, str(op.kind), plans["flops only"][op.name], plans["roofline"][op.name]) for op in graph
            if plans["flops only"][op.name] != plans["roofline"][op.name]]
    predicted = {(m, p): evaluate(problems[m], plans[p]).latency_s for m in problems for p in plans}
    programs = {name: compile_plan(problems["roofline"], plan) for name, plan in plans.items()}
    loads, measured = [], {name: [] for name in plans}
    ex = DistributedExecutor(threads=1, dtype=torch.float32, warmup=2, repeats=a.repeats, timeout_s=120)
    for r in range(a.rounds):
        order = list(plans) if r % 2 == 0 else list(reversed(plans))
        loads.append(os.getloadavg()[0])
        traces = ex.run_many([Job(programs[name], module) for name in order])
        for name, t in zip(order, traces):
            measured[name].extend(t.latencies_s)
        print(f"round {r + 1}/{a.rounds}: " + ", ".join(f"{n} {statistics.median(measured[n]) * 1e3:.2f} ms"
                                                        for n in plans), flush=True)
    loads.append(os.getloadavg()[0])
    med = {name: statistics.median(v) for name, v in measured.items()}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# The per-kind rates change the ILP's plan: {a.model} on {a.k} devices like this machine",
        "",
        f"Date {datetime.now():%Y-%m-%d %H:%M}; profile `{where}`; load average during the runs "
        f"{min(loads):.2f}–{max(loads):.2f}. Command: `.venv/bin/python scripts/plan_change.py "
        + " ".join(argv if argv is not None else sys.argv[1:]) + "`.",
        "",
        f"Cluster: {a.k} copies of the profiled device; network: the profiled loopback ({network.name}: "
        f"{network.latency_s * 1e3:.2f} ms per message, {network.bandwidth_bytes_per_s / 1e9:.2f} GB/s). "
        "`roofline`: the profiled device (per-kind rates and bandwidths); `flops only`: the same device with only "
        "its conv rate and overhead. Both solved with `ilp` (full space); both plans run with the "
        f"DistributedExecutor ({a.k} processes on loopback, one torch thread each, float32), {a.rounds} launches "
        f"alternating the order, {a.repeats} timed inferences per plan and launch; latency = median over inferences "
        "of the max over ranks.",
        "",
        f"Plans differ in {len(diff)} of {len(graph)} nodes:",
        "",
        "| node | kind | plan under flops only | plan under roofline |",
        "|---|---|---|---|",
        *[f"| {n} | {k} | {s} | {t} |" for n, k, s, t in diff],
        "",
        "| plan | predicted (roofline) ms | predicted (flops only) ms | measured ms (median) | measured IQR ms |",
        "|---|---|---|---|---|",
    ]
    for name in plans:
        q = statistics.quantiles(measured[name], n=4)
        lines.append(f"| ilp under {name} | {predicted[('roofline', name)] * 1e3:.2f} | "
                     f"{predicted[('flops only', name)] * 1e3:.2f} | {med[name] * 1e3:.2f} | "
                     f"{q[0] * 1e3:.2f}–{q[2] * 1e3:.2f} |")
    faster = min(med, key=med.get)
    lines += ["", f"Measured faster: **the plan chosen under {faster}** "
              f"({abs(med['roofline'] / med['flops only'] - 1):.1%} apart).", "",
              f"Per launch (median of its {a.repeats} inferences, ms; the two plans of a launch run back to back, "
              "order alternating):", "", "| launch | roofline plan | flops-only plan |", "|---|---|---|"]
    wins = 0
    for r in range(a.rounds):
        pair = [statistics.median(measured[n][r * a.repeats:(r + 1) * a.repeats]) for n in ("roofline", "flops only")]
        wins += pair[0] < pair[1]
        lines.append(f"| {r + 1} | {pair[0] * 1e3:.1f} | {pair[1] * 1e3:.1f} |")
    lines += ["", f"The roofline plan was faster in {wins} of {a.rounds} launches.", ""]
    (out / "plan_change.md").write_text("\n".join(lines))
    (out / "plan_change.json").write_text(json.dumps({
        "model": a.model, "k": a.k, "profile": str(where), "diff": diff, "loads": loads,
        "predicted_ms": {f"{m} model, {p} plan": v * 1e3 for (m, p), v in predicted.items()},
        "measured_s": measured, "plans": {n: p.to_dict() for n, p in plans.items()},
        "terminations": {n: r.termination for n, r in results.items()},
    }, indent=2))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
