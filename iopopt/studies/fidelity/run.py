"""Run the fidelity study: plans of several solvers measured with the distributed executor, beside the model."""

from __future__ import annotations

import hashlib
import json
import math
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ...compile.program import compile_plan
from ...cost.evaluate import evaluate_program
from ...exec.distributed import DistributedExecutor, Job, check_trace
from ...frontend.capture import trace
from ...model.cluster import Cluster, Device
from ...model.network import SwitchedNetwork
from ...model.problem import Problem
from ...solvers.registry import make_solver
from ..profile.presets import device_figures, preset_latency

__all__ = ["FidelityPoint", "run_fidelity", "predict_contention", "predict_extended", "summarize", "MODELS", "SOLVERS"]


SOLVERS = ("single", "coedge", "oc", "greedy_iop", "ilp")
MODELS = ("alexnet", "resnet18", "synthetic")
#: The synthetic net: :func:`iopopt.synthetic.random_cnn` settings (a 41-node DAG, ~1 GFLOP, one linear layer).
SYNTHETIC = dict(seed=1, n_layers=16, kind="dag", channels=(16, 96), input_hw=(96, 96))
_MEMORY_KINDS = ("act", "bn", "adaptive_avgpool", "adaptive_maxpool", "add", "cat")
_POOL_KINDS = ("maxpool", "avgpool")


@dataclass
class FidelityPoint:
    """One plan measured and predicted."""

    model: str
    k: int
    solver: str
    termination: str
    plan_id: str
    predicted_s: float
    pingpong_s: float
    pred_compute_s: float
    pred_comm_s: float
    contention_s: float
    extended_s: float
    measured_s: float
    meas_compute_s: float
    meas_comm_s: float
    measured_barrier_s: float | None
    messages: int
    bytes_sent: int
    output_ok: bool
    load_before: float
    load_after: float
    latencies_s: list = field(default_factory=list)

    @property
    def error(self) -> float:
        return self.predicted_s / self.measured_s - 1.0


# -- diagnostic predictions ------------------------------------------------------------------------


def _core_share(n_active: int, cores: int, threads: int) -> float:
    return min(1.0, cores / max(1, n_active * threads))


def predict_contention(program, f_solo: float, overhead_s: float, cores: int, threads: int = 1) -> float:
    """The cost model with each step's compute slowed by the core share of its active ranks."""
    total = 0.0
    for step in program.steps:
        total += step.comm_s
        t = step.term
        n = sum(t.active)
        c = _core_share(n, cores, threads)
        total += max((t.flops[d] / (f_solo * c) + overhead_s for d in range(len(t.flops)) if t.active[d]), default=0.0)
    return total


def step_compute_extended(step, prof: dict, cores: int, threads: int, dtype_bytes: int = 4) -> float:
    """Per-kind compute time of one step (max over active ranks) under core contention."""
    t = step.term
    op = step.op
    n = sum(t.active)
    c = _core_share(n, cores, threads)
    f_conv, f_lin = prof["conv_flops_per_s"], prof["linear_flops_per_s"]
    mem = prof["mem_bytes_per_s"]
    over = prof["op_overhead_s"]
    worst = 0.0
    for d in range(len(t.flops)):
        if not t.active[d]:
            continue
        if op.kind == "linear":
            x = t.flops[d] / f_lin
        elif op.kind in _POOL_KINDS:
            x = t.flops[d] / prof["pool_flops_per_s"]
        elif op.kind in _MEMORY_KINDS:
            nbytes = t.out.nbytes(d, dtype_bytes) + sum(r.nbytes(d, dtype_bytes) for r in t.required)
            x = nbytes / mem
        else:
            x = t.flops[d] / f_conv
        worst = max(worst, x / c + over)
    return worst


def predict_extended(program, prof: dict, cores: int, threads: int = 1) -> float:
    return sum(step.comm_s + step_compute_extended(step, prof, cores, threads) for step in program.steps)


# -- building the problems -------------------------------------------------------------------------


def build_model(name: str, hw: int | None):
    from ...frontend import zoo
    from ...frontend.synthetic import random_cnn

    if name == "synthetic":
        module, shape = random_cnn(**SYNTHETIC)
    else:
        module, shape = zoo.build(name)
        if hw:
            shape = (shape[0], shape[1], hw, hw)
    return module, shape


