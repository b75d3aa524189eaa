"""Study jobs: many solves in one job, one record per solve in ``instances.jsonl``.

- ``grid``: every combination of the model, cluster, network and solver
  options listed under ``grid`` (the paper comparison: 108 solves), in one
  process, each traced model reused: a multirun would compose Hydra's config
  twice per job and start every job afresh, which costs far more than the
  solves themselves.
- ``gap``: one solver, cluster and network (a job of a sweep over those) on a
  list of zoo and seeded synthetic models (the greedy-gap study).
- ``fidelity``: measured latency over torch.distributed against the cost model.

Each job's ``result.json`` summarises its records (``instances_file`` names
them); :func:`iopopt.report.build_report` reads the records.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path

from omegaconf import OmegaConf

from ..results.io import display_path, write_json_atomic, write_jsonl_atomic
from ..results.records import INSTANCES_FILE, RESULT_FILE, base_record, error_record
from .configs import ConfigError, _check_keys, _mapping, build_cluster, model_spec
from .context import JobContext
from .instances import FIDELITY_KEYS, OWN, gap_instances, grid_options, group_configs
from .jobs import _names, _one, load_graph
from .logs import log_record, ms_text, problem_of, secs_text, what_text
from .progress import Progress, sweep_tick
from .targets import build_network, build_solver

__all__ = ["run_study"]

log = logging.getLogger("iopopt")

#: Rewrite ``instances.jsonl`` at most this often (seconds), so a killed study keeps what it solved.
_FLUSH_EVERY_S = 10.0
#: A study job running alone logs its progress at most this often (seconds); under a parallel launcher it does not.
_PROGRESS_EVERY_S = 5.0


def run_study(study: str, cfg, settings: dict, ctx: JobContext, started: float) -> dict:
    """Run a study job (``grid``, ``gap`` or ``fidelity``); returns the summary written to ``result.json``."""
    if study == "paper_measured" or (study == "fidelity" and settings.get("executor") == "testbed"):
        from .testbed_studies import run_testbed_study

        return run_testbed_study(study, cfg, settings, ctx, started)
    if study == "fidelity":
        return _run_fidelity(cfg, ctx, started)
    if study == "grid":
        return _run_grid(cfg, settings, ctx, started)
    return _run_gap(cfg, settings, ctx, started)


def _flush(records: list[dict], ctx: JobContext, last: float) -> float:
    """Rewrite ``instances.jsonl`` once :data:`_FLUSH_EVERY_S` have passed since ``last``; returns the last write."""
    now = time.perf_counter()
    if now - last < _FLUSH_EVERY_S:
        return last
    write_jsonl_atomic(Path(ctx.output_dir) / INSTANCES_FILE, records)
    return now


def _finish(records: list[dict], base: dict, ctx: JobContext, started: float, label: str) -> dict:
    """Write ``instances.jsonl`` and the summary ``result.json``; log one line; return the summary."""
    out = Path(ctx.output_dir)
    jsonl = write_jsonl_atomic(out / INSTANCES_FILE, records)
    terminations = Counter(r["termination"] for r in records)
    latencies = [r["latency_s"] for r in records if r["latency_s"] is not None]
    if not latencies:
        summary = error_record(base, RuntimeError("no instance succeeded"))
    else:
        summary = base_record(base)
        summary.update(termination="completed", solver_time_s=sum(r["solver_time_s"] or 0 for r in records))
        summary["latency_s"] = sum(latencies) / len(latencies)  # mean over the records, for a sweeper
    seconds = time.perf_counter() - started
    summary.update(model=label, n_instances=len(records), terminations=dict(terminations),
                   instances_file=INSTANCES_FILE, job_time_s=seconds)
    path = write_json_atomic(out / RESULT_FILE, summary)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(terminations.items()))
    mean = f"mean {ms_text(summary['latency_s'])}" if summary["latency_s"] is not None else "no plan"
    where = "" if ctx.multirun else f"; records: {display_path(jsonl)}"
    prefix, suffix = sweep_tick(ctx.job if ctx.multirun else None)
    log.info("%s%s: %d records, %s (%s) in %s%s%s", prefix, label, len(records), mean, counts, secs_text(seconds),
             suffix, where)
    log.debug("study records: %s; summary: %s", display_path(jsonl), display_path(path))
    return summary


def _run_grid(cfg, settings: dict, ctx: JobContext, started: float) -> dict:
    """``study: grid``: every combination of the listed group options, models outermost, solvers innermost."""
    options = grid_options(cfg.get("grid"), ctx.choices)
    nodes = {g: group_configs(g, opts, ctx.overrides, cfg, ctx.choices.get(g) or OWN) for g, opts in options.items()}
    models = {o: model_spec(c) for o, c in nodes["model"].items()}
    clusters = {o: build_cluster(c) for o, c in nodes["cluster"].items()}
    networks = {o: build_network(c) for o, c in nodes["network"].items()}
    solvers = {o: build_solver(c) for o, c in nodes["solver"].items()}
    total = len(models) * len(clusters) * len(networks) * len(solvers)
    base = _names(cfg, ctx, next(iter(solvers.values())), "grid")
    # the summary's names: every option of each group
    base.update(cluster=",".join(clusters), network=",".join(networks), solver=",".join(solvers))
    save_per_op = settings.get("save_per_op", True)
    for spec in models.values():  # trace every (cached) model first, so that the ETA is the pace of the solves
        if spec.source == "synthetic":
            continue
        try:
            load_graph(spec, settings["dtype_bytes"], weights=settings["verify"])
        except ConfigError:
            raise
        except Exception:  # recorded with each of its solves below
            pass
    progress = Progress(total)
    flushed = time.perf_counter()
    records: list[dict] = []
    for m, spec in models.items():
        for c, cluster in clusters.items():
            for n, network in networks.items():
                # the instance key hashes the cluster and network configs: the same ones a multirun job has
                view = OmegaConf.create({"cluster": nodes["cluster"][c], "network": nodes["network"][n]})
                for s, solver in solvers.items():
                    names = dict(base, cluster=view.cluster.get("name") or c, network=view.network.get("name") or n,
                                 solver=solver.name if s == OWN else s,
                                 choices={"model": m, "cluster": c, "network": n, "solver": s})
                    rec = _one(spec, names, view, cluster, network, solver, settings, save_per_op)
                    records.append(rec)
                    prefix, suffix = progress.tick()
                    log_record(rec, None, (), prefix, suffix, details=False)
                    flushed = _flush(records, ctx, flushed)
    return _finish(records, base, ctx, started, f"grid study ({total} solves)")


def _run_gap(cfg, settings: dict, ctx: JobContext, started: float) -> dict:
    """``study: gap``: the job's solver, cluster and network on every instance of the ``gap`` list."""
    cluster = build_cluster(cfg.cluster)
    network = build_network(cfg.network)
    solver = build_solver(cfg.solver)
    base = _names(cfg, ctx, solver, "gap")
    specs = gap_instances(cfg.gap)
    save_per_op = bool(OmegaConf.select(cfg, "gap.save_per_op", default=False))
    label = f"gap {what_text(base, ctx.overrides)}"
    progress = Progress(len(specs))
    last = flushed = time.perf_counter()
    records = []
    for i, spec in enumerate(specs, 1):
        rec = _one(spec, base, cfg, cluster, network, solver, settings, save_per_op)
        problem = problem_of(rec)
        if problem:
            log.warning("%s: %s %s", label, rec["model"], problem)
        records.append(rec)
        prefix, suffix = progress.tick()
        # alone, a line every few seconds; a sweep's jobs log one line each when they end
        if not ctx.multirun and (time.perf_counter() - last >= _PROGRESS_EVERY_S or i == len(specs)):
            last = time.perf_counter()
            log.info("%s%s: %s%s", prefix, label, rec["model"], suffix)
        flushed = _flush(records, ctx, flushed)
    label = f"gap study {what_text(base, ctx.overrides)} ({len(records)} instances)"
    return _finish(records, base, ctx, started, label)


def _run_fidelity(cfg, ctx: JobContext, started: float) -> dict:
    """``study: fidelity``: real runs over torch.distributed against the calibrated cost model."""
    import json

    from ..studies.fidelity import main as fidelity_main

    base = {"study": "fidelity", "job": ctx.job, "overrides": list(ctx.overrides), "solver": "", "cluster": "",
            "network": ""}
    f = _mapping("fidelity", cfg.fidelity)
    _check_keys("fidelity", f, FIDELITY_KEYS)
    out = Path(ctx.output_dir)
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
