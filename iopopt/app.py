"""The Hydra application: ``iopopt`` and ``python -m iopopt``.

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

import contextlib
import io
import logging
import math
import os
import sys
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import hydra
from omegaconf import DictConfig, OmegaConf

from .configs import (
    GROUPS,
    ConfigError,
    ModelSpec,
    build_cluster,
    build_model,
    build_network,
    build_solver,
    check_overrides,
    check_top_level,
    gap_instances,
    instance_key,
    model_spec,
)
from .results import (
    INSTANCES_FILE,
    RESULT_FILE,
    base_record,
    display_path,
    error_record,
    per_op_timeline,
    solved_record,
    write_json_atomic,
    write_jsonl_atomic,
)
from .solver import CONF_DIR

__all__ = ["main", "run", "JobContext", "solve_instance", "load_graph"]

log = logging.getLogger("iopopt")

#: Environment variable through which the sweep callback tells the jobs how many there are.
SWEEP_JOBS_ENV = "IOPOPT_SWEEP_JOBS"
#: Rewrite ``instances.jsonl`` after this many instances, so a killed study keeps its records.
_FLUSH_EVERY = 10
_GRAPH_CACHE: OrderedDict = OrderedDict()
_GRAPH_CACHE_SIZE = 8


@dataclass
class JobContext:
    """Where a job writes and what Hydra chose for it (no Hydra objects, so tests can build one)."""

    output_dir: Path
    choices: Mapping[str, str] = field(default_factory=dict)
    multirun: bool = False
    parallel: bool = False
    job: int | None = None
    overrides: tuple[str, ...] = ()

    @classmethod
    def from_hydra(cls) -> "JobContext":
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        multirun = hc.mode == RunMode.MULTIRUN
        launcher = str(OmegaConf.select(hc, "launcher._target_", default="") or "")
        return cls(
            output_dir=Path(hc.runtime.output_dir),
            choices={k: v for k, v in hc.runtime.choices.items() if v is not None},
            multirun=multirun,
            parallel=multirun and not launcher.endswith("BasicLauncher"),
            job=OmegaConf.select(hc, "job.num", default=None) if multirun else None,
            overrides=tuple(hc.overrides.task),
        )


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
    from .graph import trace

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


def _verify(problem, plan, module) -> dict:
    import torch

    from . import verify

    rep = verify(problem, plan, module, dtype=torch.float64)
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
    """Solve, cost and optionally verify one problem; always returns a record (errors included)."""
    from .compiler import compile_plan
    from .cost import evaluate_program

    try:
        result = solver.solve(problem)
    except Exception as exc:  # a failing solver is a result, not a crash of the sweep
        log.debug("%s failed on %s", names.get("solver"), names.get("instance"), exc_info=True)
        return error_record(names, exc, problem)
    rec = None
    try:
        # Solver.solve has already costed the plan (result.report); compile only for the timeline
        report = result.report if result.plan is not None else None
        if result.plan is not None and report is None:  # a result not made by Solver.solve
            report = evaluate_program(compile_plan(problem, result.plan))
        per_op = None
        if result.plan is not None and save_per_op:
            per_op = per_op_timeline(compile_plan(problem, result.plan, validate=False))
        rec = solved_record(names, problem, result, report, per_op=per_op)
        if verify and result.plan is not None:
            rec["verify"] = _verify(problem, result.plan, module)
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
    from .problem import Problem

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
        _log_record(rec, path, ctx)
        return rec
    if study == "fidelity":
        return _run_fidelity(cfg, base, out, started)
    return _run_gap(cfg, base, cluster, network, solver, settings, out, started, ctx)


def _run_fidelity(cfg, base, out: Path, started: float) -> dict:
    """``study: fidelity``: real runs over torch.distributed against the calibrated cost model."""
    import json

    from .configs import FIDELITY_KEYS, _check_keys, _mapping
    from .fidelity import main as fidelity_main

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
    log.info("fidelity study: %s; report %s", rec.get("fidelity") or rec.get("error"), display_path(dest / "fidelity.md"))
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


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.1f} ms" if ms >= 10 else f"{ms:.3g} ms"


def _secs(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds >= 10 else f"{seconds:.2g} s"


def _job_prefix(ctx: JobContext) -> str:
    """``[12/108] `` for job 12 of a 108-job sweep (``[12] `` when the total is unknown), ``""`` for a single run."""
    if ctx.job is None:
        return ""
    total = os.environ.get(SWEEP_JOBS_ENV, "")
    return f"[{ctx.job + 1}/{total}] " if total.isdigit() else f"[{ctx.job + 1}] "


def _what(rec: Mapping[str, Any], ctx: JobContext, with_model: bool = False) -> str:
    """``model cluster network solver`` plus the job's other overrides (e.g. ``cluster.split=equal``)."""
    names = [rec.get(k) or "" for k in (("model",) if with_model else ()) + ("cluster", "network", "solver")]
    extra = [o for o in ctx.overrides if o.partition("=")[0].lstrip("+~") not in GROUPS]
    return " ".join(str(x) for x in names + extra if x)