def _plan_id(plan) -> str:

    return hashlib.sha1(json.dumps(sorted(plan.items())).encode()).hexdigest()[:8]


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover
        return float("nan")


def run_fidelity(
    out: Path,
    prof: dict,
    models: Sequence[str] = MODELS,
    ranks: Sequence[int] = (2, 3, 4),
    solvers: Sequence[str] = SOLVERS,
    hw: int | None = None,
    warmup: int = 2,
    repeats: int = 10,
    ilp_time_s: float = 30.0,
    barrier: bool = True,
    log=print,
) -> tuple[list[FidelityPoint], list[dict]]:
    """Measure and predict every (model, k, solver); returns the points and per-kind rows."""

    cores = prof["machine"]["cpu_count"] or 1
    threads = prof["machine"]["threads_per_rank"]
    points: list[FidelityPoint] = []
    kinds: list[dict] = []
    for name in models:
        module, shape = build_model(name, hw)
        graph = trace(module, shape, name=name)
        log(f"[fidelity] {name} {shape}: {graph.total_flops / 1e9:.3f} GFLOPs, {len(graph)} nodes")
        for k in ranks:
            latency_s = preset_latency(prof, k)
            network = SwitchedNetwork(prof["bandwidth_bytes_per_s"], latency_s, name=f"profiled_loopback_x{k}")
            pingpong_net = SwitchedNetwork(prof["bandwidth_bytes_per_s"], prof["pingpong_latency_s"], name="pingpong")
            # the profile's roofline device (per-kind rates and bandwidths) when it has one, else one FLOP/s figure;
            # either scaled to the per-rank throughput measured with k ranks at once
            fig = device_figures(prof, k)
            cluster = Cluster(tuple(Device(f"r{d}", **fig) for d in range(k)), name=f"profiled_x{k}")
            problem = Problem(graph, cluster, network, name=f"{name}-x{k}")
            pp_problem = Problem(graph, cluster, pingpong_net, name=f"{name}-x{k}-pingpong")
            rows = []
            for sname in solvers:
                kw = {"time_limit_s": ilp_time_s} if sname == "ilp" else {}
                try:
                    res = make_solver(sname, **kw).solve(problem)
                except Exception as exc:  # a failing solver is reported, the study goes on
                    log(f"[fidelity]   {sname}: solver failed: {type(exc).__name__}: {exc}")
                    continue
                if res.plan is None:
                    log(f"[fidelity]   {sname}: no plan ({res.termination})")
                    continue
                rows.append((sname, res.termination, res.plan, compile_plan(problem, res.plan)))
            if not rows:
                continue
            jobs = [Job(pr, module) for *_, pr in rows]
            load0 = _load()
            t0 = time.perf_counter()
            ex = DistributedExecutor(threads=threads, dtype=torch.float32, warmup=warmup, repeats=repeats,
                                     timeout_s=120, run_timeout_s=1800)
            traces = ex.run_many(jobs)
            barrier_traces = [None] * len(jobs)
            if barrier:
                exb = DistributedExecutor(threads=threads, dtype=torch.float32, warmup=1, repeats=max(3, repeats // 2),
                                          timeout_s=120, run_timeout_s=1800, step_barrier=True)
                barrier_traces = exb.run_many(jobs)
            load1 = _load()
            log(f"[fidelity]   k={k}: ran {len(jobs)} plans in {time.perf_counter() - t0:.1f} s "
                f"(load {load0:.2f} -> {load1:.2f})")
            for (sname, term, plan, program), tr, trb in zip(rows, traces, barrier_traces):
                rep = evaluate_program(program)
                table = tr.step_table()
                ok = check_trace(program, tr, module, dtype=torch.float32).passed
                p = FidelityPoint(
                    model=name,
                    k=k,
                    solver=sname,
                    termination=term,
                    plan_id=_plan_id(plan),
                    predicted_s=rep.latency_s,
                    pingpong_s=evaluate_program(compile_plan(pp_problem, plan)).latency_s,
                    pred_compute_s=rep.compute_s,
                    pred_comm_s=rep.comm_s,
                    contention_s=predict_contention(program, prof["conv_flops_per_s"], prof["op_overhead_s"], cores,
                                                    threads),
                    extended_s=predict_extended(program, prof, cores, threads),
                    measured_s=tr.latency_s,
                    meas_compute_s=sum(r["compute_s"] for r in table),
                    meas_comm_s=sum(r["comm_s"] for r in table),
                    measured_barrier_s=None if trb is None else trb.latency_s,
                    messages=tr.messages,
                    bytes_sent=sum(tr.bytes_sent),
                    output_ok=ok,
                    load_before=load0,
                    load_after=load1,
                    latencies_s=list(tr.latencies_s),
                )
                points.append(p)
                log(f"[fidelity]   {sname:<11} predicted {p.predicted_s * 1e3:8.2f} ms  measured "
                    f"{p.measured_s * 1e3:8.2f} ms  error {p.error * 100:+6.1f}%  extended {p.extended_s * 1e3:8.2f} ms"
                    + ("" if ok else "  OUTPUT MISMATCH"))
                # per operator kind: measured (max over ranks per step) vs model compute
                agg: dict[str, list[float]] = {}
                for step, row in zip(program.steps, table):
                    kind = step.op.kind
                    if kind in ("input", "output"):
                        continue
                    a = agg.setdefault(kind, [0.0, 0.0, 0.0, 0])
                    a[0] += row["compute_s"]
                    a[1] += step.term.compute_s
                    a[2] += step_compute_extended(step, prof, cores, threads)
                    a[3] += 1
                for kind, (m, pr_, ext, n) in sorted(agg.items()):
                    kinds.append({"model": name, "k": k, "solver": sname, "kind": kind, "steps": n,
                                  "measured_compute_s": m, "model_compute_s": pr_, "extended_compute_s": ext})
    return points, kinds


# -- summary ---------------------------------------------------------------------------------------


def _spearman(a, b) -> float:
    """Spearman's rank correlation, rounded to 12 digits: scipy computes it in floating point, and the 0.8
    of four plans with one adjacent pair swapped came out as 0.7999999999999999, below a 0.8 threshold.

    >>> _spearman([1, 2, 3, 4], [1, 2, 4, 3])
    0.8
    """
    from scipy.stats import spearmanr

    if len(a) < 3:
        return float("nan")
    rho = float(spearmanr(a, b).statistic)
    return rho if math.isnan(rho) else round(rho, 12)


def _mdape(points, attr: str = "predicted_s") -> float:
    return statistics.median(abs(getattr(p, attr) / p.measured_s - 1.0) for p in points)


def summarize(points: Sequence[FidelityPoint]) -> dict:
    meas = [p.measured_s for p in points]
    out = {"n": len(points)}
    for label, attr in (("model", "predicted_s"), ("pingpong", "pingpong_s"), ("contention", "contention_s"),
                        ("extended", "extended_s")):
        pred = [getattr(p, attr) for p in points]
        out[label] = {"spearman": _spearman(pred, meas), "mdape": _mdape(points, attr)}
    groups: dict[tuple, list] = {}
    for p in points:
        groups.setdefault((p.model, p.k), []).append(p)
    out["groups"] = []
    for (m, k), ps in groups.items():
        out["groups"].append(
            {
                "model": m,
                "k": k,
                "spearman": _spearman([p.predicted_s for p in ps], [p.measured_s for p in ps]),
                "spearman_extended": _spearman([p.extended_s for p in ps], [p.measured_s for p in ps]),
                "mdape": _mdape(ps),
                "mdape_extended": _mdape(ps, "extended_s"),
                "measured_spread": max(p.measured_s for p in ps) / min(p.measured_s for p in ps),
            }
        )
    by_k: dict[int, list] = {}
    for p in points:
        by_k.setdefault(p.k, []).append(p)
    out["by_k"] = {
        k: {
            "mdape": _mdape(ps),
            "spearman": _spearman([p.predicted_s for p in ps], [p.measured_s for p in ps]),
            "mdape_extended": _mdape(ps, "extended_s"),
            "spearman_extended": _spearman([p.extended_s for p in ps], [p.measured_s for p in ps]),
        }
        for k, ps in sorted(by_k.items())
    }
    return out
