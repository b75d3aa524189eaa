"""Fidelity of the cost model: measured distributed latency against the calibrated model's prediction.

For each model (AlexNet and ResNet-18 from the zoo at 224×224, and a seeded
synthetic DAG CNN) and each rank count (default 2, 3 and 4, one torch thread
per rank, all on this machine's loopback), the plans of the solvers
``single``, ``coedge``, ``oc``, ``greedy_iop`` and ``ilp`` (time-limited) are
found on a problem whose cluster and network come from ``iopopt profile``
measurements of this machine, then run for real with the
:class:`~iopopt.distributed.DistributedExecutor` (float32, warm-up, then the
median of ``repeats`` timed inferences). Per plan the relative error of the
prediction is ``predicted / measured − 1``; overall the Spearman rank
correlation and the median absolute percentage error.

Besides the cost model's prediction (``predicted_s``) the report gives two
diagnostic predictions computed here, from the same Program, to show what the
model misses:

* ``contention_s`` -- the model with compute time of step v divided by the
  core share ``min(1, cores / (active ranks of v · threads))`` and the solo
  throughput: ranks that outnumber the cores slow each other only when they
  compute at the same time;
* ``extended_s`` -- ``contention_s`` plus per-kind costs: linear layers at the
  measured (memory-bound) linear throughput, max/avg pooling at the measured
  pooling throughput, and activations / batchnorm / add / cat / adaptive
  pooling at the measured memory bandwidth (bytes in + out), instead of FLOPs
  at the conv throughput.

Writes ``fidelity.csv`` (one row per plan), ``kinds.csv`` (measured vs
predicted compute per operator kind), ``fidelity.md`` (tables, figures and
the diagnosis) and ``fidelity.png`` (measured vs predicted, log-log, with
y = x) into ``--out``. Entry: ``python -m iopopt.fidelity --out DIR``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch

__all__ = ["FidelityPoint", "run_fidelity", "predict_contention", "predict_extended", "summarize", "main"]

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
    from . import zoo
    from .synthetic import random_cnn

    if name == "synthetic":
        module, shape = random_cnn(**SYNTHETIC)
    else:
        module, shape = zoo.build(name)
        if hw:
            shape = (shape[0], shape[1], hw, hw)
    return module, shape


def _plan_id(plan) -> str:
    import hashlib

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
    from .cost import evaluate_program
    from .compiler import compile_plan
    from .distributed import DistributedExecutor, Job, check_trace
    from .graph import trace
    from .network import SwitchedNetwork
    from .problem import Problem
    from .cluster import Cluster, Device
    from .profile import preset_flops, preset_latency
    from .solver import make_solver

    cores = prof["machine"]["cpu_count"] or 1
    threads = prof["machine"]["threads_per_rank"]
    points: list[FidelityPoint] = []
    kinds: list[dict] = []
    for name in models:
        module, shape = build_model(name, hw)
        graph = trace(module, shape, name=name)
        log(f"[fidelity] {name} {shape}: {graph.total_flops / 1e9:.3f} GFLOPs, {len(graph)} nodes")
        for k in ranks:
            f = preset_flops(prof, k)
            network = SwitchedNetwork(prof["bandwidth_bytes_per_s"], preset_latency(prof, k), name=f"profiled_loopback_x{k}")
            pingpong_net = SwitchedNetwork(prof["bandwidth_bytes_per_s"], prof["pingpong_latency_s"], name="pingpong")
            cluster = Cluster(
                tuple(Device(f"r{d}", f, op_overhead_s=prof["op_overhead_s"]) for d in range(k)), name=f"profiled_x{k}"
            )
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
    from scipy.stats import spearmanr

    if len(a) < 3:
        return float("nan")
    rho = spearmanr(a, b).statistic
    return float(rho)


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


def write_csv(points: Sequence[FidelityPoint], path: Path) -> None:
    cols = [f for f in FidelityPoint.__dataclass_fields__ if f != "latencies_s"] + ["error", "extended_error"]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for p in points:
            d = asdict(p)
            d["error"] = p.error
            d["extended_error"] = p.extended_s / p.measured_s - 1.0
            w.writerow([d[c] for c in cols])


def write_kinds(kinds: Sequence[dict], path: Path) -> None:
    if not kinds:
        return
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(kinds[0]))
        w.writeheader()
        w.writerows(kinds)


def plot(points: Sequence[FidelityPoint], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5.5))
    colors = {m: c for m, c in zip(sorted({p.model for p in points}), ("tab:blue", "tab:orange", "tab:green",
                                                                         "tab:red", "tab:purple"))}
    markers = {2: "o", 3: "s", 4: "^", 5: "D", 6: "v"}
    summary = summarize(points)
    for ax, attr, title in ((axes[0], "predicted_s", "cost model (profiled)"),
                            (axes[1], "extended_s", "diagnostic: + contention + per-kind rates")):
        for p in points:
            ax.scatter(p.measured_s * 1e3, getattr(p, attr) * 1e3, color=colors[p.model],
                       marker=markers.get(p.k, "x"), s=40, alpha=0.8)
        vals = [p.measured_s * 1e3 for p in points] + [getattr(p, attr) * 1e3 for p in points]
        lo, hi = min(vals) / 1.5, max(vals) * 1.5
        ax.plot([lo, hi], [lo, hi], "k-", lw=1, label="y = x")
        ax.plot([lo, hi], [lo * 1.25, hi * 1.25], "k:", lw=0.8, label="±25%")
        ax.plot([lo, hi], [lo * 0.75, hi * 0.75], "k:", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel("measured latency (ms)")
        ax.set_ylabel("predicted latency (ms)")
        s = summary["model" if attr == "predicted_s" else "extended"]
        ax.set_title(f"{title}\nSpearman ρ = {s['spearman']:.2f}, median |error| = {s['mdape'] * 100:.0f}%")
        ax.grid(True, which="both", alpha=0.3)
    handles = [plt.Line2D([], [], color=c, marker="o", ls="", label=m) for m, c in colors.items()]
    handles += [plt.Line2D([], [], color="gray", marker=markers.get(k, "x"), ls="", label=f"{k} ranks")
                for k in sorted({p.k for p in points})]
    axes[0].legend(handles=handles, loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _ms(x) -> str:
    return "—" if x is None else f"{x * 1e3:.2f}"


def write_markdown(points, kinds, prof: dict, settings: dict, path: Path) -> str:
    s = summarize(points)
    m = s["model"]
    met = m["spearman"] >= 0.8 and m["mdape"] <= 0.25
    cores = prof["machine"]["cpu_count"]
    L = []
    L.append("# Cost-model fidelity: measured distributed latency vs the calibrated model\n")
    L.append(
        f"Machine: {cores} cores, torch {prof['machine']['torch']}, 1 thread per rank, float32, gloo over loopback. "
        f"Models: {', '.join(settings['models'])} (input {settings['hw_text']}); ranks {list(settings['ranks'])}; "
        f"solvers {', '.join(settings['solvers'])} (ilp time limit {settings['ilp_time_s']:g} s); "
        f"{settings['warmup']} warm-up + {settings['repeats']} timed inferences per plan, latency = median over "
        "inferences of the max over ranks. No barrier between steps (a second run with a barrier after every step "
        "is the `barrier` column).\n"
    )
    from .profile import preset_flops, preset_latency, summary_line

    per_k = "; ".join(
        f"k={k}: {preset_flops(prof, k) / 1e9:.1f} GFLOP/s per device, latency {preset_latency(prof, k) * 1e3:.2f} ms"
        for k in settings["ranks"]
    )
    L.append(
        f"Calibration (`iopopt profile`, measured just before): {summary_line(prof)}. Presets used per rank count: "
        f"{per_k}; bandwidth {prof['bandwidth_bytes_per_s'] / 1e9:.2f} GB/s, switched network, op overhead "
        f"{prof['op_overhead_s'] * 1e6:.1f} µs.\n"
    )
    L.append("## Headline\n")
    L.append("| predictor | Spearman ρ | median abs. error |\n|---|---|---|")
    for label, name in (("model", "cost model (profiled presets)"),
                        ("pingpong", "cost model with the idle ping-pong α instead of the loaded one"),
                        ("contention", "diagnostic: solo throughput × core share of the step's active ranks"),
                        ("extended", "diagnostic: + per-kind rates (linear, pooling, memory-bound)")):
        L.append(f"| {name} | {s[label]['spearman']:.3f} | {s[label]['mdape'] * 100:.1f}% |")
    L.append("")
    L.append(f"Target (ρ ≥ 0.8 and median error ≤ 25%) for the cost model: **{'met' if met else 'NOT met'}**.\n")
    L.append("Per rank count (all models and plans):\n")
    L.append("| k | ρ model | median error model | ρ extended | median error extended |\n|---|---|---|---|---|")
    for k, v in s["by_k"].items():
        L.append(f"| {k} | {v['spearman']:.2f} | {v['mdape'] * 100:.1f}% | {v['spearman_extended']:.2f} | "
                 f"{v['mdape_extended'] * 100:.1f}% |")
    L.append("")
    L.append("Per configuration (ranking of the plans of one model on one cluster):\n")
    L.append("| model | k | ρ model | ρ extended | median error model | median error extended | measured max/min |")
    L.append("|---|---|---|---|---|---|---|")
    for g in s["groups"]:
        L.append(f"| {g['model']} | {g['k']} | {g['spearman']:.2f} | {g['spearman_extended']:.2f} | "
                 f"{g['mdape'] * 100:.1f}% | {g['mdape_extended'] * 100:.1f}% | {g['measured_spread']:.2f} |")
    L.append("")
    L.append("## Per plan\n")
    L.append("Times in ms. `pred comp/comm`: the cost model's split; `meas comp/comm`: Σ over steps of the max over "
             "ranks of kernel time / resharding time (the comm figure includes waiting for slower peers).\n")
    L.append("| model | k | solver | predicted | measured | error | pred comp | pred comm | meas comp | meas comm | "
             "barrier | contention | extended | ext. error | msgs | MB |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for p in points:
        L.append(
            f"| {p.model} | {p.k} | {p.solver} | {_ms(p.predicted_s)} | {_ms(p.measured_s)} | {p.error * 100:+.1f}% | "
            f"{_ms(p.pred_compute_s)} | {_ms(p.pred_comm_s)} | {_ms(p.meas_compute_s)} | {_ms(p.meas_comm_s)} | "
            f"{_ms(p.measured_barrier_s)} | {_ms(p.contention_s)} | {_ms(p.extended_s)} | "
            f"{(p.extended_s / p.measured_s - 1) * 100:+.1f}% | {p.messages} | {p.bytes_sent / 1e6:.2f} |"
        )
    L.append("")
    # per-kind diagnosis
    L.append("## Where the error comes from\n")
    tot: dict[str, list[float]] = {}
    for r in kinds:
        a = tot.setdefault(r["kind"], [0.0, 0.0, 0.0, 0])
        a[0] += r["measured_compute_s"]
        a[1] += r["model_compute_s"]
        a[2] += r["extended_compute_s"]
        a[3] += r["steps"]
    L.append("Compute per operator kind, summed over every plan run (Σ over steps of the max over ranks), ms:\n")
    L.append("| kind | steps | measured | cost model | model / measured | extended | extended / measured |")
    L.append("|---|---|---|---|---|---|---|")
    for kind, (mm, pm, em, n) in sorted(tot.items(), key=lambda kv: -kv[1][0]):
        L.append(f"| {kind} | {n} | {mm * 1e3:.1f} | {pm * 1e3:.1f} | {pm / mm if mm else float('nan'):.2f} | "
                 f"{em * 1e3:.1f} | {em / mm if mm else float('nan'):.2f} |")
    L.append("")
    L.extend(_diagnosis(points, s, prof, tot))
    L.append("\n![measured vs predicted](fidelity.png)\n")
    text = "\n".join(L) + "\n"
    path.write_text(text)
    return text


def _diagnosis(points, s, prof, tot) -> list[str]:
    out = []
    cores = prof["machine"]["cpu_count"]
    comp_ratio = sum(p.pred_compute_s for p in points) / max(1e-12, sum(p.meas_compute_s for p in points))
    comm_ratio = sum(p.pred_comm_s for p in points) / max(1e-12, sum(p.meas_comm_s for p in points))
    out.append(f"- Over all plans, the model's compute is {comp_ratio:.2f}× the measured kernel time and its "
               f"communication {comm_ratio:.2f}× the measured resharding time (which includes waiting for peers).")
    lin = tot.get("linear")
    if lin and lin[0] > 0:
        out.append(f"- Linear layers at batch 1 are memory-bound: measured {lin[0] * 1e3:.1f} ms against "
                   f"{lin[1] * 1e3:.1f} ms predicted at the conv throughput ({lin[0] / max(lin[1], 1e-12):.1f}× "
                   "under-predicted). Fix: a per-kind throughput (or a roofline max(FLOPs/F, weight bytes/memory "
                   "bandwidth)) per device.")
    pools = [v for k, v in tot.items() if k in _POOL_KINDS]
    if pools and sum(v[0] for v in pools) > 0:
        mm, pm = sum(v[0] for v in pools), sum(v[1] for v in pools)
        out.append(f"- Max/avg pooling: measured {mm * 1e3:.1f} ms vs {pm * 1e3:.1f} ms predicted: torch's CPU pooling "
                   f"runs at {prof['pool_flops_per_s'] / 1e9:.2f} GFLOP/s (outputs × window), not at the conv rate. "
                   "Fix: a per-kind throughput.")
    memk = [v for k, v in tot.items() if k in _MEMORY_KINDS]
    mm = sum(v[0] for v in memk)
    pm = sum(v[1] for v in memk)
    if mm > 0:
        out.append(f"- Activations, batchnorm, add, cat, adaptive pooling: measured {mm * 1e3:.1f} ms vs "
                   f"{pm * 1e3:.1f} ms predicted (priced as FLOPs at the conv rate; they are bound by memory "
                   "bandwidth and per-call overhead). Fix: cost them by bytes moved / memory bandwidth.")
    loaded = prof.get("exchange_loaded_s") or {}
    idle = prof.get("exchange_idle_s") or {}
    if loaded:
        meas_comm = sum(p.meas_comm_s for p in points if p.messages)
        pred_comm = sum(p.pred_comm_s for p in points if p.messages)
        pp_comm = sum(p.pingpong_s - p.pred_compute_s for p in points if p.messages)
        out.append(
            f"- Messages: the idle ping-pong gives α = {prof['pingpong_latency_s'] * 1e6:.0f} µs, but one 12 KiB exchange "
            "with a ~1 ms conv on every rank between exchanges costs "
            + ", ".join(f"{float(v) * 1e3:.2f} ms with {n} ranks" for n, v in loaded.items())
            + " (without the conv: " + ", ".join(f"{float(v) * 1e3:.2f} ms" for v in idle.values()) + "). gloo "
            "delivers each message through a notify/ready handshake run by one I/O thread per rank, and those threads "
            "wait for a core while the ranks compute (2 cores, 2-4 compute threads). The presets use the loaded "
            f"figure; over the plans that send messages the model's communication is {pred_comm * 1e3:.0f} ms against "
            f"{meas_comm * 1e3:.0f} ms measured (with the ping-pong α it would be {pp_comm * 1e3:.0f} ms). A per-message α "
            "cannot express that the cost depends on how many ranks compute at the same time, nor that messages of "
            "one phase to different peers overlap. Fix: make the latency a function of the active ranks per core "
            "(like compute), or charge it per phase rather than per message."
        )
    for k, v in s["by_k"].items():
        out.append(f"- {k} ranks: median error {v['mdape'] * 100:.1f}%, ρ {v['spearman']:.2f}"
                   + (f" (more ranks than the {cores} cores: per-rank throughput depends on how many ranks compute "
                      "at once, which one flops_per_s per device cannot express; the `contention` column divides "
                      "each step's compute by min(1, cores / active ranks) with the solo throughput)."
                      if k > cores else "."))
    bar = [p for p in points if p.measured_barrier_s]
    if bar:
        r = statistics.median(p.measured_barrier_s / p.measured_s for p in bar)
        out.append(f"- With a barrier after every step (the model's layer-synchronous semantics) the measured latency "
                   f"is {r:.2f}× the barrier-free one (median over plans). A gloo barrier is itself a round of "
                   "messages with the delays above, so this mostly prices the barriers; it does not show that "
                   "barrier-free ranks gain much by running ahead (the model's sum of per-step maxima).")
    loads = [p.load_before for p in points] + [p.load_after for p in points]
    out.append(f"- Machine load (1-min load average) during the runs: {min(loads):.2f}–{max(loads):.2f} on {cores} "
               "cores; background load inflates and scatters the measured times.")
    return out


def load_points(path: Path) -> list[FidelityPoint]:
    """The points of a ``fidelity.csv``."""
    out = []
    types = {f.name: f.type for f in FidelityPoint.__dataclass_fields__.values()}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            kw = {}
            for name in FidelityPoint.__dataclass_fields__:
                if name == "latencies_s" or name not in row:
                    continue
                v = row[name]
                t = str(types[name])
                if t.startswith("int"):
                    kw[name] = int(v)
                elif t.startswith("bool"):
                    kw[name] = v == "True"
                elif t.startswith("float"):
                    kw[name] = None if v in ("", "None") else float(v)
                else:
                    kw[name] = v
            out.append(FidelityPoint(**kw))
    return out


def report(out: Path, points, kinds, prof: dict, settings: dict) -> dict:
    """Write fidelity.csv, kinds.csv, fidelity.png, fidelity.md and summary.json into ``out``."""
    write_csv(points, out / "fidelity.csv")
    write_kinds(kinds, out / "kinds.csv")
    plot(points, out / "fidelity.png")
    write_markdown(points, kinds, prof, settings, out / "fidelity.md")
    s = summarize(points)
    (out / "summary.json").write_text(json.dumps(s, indent=2, default=str))
    (out / "settings.json").write_text(json.dumps(settings, indent=2))
    return s


def main(argv: Sequence[str] | None = None) -> int:
    from .profile import run_profile, summary_line, write_presets

    ap = argparse.ArgumentParser(prog="python -m iopopt.fidelity", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--profile", default=None, help="an existing `iopopt profile` directory (profile.json); "
                    "default: profile now into OUT/profile")
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--ranks", nargs="+", type=int, default=[2, 3, 4])
    ap.add_argument("--solvers", nargs="+", default=list(SOLVERS))
    ap.add_argument("--hw", type=int, default=None, help="input height=width of zoo models (default: the zoo's 224)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--ilp-time", type=float, default=30.0)
    ap.add_argument("--no-barrier", action="store_true", help="skip the second run with a barrier after each step")
    ap.add_argument("--report-only", action="store_true",
                    help="rebuild the report of OUT from its fidelity.csv, kinds.csv and profile/profile.json")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = dict(models=a.models, ranks=a.ranks, solvers=a.solvers, ilp_time_s=a.ilp_time, warmup=a.warmup,
                    repeats=a.repeats, hw_text=f"{a.hw}×{a.hw}" if a.hw else "zoo default 224×224; synthetic 96×96")
    if a.report_only:
        prof = json.loads(((Path(a.profile) if a.profile else out / "profile") / "profile.json").read_text())
        if (out / "settings.json").exists():
            settings = json.loads((out / "settings.json").read_text())
        points = load_points(out / "fidelity.csv")
        with open(out / "kinds.csv", newline="") as fh:
            kinds = [{k: (v if k in ("model", "solver", "kind") else float(v)) for k, v in row.items()}
                     for row in csv.DictReader(fh)]
        s = report(out, points, kinds, prof, settings)
        print(f"[fidelity] report rebuilt: ρ {s['model']['spearman']:.3f}, median abs error "
              f"{s['model']['mdape'] * 100:.1f}%; {out}/fidelity.md")
        return 0
    t0 = time.perf_counter()
    if a.profile:
        prof = json.loads((Path(a.profile) / "profile.json").read_text())
    else:
        print("[fidelity] profiling this machine ...", flush=True)
        prof = run_profile(ranks=max(a.ranks))
        prof["stamp"] = time.strftime("%Y-%m-%d_%H-%M-%S")
        write_presets(prof, out / "profile")
    print(f"[fidelity] profile: {summary_line(prof)}", flush=True)
    points, kinds = run_fidelity(
        out, prof, a.models, a.ranks, a.solvers, a.hw, a.warmup, a.repeats, a.ilp_time, not a.no_barrier,
        log=lambda m: print(m, flush=True),
    )
    if not points:
        print("[fidelity] no plan was measured", file=sys.stderr)
        return 1
    s = report(out, points, kinds, prof, settings)
    print(f"[fidelity] {len(points)} plans in {time.perf_counter() - t0:.0f} s: Spearman ρ {s['model']['spearman']:.3f}, "
          f"median abs error {s['model']['mdape'] * 100:.1f}% (extended: ρ {s['extended']['spearman']:.3f}, "
          f"{s['extended']['mdape'] * 100:.1f}%); wrote {out}/fidelity.md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