def _problem_of(rec: Mapping[str, Any]) -> str | None:
    """What went wrong with a record, in a few words (None when nothing did)."""
    if rec["termination"] == "error":
        return f"error: {rec['error']}"
    ver = rec.get("verify")
    if ver is not None and not ver["passed"]:
        return (f"verification FAILED (max abs error {ver['max_abs_err']:.3g}, messages_match "
                f"{ver['messages_match']}, memory_match {ver['memory_match']})")
    return None


def _log_record(rec: dict, path: Path, ctx: JobContext) -> None:
    """One INFO line per job (ERROR when it failed); the details at DEBUG."""
    what = _job_prefix(ctx) + _what(rec, ctx, with_model=True)
    where = "" if ctx.multirun else f"; result: {display_path(path)}"
    problem = _problem_of(rec)
    if rec["latency_s"] is None:
        outcome = problem or f"no plan ({rec['termination']})"
    else:
        outcome = f"{_ms(rec['latency_s'])} ({rec['termination']})"
        if not ctx.multirun:
            outcome += f", peak memory {rec['peak_memory_bytes'] / 1e6:.1f} MB, {rec['messages']} messages"
        if problem:
            outcome += f"; {problem}"
        elif rec["verify"] is not None:
            outcome += ", verified"
    (log.error if problem else log.info)("%s: %s%s", what, outcome, where)
    if rec["latency_s"] is not None:
        log.debug(
            "%s: latency %.3f ms (compute %.3f, comm %.3f; lower bound %.3f), %d messages, peak memory %.1f MB",
            rec["instance"], rec["latency_s"] * 1e3, rec["compute_s"] * 1e3, rec["comm_s"] * 1e3,
            (rec["lower_bound_s"] or 0) * 1e3, rec["messages"], rec["peak_memory_bytes"] / 1e6,
        )
    log.debug("result written to %s (job took %.2f s, solver %.3f s)", path, rec.get("job_time_s") or 0.0,
              rec.get("solver_time_s") or 0.0)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _task(cfg: DictConfig) -> float:
    """The Hydra task function: one job."""
    ctx = JobContext.from_hydra()
    try:
        rec = run(cfg, ctx)
    except ConfigError as exc:
        print(f"iopopt: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    if rec["termination"] == "error" and not ctx.multirun:
        sys.exit(1)  # a failed single run is a failed command; in a sweep the others go on
    # the metric a sweeper (e.g. Optuna) would minimise; NaN marks a job without a plan
    return rec["latency_s"] if rec["latency_s"] is not None else math.nan


def _command_line_overrides(argv: list[str]) -> list[str] | None:
    """The overrides of a Hydra command line, or None when they are not ours to check
    (another config via ``--config-name``/``--config-path``/``--config-dir``, a rerun, shell completion)."""
    from hydra._internal.utils import get_args_parser

    try:
        # a bad option (or --version): Hydra's own parser reports it when it parses the same line
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            args = get_args_parser().parse_args(argv)
    except SystemExit:
        return None
    if args.config_name or args.config_path or args.config_dir or args.experimental_rerun or args.shell_completion:
        return None
    return list(args.overrides)


def main(cfg: DictConfig | None = None) -> float | None:
    """Entry point of the ``iopopt`` console script and ``python -m iopopt``.

    Checks the command-line overrides first (an unknown group option or key
    exits with status 2 and one line naming it and the valid choices), then
    runs the Hydra application. ``main(cfg)`` runs one job on a composed
    config and returns its ``latency_s`` (NaN without a plan), like the Hydra
    task function does for a sweeper.
    """
    if cfg is not None:
        return _task(cfg)
    if len(sys.argv) > 1 and sys.argv[1] == "profile":  # `iopopt profile [...]`: measure this machine
        from .profile import main as profile_main

        sys.exit(profile_main(sys.argv[2:]))
    overrides = _command_line_overrides(sys.argv[1:])
    if overrides:
        try:
            check_overrides(overrides, CONF_DIR)
        except ConfigError as exc:
            print(f"iopopt: configuration error: {exc}", file=sys.stderr)
            sys.exit(2)
    return _task()
