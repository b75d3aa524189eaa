"""The jobs of the application: one solver on one instance, or a study over many.

One job = one solver on one instance (``study: single``; with ``plan_from``,
a stored plan instead of a solver), a study over many
(:mod:`iopopt.app.studies`: ``grid``, ``gap``, ``fidelity``; one record per
solve in ``instances.jsonl``), or an energy study of one instance
(:mod:`iopopt.app.fronts`: ``pareto``, ``robustness``). Every job writes ``result.json`` into its
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
import math
import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..results.io import write_json_atomic
from ..results.records import RESULT_FILE, error_record, per_op_timeline, solved_record
from .configs import (
    ConfigError,
    ModelSpec,
    build_cluster,
    build_model,
    check_top_level,
    model_spec,
)
from .context import JobContext
from .instances import instance_key
from .logs import log_record
from .progress import sweep_tick
from .shapes import input_shape_error
from .targets import build_network, build_solver

__all__ = ["run", "job_settings", "solve_instance", "load_graph"]

log = logging.getLogger("iopopt")

_GRAPH_CACHE: OrderedDict = OrderedDict()
_GRAPH_CACHE_SIZE = 8


def _set_threads(threads, ctx: JobContext) -> None:
    import torch

    if threads == "auto":
        threads = 1 if ctx.parallel else None  # parallel jobs must not oversubscribe the cores
    if threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def load_graph(spec: ModelSpec, dtype_bytes: int = 4, weights: bool = True):
    """``(module, OpGraph)`` of a model spec; zoo and custom models are cached per process.

    Hydra's basic launcher (each joblib worker, each grid job) runs many
    solves in one process, so a sweep builds and traces each model once per
    process. ``weights=False`` (no verification) traces a zoo model without
    weights; its module is then None.
    """
    from ..frontend.capture import InputShapeError, trace

    key = (spec.key(), dtype_bytes)
    if key in _GRAPH_CACHE:
        module, graph = _GRAPH_CACHE[key]
        if module is not None or not weights:
            _GRAPH_CACHE.move_to_end(key)
            return module, graph
    module, shape = build_model(spec, weights=weights)
    try:
        graph = trace(module, shape, dtype_bytes=dtype_bytes, name=spec.name)
    except InputShapeError as exc:
        if spec.source == "synthetic":  # iopopt made both the model and its shape: not a configuration error
            raise
        raise input_shape_error(spec, shape, exc) from None
    if any(p.device.type == "meta" for p in module.parameters()):
        module = None  # shapes only: nothing to run
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
        "max_abs_err": float(rep.max_abs_err) if math.isfinite(rep.max_abs_err) else None,  # JSON has no inf
        "messages_match": bool(rep.messages_match),
        "weights_match": bool(rep.weights_match),
        "memory_match": bool(rep.memory_match),
        "reference_finite": bool(rep.reference_finite),
    }


def solve_instance(
    names: Mapping[str, Any],
    problem,
    solver,
    module=None,
    verify: bool = False,
    save_per_op: bool = True,
    measure=None,
) -> dict:
    """Solve, cost and optionally verify one problem; always returns a record (errors included).

    The plan is compiled once (by :meth:`~iopopt.solvers.base.Solver.solve`);
    the cost report, the timeline and verification all read that Program.
    ``measure(problem, program, module)`` (``executor=``) adds the ``measured`` object.
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
        if measure is not None and program is not None:
            rec["measured"] = measure(problem, program, module)
        return rec
    except Exception as exc:
        log.debug("%s on %s", names.get("solver"), names.get("instance"), exc_info=True)
        return error_record(names, exc, problem, partial=rec)


def cluster_label(cfg, ctx: JobContext) -> str:
    """The cluster's name in the records: the preset's, or a name of its own when the devices were changed.

    With ``cluster.devices`` changed on the command line (a whole list or one
    figure) and no ``cluster.name`` given, the cluster is no longer the
    preset, so it is named ``PRESET~HASH``, HASH the first 6 hex digits of the
    SHA-1 of its device list: different device lists get different names,
    the same list the same one, and reports never label different clusters
    alike. ``cluster.name=...`` names it as the user likes.
    """
    import hashlib
    import json

    name = str(OmegaConf.select(cfg, "cluster.name") or ctx.choices.get("cluster", ""))
    keys = [o.partition("=")[0].lstrip("+~") for o in ctx.overrides]
    if "cluster.name" in keys or not any(k == "cluster.devices" or k.startswith("cluster.devices.") for k in keys):
        return name
    devices = OmegaConf.to_container(cfg.cluster.devices, resolve=True)
    digest = hashlib.sha1(json.dumps(devices, sort_keys=True, default=str).encode()).hexdigest()[:6]
    return f"{name or 'cluster'}~{digest}"


