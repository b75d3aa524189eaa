"""Jobs of the energy studies: ``study: pareto``, ``study: robustness``, and ``plan_from`` (a stored plan).

Each study job solves one model on one cluster and network and writes its
records (``pareto.jsonl`` / ``robustness.jsonl``), a table and a plot
(:mod:`iopopt.report.pareto`) next to a ``result.json`` that summarises
them. ``plan_from=RESULT`` (a ``result.json``, its folder, or
``DIR/instances.jsonl:N``) evaluates that record's plan on the chosen
cluster and network instead of solving.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..results.io import display_path, write_json_atomic, write_jsonl_atomic
from ..results.records import RESULT_FILE, base_record, error_record
from .configs import (
    ConfigError,
    ModelSpec,
    _check_keys,
    _import_target,
    _mapping,
    build_cluster,
    model_spec,
)
from .instances import instance_key
from .targets import build_network

__all__ = ["PARETO_KEYS", "ROBUSTNESS_KEYS", "run_front_study", "plan_from"]

log = logging.getLogger("iopopt")

#: Allowed keys of the ``pareto`` and ``robustness`` settings (conf/config.yaml).
PARETO_KEYS = frozenset({"fronts", "points", "walk", "baselines", "time_limit_s"})
ROBUSTNESS_KEYS = frozenset({"factors", "solvers", "time_limit_s", "measure"})


def plan_from(path, spec: ModelSpec, ctx, cluster, network, settings: dict) -> tuple[ModelSpec, object]:
    """The model spec and a :class:`~iopopt.solvers.fixed.FixedPlan` holding the plan of the record ``path`` names.

    ``path``: a ``result.json``, its folder, or ``DIR/instances.jsonl:N``. The
    model is the record's when the command line names none and the record's
    is a zoo model. A plan that does not fit the problem (another model, a
    strategy the new cluster cannot run) is a :class:`ConfigError` in one line.
    """
    from ..frontend import zoo
    from ..model.problem import Problem
    from ..report.show import RecordNotFound, load_record
    from ..solvers.base import SolverError
    from ..solvers.fixed import FixedPlan
    from .jobs import load_graph

    try:
        rec = load_record(str(path))
    except RecordNotFound as exc:
        raise ConfigError(f"plan_from={exc}") from None
    strategies = rec.get("strategies")
    if not strategies:
        raise ConfigError(f"plan_from={path}: the record has no plan (termination {rec.get('termination')!r})")
    named = any(o.partition("=")[0].lstrip("+~") in ("model", "model.name") for o in ctx.overrides)
    if not named and rec.get("model") in zoo.names() and rec["model"] != spec.name:
        spec = model_spec({"source": "zoo", "name": rec["model"]})
    solver = FixedPlan(strategies=strategies, source=str(path))
    graph = load_graph(spec, settings["dtype_bytes"], weights=settings["verify"])[1]
    try:
        solver.check_fits(Problem(graph, cluster, network))
    except SolverError as exc:
        raise ConfigError(str(exc)) from None
    return spec, solver


def _title(problem, names) -> str:
    return f"{problem.graph.name} on {names['cluster'] or 'the cluster'} ({problem.k} devices), {names['network']}"


def run_front_study(study: str, cfg, settings: dict, ctx, started: float) -> dict:
    """``study: pareto`` or ``study: robustness`` on the configured model, cluster and network."""
    from types import SimpleNamespace

    from ..model.problem import Problem
    from .jobs import _names, load_graph

    out = Path(ctx.output_dir)
    cluster, network = build_cluster(cfg.cluster), build_network(cfg.network)
    base = _names(cfg, ctx, SimpleNamespace(name=study), study)
    block = _mapping(study, cfg.get(study) or {})
    _check_keys(study, block, PARETO_KEYS if study == "pareto" else ROBUSTNESS_KEYS)
    spec = model_spec(cfg.model)
    names = dict(base, model=spec.name, solver=study,
                 instance=instance_key(spec, cfg.cluster, cfg.network, settings["dtype_bytes"]))
    ilp = {"time_limit_s": block.get("time_limit_s", 60)}
    measure = None
    if study == "robustness" and block.get("measure"):
        measure = _import_target("robustness.measure", str(block["measure"]))
        if not callable(measure):
            raise ConfigError(f"robustness.measure {block['measure']!r} is not callable")
    problem = None
    try:
        _, graph = load_graph(spec, settings["dtype_bytes"], weights=False)
        problem = Problem(graph, cluster, network, name=names["instance"])
        records, written, summary = _study(study, problem, block, ilp, measure, out, _title(problem, names),
                                           settings.get("plots", True))
    except ConfigError:
        raise
    except Exception as exc:  # a failing study is a result, not a crash of the sweep
        log.debug("%s study failed", study, exc_info=True)
        rec = error_record(names, exc, problem)
    else:
        rec = base_record(names, problem)
        rec.update(termination="completed", **summary)
        rec[study] = {"records": len(records), "files": [p.name for p in written]}
    rec["job_time_s"] = time.perf_counter() - started
    write_json_atomic(out / RESULT_FILE, rec)
    what = f"{study} study {names['model']} {names['cluster']} {names['network']}"
    if rec["termination"] == "error":
        log.error("%s: %s", what, rec["error"])
    else:
        log.info("%s: %s; report %s", what, rec[f"{study}_summary"], display_path(out / f"{study}.md"))
    return rec


def _study(study, problem, block, ilp, measure, out: Path, title: str, plots: bool):
    from ..report.pareto import write_pareto, write_robustness

    if study == "pareto":
        from ..studies.pareto import BASELINES, pareto_records

        fronts = list(block.get("fronts") or ["energy", "memory"])
        if "energy" in fronts and not problem.cluster.has_power:
            log.warning("pareto: the cluster has no power figures; only the latency–peak memory front")
        records = pareto_records(problem, fronts=fronts, points=int(block.get("points", 10)),
                                 baselines=list(block.get("baselines") or BASELINES), settings=ilp,
                                 walk=int(block.get("walk", 12)))
        write_jsonl_atomic(out / "pareto.jsonl", records)
        written = write_pareto(records, out, title, plots=plots)
        counts = {f: sum(r["proven"] for r in records if r["front"] == f and r["source"] == "front")
                  for f in dict.fromkeys(r["front"] for r in records)}
        fastest = min((r for r in records if r["source"] == "front"), key=lambda r: r["latency_s"])
        summary = {"latency_s": fastest["latency_s"], "energy_j": fastest["energy_j"],
                   "peak_memory_bytes": fastest["peak_memory_bytes"],
                   "pareto_summary": ", ".join(f"{f} front {n} proven point{'s' * (n != 1)}"
                                               for f, n in counts.items())}
        return records, written, summary
    from ..studies.robustness import FACTORS, SOLVERS, robustness_records

    records = robustness_records(problem, solvers=list(block.get("solvers") or SOLVERS),
                                 factors=[float(f) for f in block.get("factors") or FACTORS],
                                 measure=measure, ilp_settings=ilp)
    write_jsonl_atomic(out / "robustness.jsonl", records)
    written = write_robustness(records, out, title, plots=plots)
    worst = max(records, key=lambda r: r["regret"] or 0.0)
    summary = {"latency_s": next(r["optimum_s"] for r in records if r["factor"] == 1.0) if any(
                   r["factor"] == 1.0 for r in records) else None,
               "robustness_summary": f"worst regret {100 * (worst['regret'] or 0):.1f}% ({worst['solver']} at "
                                     f"{worst['factor']:g}x bandwidth)"}
    return records, written, summary
