"""The jobs of the application: one solver on one instance, or a study over many.

One job = one solver on one instance (``study: single``), or one solver on a
list of instances (``study: gap``, the greedy-gap study; one record per
instance in ``instances.jsonl``). Every job writes ``result.json`` into its
Hydra output directory; a job whose solver or verification raises is recorded
with ``termination: error`` and the sweep goes on. Configuration mistakes exit
with status 2 and one line on stderr.

Examples
--------
``iopopt model=resnet18 cluster=rpi4_x4 network=wifi_50mbps solver=greedy_iop verify=true``

``iopopt -m experiment=paper``
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter, OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..results.io import display_path, write_json_atomic, write_jsonl_atomic
from ..results.records import INSTANCES_FILE, RESULT_FILE, base_record, error_record, per_op_timeline, solved_record
from .configs import (
    ConfigError,
    ModelSpec,
    build_cluster,
    build_model,
    build_network,
    build_solver,
    check_top_level,
    gap_instances,
    instance_key,
    model_spec,
)
from .context import JobContext
from .logs import _job_prefix, _ms, _problem_of, _secs, _what, log_record

__all__ = ["run", "solve_instance", "load_graph"]

log = logging.getLogger("iopopt")

#: Rewrite ``instances.jsonl`` after this many instances, so a killed study keeps its records.
_FLUSH_EVERY = 10
_GRAPH_CACHE: OrderedDict = OrderedDict()
_GRAPH_CACHE_SIZE = 8


def _set_threads(threads, ctx: JobContext) -> None:
    import torch

    if threads == "auto":
        threads = 1 if ctx.parallel else None  # parallel jobs must not oversubscribe the cores
    if threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def load_graph(spec: ModelSpec, dtype_bytes: int = 4):
    """``(module, OpGraph)`` of a model spec; zoo and custom models are cached per process.

    Hydra's basic launcher (and each joblib worker) runs many jobs in one
    process, so the paper sweep builds and traces each model once per process.
    """
    from ..frontend.capture import trace

    key = (spec.key(), dtype_bytes)
    if key in _GRAPH_CACHE:
        _GRAPH_CACHE.move_to_end(key)
        return _GRAPH_CACHE[key]
    module, shape = build_model(spec)
    graph = trace(module, shape, dtype_bytes=dtype_bytes, name=spec.name)
    if spec.source != "synthetic":  # synthetic graphs are cheap and rarely reused
        _GRAPH_CACHE[key] = (module, graph)
        while len(_GRAPH_CACHE) > _GRAPH_CACHE_SIZE:
            _GRAPH_CACHE.popitem(last=False)
    return module, graph


def _verify(problem, program, module) -> dict:
    import torch

    from ..exec.verify import verify

    rep = verify(problem, program, module, dtype=torch.float64)
    return {
        "passed": bool(rep.passed),
        "max_abs_err": float(rep.max_abs_err),
        "messages_match": bool(rep.messages_match),
        "weights_match": bool(rep.weights_match),
        "memory_match": bool(rep.memory_match),
    }


def solve_instance(
    names: Mapping[str, Any],
    problem,
    solver,
    module=None,
    verify: bool = False,
    save_per_op: bool = True,
) -> dict:
    """Solve, cost and optionally verify one problem; always returns a record (errors included).

    The plan is compiled once (by :meth:`~iopopt.solvers.base.Solver.solve`);
    the cost report, the timeline and verification all read that Program.
    """
    from ..compile.program import compile_plan
    from ..cost.evaluate import evaluate_program

    try:
        result = solver.solve(problem)
    except Exception as exc:  # a failing solver is a result, not a crash of the sweep
        log.debug("%s failed on %s", names.get("solver"), names.get("instance"), exc_info=True)
        return error_record(names, exc, problem)
    rec = None
    try:
        program, report = result.program, result.report
        if result.plan is not None and program is None:  # a result not made by Solver.solve
            program = compile_plan(problem, result.plan)
        if program is not None and report is None:
            report = evaluate_program(program)
        per_op = per_op_timeline(program) if program is not None and save_per_op else None
        rec = solved_record(names, problem, result, report, per_op=per_op)
        if verify and program is not None:
            rec["verify"] = _verify(problem, program, module)
        return rec
    except Exception as exc:
        log.debug("%s on %s", names.get("solver"), names.get("instance"), exc_info=True)
        return error_record(names, exc, problem, partial=rec)


def _names(cfg, ctx: JobContext, solver, study: str) -> dict:
    import torch

    cluster_name = OmegaConf.select(cfg, "cluster.name") or ctx.choices.get("cluster", "")
    network_name = OmegaConf.select(cfg, "network.name") or ctx.choices.get("network", "")
    return {
        "cluster": cluster_name,
        "network": network_name,
        "solver": ctx.choices.get("solver") or solver.name,
        "study": study,
        "job": ctx.job,
        "overrides": list(ctx.overrides),
        "torch_threads": torch.get_num_threads(),
    }


def _one(spec: ModelSpec, base: dict, cfg, cluster, network, solver, settings, save_per_op: bool) -> dict:
    from ..model.problem import Problem

    names = dict(base, model=spec.name, instance=instance_key(spec, cfg.cluster, cfg.network, settings["dtype_bytes"]))
    try:
        module, graph = load_graph(spec, settings["dtype_bytes"])
        problem = Problem(graph, cluster, network, name=names["instance"])
    except ConfigError:
        raise
    except Exception as exc:  # e.g. UnsupportedOperator while tracing
        log.debug("building %s failed", spec.name, exc_info=True)
        return error_record(names, exc)
    return solve_instance(names, problem, solver, module, settings["verify"], save_per_op)


def run(cfg: DictConfig, ctx: JobContext) -> dict:
    """Run one job of the application; returns the record written to ``result.json``.

    Raises :class:`~iopopt.configs.ConfigError` for configuration mistakes;
    every other failure is recorded in ``result.json``.
    """
    started = time.perf_counter()  # the whole job: config, model build/trace, solve, cost, verify
    settings = check_top_level(cfg)
    settings.setdefault("dtype_bytes", 4)
    settings.setdefault("verify", False)
    _set_threads(settings.get("threads", "auto"), ctx)
    cluster = build_cluster(cfg.cluster)
    network = build_network(cfg.network)
    solver = build_solver(cfg.solver)
    study = settings.get("study", "single")
    base = _names(cfg, ctx, solver, study)
    out = Path(ctx.output_dir)
    if study == "single":
        spec = model_spec(cfg.model)
        rec = _one(spec, base, cfg, cluster, network, solver, settings, settings.get("save_per_op", True))
        rec["job_time_s"] = time.perf_counter() - started
        path = write_json_atomic(out / RESULT_FILE, rec)
        log_record(rec, path, ctx)
        return rec
    if study == "fidelity":
        return _run_fidelity(cfg, base, out, started)
    return _run_gap(cfg, base, cluster, network, solver, settings, out, started, ctx)


def _run_fidelity(cfg, base, out: Path, started: float) -> dict:
    """``study: fidelity``: real runs over torch.distributed against the calibrated cost model."""
    import json

    from ..studies.fidelity import main as fidelity_main
    from .configs import FIDELITY_KEYS, _check_keys, _mapping

    f = _mapping("fidelity", cfg.fidelity)
    _check_keys("fidelity", f, FIDELITY_KEYS)
    dest = out / "fidelity"
    argv = ["--out", str(dest), "--models", *map(str, f["models"]), "--ranks", *map(str, f["ranks"]),
            "--solvers", *map(str, f["solvers"]), "--warmup", str(f["warmup"]), "--repeats", str(f["repeats"]),
            "--ilp-time", str(f["ilp_time_s"])]
    if f.get("hw"):
        argv += ["--hw", str(f["hw"])]
    if f.get("profile"):
        argv += ["--profile", str(f["profile"])]
    try:
        code = fidelity_main(argv)
        if code != 0:
            raise RuntimeError(f"the fidelity run measured no plan (exit {code}); see {display_path(dest)}")
        summary = json.loads((dest / "summary.json").read_text())
    except Exception as exc:
        rec = error_record(base, exc)
    else:
        rec = base_record(base)
        rec.update(model=f"fidelity ({summary['n']} plans)", termination="completed")
        rec["fidelity"] = {"spearman": summary["model"]["spearman"], "median_abs_pct_error": summary["model"]["mdape"],
                           "plans": summary["n"], "report": str(dest / "fidelity.md")}
    rec["job_time_s"] = time.perf_counter() - started
    write_json_atomic(out / RESULT_FILE, rec)
    outcome = rec.get("fidelity") or rec.get("error")
    log.info("fidelity study: %s; report %s", outcome, display_path(dest / "fidelity.md"))
    return rec


def _run_gap(cfg, base, cluster, network, solver, settings, out: Path, started: float, ctx: JobContext) -> dict:
    from tqdm import tqdm

    specs = gap_instances(cfg.gap)
    save_per_op = bool(OmegaConf.select(cfg, "gap.save_per_op", default=False))
    records = []
    label = f"gap {base['solver']} {base['cluster']} {base['network']}"
    for i, spec in enumerate(tqdm(specs, desc=label, unit="inst", file=sys.stderr, mininterval=1.0), 1):
        rec = _one(spec, base, cfg, cluster, network, solver, settings, save_per_op)
        problem = _problem_of(rec)
        if problem:
            log.warning("%s: %s %s", label, rec["model"], problem)
        records.append(rec)
        if i % _FLUSH_EVERY == 0:
            write_jsonl_atomic(out / INSTANCES_FILE, records)
    jsonl = write_jsonl_atomic(out / INSTANCES_FILE, records)
    terminations = Counter(r["termination"] for r in records)
    latencies = [r["latency_s"] for r in records if r["latency_s"] is not None]
    if not latencies:
        summary = error_record(base, RuntimeError("no instance succeeded"))
    else:
        summary = base_record(base)
        summary.update(termination="completed", solver_time_s=sum(r["solver_time_s"] or 0 for r in records))
        summary["latency_s"] = sum(latencies) / len(latencies)  # mean over instances, for a sweeper
    seconds = time.perf_counter() - started
    summary.update(
        model=f"gap study ({len(records)} instances)",
        n_instances=len(records),
        terminations=dict(terminations),
        instances_file=INSTANCES_FILE,
        job_time_s=seconds,
    )
    path = write_json_atomic(out / RESULT_FILE, summary)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(terminations.items()))
    mean = f"mean {_ms(summary['latency_s'])}" if summary["latency_s"] is not None else "no plan"
    where = "" if ctx.multirun else f"; records: {display_path(jsonl)}"
    log.info("%sgap study %s: %d instances, %s (%s) in %s%s",
             _job_prefix(ctx), _what(base, ctx), len(records), mean, counts, _secs(seconds), where)
    log.debug("gap study records: %s; summary: %s", display_path(jsonl), display_path(path))
    return summary