def _names(cfg, ctx: JobContext, solver, study: str) -> dict:
    import torch

    cluster_name = cluster_label(cfg, ctx)
    network_name = OmegaConf.select(cfg, "network.name") or ctx.choices.get("network", "")
    return {
        "cluster": cluster_name,
        "network": network_name,
        "solver": ctx.choices.get("solver") or solver.name,
        "study": study,
        "job": ctx.job,
        "overrides": list(ctx.overrides),
        "choices": {g: ctx.choices[g] for g in ("model", "cluster", "network", "solver") if g in ctx.choices},
        "torch_threads": torch.get_num_threads(),
    }


def _one(spec: ModelSpec, base: dict, cfg, cluster, network, solver, settings, save_per_op: bool) -> dict:
    """Build (or reuse) the model of ``spec``, solve it; the record (an error record when building fails)."""
    from ..model.problem import Problem

    names = dict(base, model=spec.name, instance=instance_key(spec, cfg.cluster, cfg.network, settings["dtype_bytes"]))
    executor = settings.get("executor")
    measure = None
    if executor:
        from functools import partial

        from .measure import measure as run_measure

        measure = partial(run_measure, executor, settings)
    try:
        module, graph = load_graph(spec, settings["dtype_bytes"], weights=settings["verify"] or bool(executor))
        problem = Problem(graph, cluster, network, name=names["instance"])
    except ConfigError:
        raise
    except Exception as exc:  # e.g. UnsupportedOperator while tracing
        log.debug("building %s failed", spec.name, exc_info=True)
        return error_record(names, exc)
    return solve_instance(names, problem, solver, module, settings["verify"], save_per_op, measure)


def job_settings(cfg, ctx: JobContext) -> dict:
    """The checked top-level settings of a job (torch threads set as they say)."""
    settings = check_top_level(cfg)
    settings.setdefault("dtype_bytes", 4)
    settings.setdefault("verify", False)
    from .measure import check_executor

    settings["executor"] = check_executor(settings)
    _set_threads(settings.get("threads", "auto"), ctx)
    return settings


def config_error_record(cfg: DictConfig, ctx: JobContext, exc: Exception) -> dict:
    """A sweep job whose configuration is wrong: an error record in its ``result.json``, one log line.

    In a multirun one bad value (``network.bandwidth_bytes_per_s=1e6,0,1e7``)
    fails its own job only; the others run.
    """
    names: dict[str, Any] = {"job": ctx.job, "overrides": list(ctx.overrides), "study": "single",
                             "choices": {g: ctx.choices[g] for g in ("model", "cluster", "network", "solver")
                                         if g in ctx.choices}}
    for group in ("model", "cluster", "network", "solver"):
        try:
            names[group] = OmegaConf.select(cfg, f"{group}.name", default=None) or ctx.choices.get(group, "")
        except Exception:  # the bad value may sit in an interpolation
            names[group] = ctx.choices.get(group, "")
        names[group] = str(names[group] or "?")
    names["instance"] = f"{names['model']}|{names['cluster']}|{names['network']}|config error"
    rec = error_record(names, exc)
    rec["error"] = f"configuration error: {exc}"
    path = write_json_atomic(Path(ctx.output_dir) / RESULT_FILE, rec)
    prefix, suffix = sweep_tick(ctx.job)
    log_record(rec, path, ctx.overrides, prefix, suffix, details=False)
    return rec


def run(cfg: DictConfig, ctx: JobContext) -> dict:
    """Run one job of the application; returns the record written to ``result.json``.

    Raises :class:`~iopopt.app.configs.ConfigError` for configuration mistakes;
    every other failure is recorded in ``result.json``.
    """
    started = time.perf_counter()  # the whole job: config, model build/trace, solve, cost, verify
    settings = job_settings(cfg, ctx)
    if settings.get("resume") and ctx.multirun:
        from .resume import finished_record

        kept = finished_record(Path(ctx.output_dir), ctx.overrides)
        if kept is not None:
            prefix, suffix = sweep_tick(ctx.job)
            log.info("%sjob %s: kept its finished result.json (resume=true)%s", prefix, ctx.job, suffix)
            return kept
    study = settings.get("study", "single")
    if study in ("pareto", "robustness"):
        from .fronts import run_front_study

        return run_front_study(study, cfg, settings, ctx, started)
    if study != "single":
        from .studies import run_study

        return run_study(study, cfg, settings, ctx, started)
    cluster = build_cluster(cfg.cluster)
    network = build_network(cfg.network)
    solver = build_solver(cfg.solver)
    base = _names(cfg, ctx, solver, study)
    spec = model_spec(cfg.model)
    if settings.get("plan_from"):  # a stored plan, evaluated on this cluster and network
        from .fronts import plan_from

        spec, solver = plan_from(settings["plan_from"], spec, ctx, cluster, network, settings)
        base["solver"] = solver.name
    rec = _one(spec, base, cfg, cluster, network, solver, settings, settings.get("save_per_op", True))
    rec["job_time_s"] = time.perf_counter() - started
    path = write_json_atomic(Path(ctx.output_dir) / RESULT_FILE, rec)
    prefix, suffix = sweep_tick(ctx.job if ctx.multirun else None)
    log_record(rec, path, ctx.overrides, prefix, suffix, details=not ctx.multirun)
    return rec
