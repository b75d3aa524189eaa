"""``python -m iopopt.distributed``: run one plan over torch.distributed and check it against the unsplit model.

Driven by the application's own configs: ``model=``, ``cluster=``,
``network=`` and ``solver=`` (and any key of them, e.g. ``cluster.split=equal``)
compose exactly as for ``iopopt``, so the plan run here is the plan
``iopopt`` would choose; ``plan_from=RESULT`` runs a stored plan instead (a
``result.json`` or ``DIR/instances.jsonl:N``) on the instance it was made for.
One process per device of the cluster (all on this machine over loopback,
or this rank of a multi-host run when ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``/
``MASTER_PORT`` are set). The settings are printed before anything runs;
mistakes exit with status 2 and one line.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]

_GROUPS = ("model", "cluster", "network", "solver")


def _app_defaults() -> dict[str, str]:
    """The default option of each group (conf/config.yaml), for the help text."""
    import yaml

    from ..solvers.registry import CONF_DIR

    tree = yaml.safe_load((Path(CONF_DIR) / "config.yaml").read_text()) or {}
    out = {}
    for entry in tree.get("defaults") or ():
        if isinstance(entry, dict):
            out.update({k: str(v) for k, v in entry.items() if k in _GROUPS})
    return out


def _parser() -> argparse.ArgumentParser:
    d = _app_defaults()
    ap = argparse.ArgumentParser(
        prog="python -m iopopt.distributed",
        description=(
            "Run one plan over torch.distributed (gloo; one process per device of the cluster) and check it "
            "against the unsplit model. The problem comes from the app's configs, like `iopopt`: by default "
            f"model={d.get('model')}, cluster={d.get('cluster')} (its device count is the number of ranks), "
            f"network={d.get('network')}, solver={d.get('solver')} (iopopt/conf/config.yaml). Override them as "
            "for iopopt (model=resnet18 cluster=rpi4_x2 network=ethernet_1g solver=ilp cluster.split=equal), "
            "or give plan_from=RESULT to run a stored plan (a result.json or DIR/instances.jsonl:N) on the "
            "model, cluster and network it was made for."
        ),
    )
    ap.add_argument("overrides", nargs="*", help="config overrides (group=option, key=value) and plan_from=RESULT")
    ap.add_argument("--model", default=None, help="the same as model=NAME")
    ap.add_argument("--solver", default=None, help="the same as solver=NAME")
    ap.add_argument("--plan", default=None, help="a plan family instead of a solver (all_host, all_oc, coedge, "
                                                 "alternating, random, ...)")
    ap.add_argument("--ranks", type=int, default=None, help="devices: picks cluster=rpi4_xN (when no cluster= given)")
    ap.add_argument("--input-hw", type=int, default=None, help="input height=width (the same as model.input_shape)")
    ap.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    ap.add_argument("--timeout", type=float, default=60.0, help="torch.distributed timeout (s)")
    ap.add_argument("--step-barrier", action="store_true")
    return ap


class _Refused(Exception):
    """A bad setting: one line on stderr, exit status 2."""


def _stored(spec: str) -> tuple[dict, list[str]]:
    """The record ``plan_from`` names and the overrides that recompose its instance."""
    from ..report.show import RecordNotFound, load_record

    try:
        rec = load_record(spec)
    except RecordNotFound as exc:
        raise _Refused(f"plan_from={exc}") from None
    if not rec.get("strategies"):
        raise _Refused(f"plan_from={spec}: the record has no plan (termination {rec.get('termination')})")
    choices = rec.get("choices") or {g: rec.get(g) for g in ("model", "cluster", "network")}
    overrides = [f"{g}={choices[g]}" for g in ("model", "cluster", "network") if choices.get(g)]
    for o in rec.get("overrides") or ():  # value overrides of those groups (e.g. cluster.split=equal)
        key = o.partition("=")[0].lstrip("+~")
        if "." in key and key.split(".")[0] in ("model", "cluster", "network"):
            overrides.append(o)
    return rec, overrides


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    from ..solvers.registry import CONF_DIR
    from .configs import ConfigError
    from .overrides import check_overrides

    try:
        check_overrides(overrides, CONF_DIR)
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            return compose(config_name="config", overrides=overrides)
    except ConfigError as exc:
        raise _Refused(str(exc)) from None
    except HydraException as exc:
        raise _Refused(str(exc).splitlines()[0]) from None


def _problem(a, overrides: list[str]):
    """``(cfg, problem, module, solver or None)`` from the composed config."""
    from ..model.problem import Problem
    from .configs import ConfigError, build_cluster, model_spec
    from .instances import instance_key
    from .jobs import load_graph
    from .targets import build_network, build_solver

    cfg = _compose(overrides)
    try:
        spec = model_spec(cfg.model)
        module, graph = load_graph(spec)
        problem = Problem(graph, build_cluster(cfg.cluster), build_network(cfg.network),
                          name=instance_key(spec, cfg.cluster, cfg.network, 4))
        solver = None if a.plan else build_solver(cfg.solver)
    except ConfigError as exc:
        raise _Refused(str(exc)) from None
    return cfg, problem, module, solver


def _settings(a) -> tuple[list[str], str | None]:
    overrides = [o for o in a.overrides if not o.startswith("plan_from=")]
    plan_from = next((o.partition("=")[2] for o in a.overrides if o.startswith("plan_from=")), None)
    if a.model:
        overrides.insert(0, f"model={a.model}")
    if a.solver:
        overrides.insert(0, f"solver={a.solver}")
    if a.input_hw:
        overrides.append(f"model.input_shape=[1,3,{a.input_hw},{a.input_hw}]")
    if a.ranks and not any(o.partition("=")[0] == "cluster" for o in overrides):
        overrides.append(f"cluster=rpi4_x{a.ranks}")
    return overrides, plan_from


def main(argv: Sequence[str] | None = None) -> int:
    from .main import interruptible

    a = _parser().parse_args(argv)
    return interruptible(_PROG, _guarded, a)


_PROG = "python -m iopopt.distributed"


def _guarded(a) -> int:
    """``_run(a)``; a bad setting exits 2, a failed run (a busy port, a silent peer, a dead rank) 1, one line each."""
    from ..exec.distributed import DistributedError

    try:
        return _run(a)
    except _Refused as exc:
        print(f"{_PROG}: error: {exc}", file=sys.stderr)
        return 2
    except DistributedError as exc:
        print(f"{_PROG}: failed: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1


def _run(a) -> int:
    overrides, plan_from = _settings(a)
    rec = None
    if plan_from:
        rec, stored = _stored(plan_from)
        overrides = stored + overrides  # the command line wins
    _, problem, module, solver = _problem(a, overrides)
    world = os.environ.get("WORLD_SIZE")
    if world and int(world) != problem.k:
        raise _Refused(f"WORLD_SIZE={world} but cluster {problem.cluster.name or '?'} has {problem.k} devices; "
                       "choose a cluster of that size (cluster=...)")
    if rec is not None:
        from ..model.problem import InvalidPlan, Plan

        plan = Plan(rec["strategies"])
        try:
            plan.validate(problem)
        except InvalidPlan as exc:
            raise _Refused(f"plan_from={plan_from}: the stored plan does not fit {problem.name}: {exc}") from None
        how = f"stored plan of {rec.get('solver')} from {plan_from}"
        if rec.get("instance") and rec["instance"] != problem.name:
            how += f" (made for {rec['instance']})"
    elif a.plan:
        from ..space.plans import build_plan

        plan, how = build_plan(problem, a.plan), f"plan family {a.plan}"
    else:
        plan, how = solver.solve(problem).plan, f"solver {solver.name}"
        if plan is None:
            raise _Refused(f"the solver found no plan for {problem.name}")
    return _execute(a, problem, module, plan, how)


def _execute(a, problem, module, plan, how: str) -> int:
    import torch

    from ..compile.program import compile_plan
    from ..cost.evaluate import evaluate_program
    from ..exec.distributed import DistributedExecutor, check_trace

    program = compile_plan(problem, plan)
    predicted = evaluate_program(program)
    devices = ", ".join(f"{d.name} {d.flops_per_s / 1e9:g} GFLOP/s" for d in problem.cluster.devices)
    print(f"model {problem.graph.name} {list(problem.graph[problem.graph.input_name].out_shape)}; "
          f"cluster {problem.cluster.name or '?'} ({problem.k} devices: {devices}); network {problem.network.name} "
          f"({type(problem.network).__name__}, {problem.network.bandwidth_bytes_per_s * 8 / 1e6:g} Mbit/s)")
    print(f"plan: {how}: {plan}; cost model: {predicted.latency_s * 1e3:.3f} ms, {predicted.messages} messages")
    print(f"running {problem.k} ranks ({'this rank of a multi-host run' if os.environ.get('WORLD_SIZE') else 'local'}"
          f", gloo), {a.dtype}, {a.repeats} repeats, {a.threads} torch thread(s) per rank")
    ex = DistributedExecutor(threads=a.threads, dtype=getattr(torch, a.dtype), repeats=a.repeats,
                             timeout_s=a.timeout, step_barrier=a.step_barrier)
    t = ex.run(program, module)
    if t.output is not None:
        rep = check_trace(program, t, module, dtype=ex.dtype)
        print(rep.summary())
        return 0 if rep.passed else 1
    print(t.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
