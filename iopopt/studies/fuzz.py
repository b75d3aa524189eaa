"""Fuzzing the whole pipeline: one random model through capture, the cheap solvers and both executors.

:func:`check_model` traces a model, solves it with every cheap solver
(``single``, ``coedge``, ``oc``, ``best_uniform``, ``greedy_iop``, ``ilp``
over the full space and over the pairs space, ``brute`` where the space is
tiny, ``dp`` on chains), draws a few random valid plans, and runs every plan
with the simulated executor through :func:`iopopt.verify`. It returns a
:class:`FuzzOutcome` listing what went wrong, by kind:

* ``crashes`` -- any exception other than a clear
  :class:`~iopopt.frontend.capture.UnsupportedOperator` at capture or a
  solver's documented refusal (:class:`~iopopt.solvers.base.SolverError`);
* ``verify_failures`` -- output or byte-exact agreement failed;
* ``cost_mismatches`` -- the cost model's bytes, messages or activation peaks
  differ from what the executor measured (simulated: every message and every
  held byte; distributed: bytes and messages per rank);
* ``below_optimum`` -- a plan (fitting memory) cheaper than a proven optimum
  of a space that contains it, or two proven optima of one space that differ.

The long run is ``scripts/fuzz.py``; the property test ``tests/test_fuzz.py``.
"""

from __future__ import annotations

import math
import random
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ..compile.program import compile_plan
from ..cost.evaluate import evaluate
from ..exec.distributed.executor import DistributedExecutor, Job, check_trace
from ..exec.verify import verify
from ..frontend.capture import UnsupportedOperator, trace
from ..model.cluster import Cluster, Device
from ..model.network import SharedNetwork, SwitchedNetwork
from ..model.problem import Plan, Problem
from ..solvers.base import SolverError
from ..solvers.registry import make_solver
from ..space.plans import draw_plan

__all__ = ["FuzzOutcome", "random_problem", "check_model", "CHEAP_SOLVERS"]

#: Solvers run on every fuzzed model: name → settings (brute and dp are added where they apply).
CHEAP_SOLVERS: dict[str, dict] = {
    "single": {},
    "coedge": {},
    "oc": {},
    "best_uniform": {},
    "greedy_iop": {},
    "ilp": {"time_limit_s": 30},
    "ilp_pairs": {"time_limit_s": 30},
}

#: Relative slack when comparing a plan's latency with a proven optimum (float sums in another order).
OPTIMUM_RTOL = 1e-9


@dataclass
class FuzzOutcome:
    """What :func:`check_model` found on one model (each list: one readable line per finding)."""

    unsupported: str = ""
    plans: int = 0
    distributed_plans: int = 0
    reference_not_finite: bool = False
    crashes: list[str] = field(default_factory=list)
    verify_failures: list[str] = field(default_factory=list)
    cost_mismatches: list[str] = field(default_factory=list)
    below_optimum: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.crashes or self.verify_failures or self.cost_mismatches or self.below_optimum)

    def lines(self) -> list[str]:
        return [f"{kind}: {line}" for kind in ("crashes", "verify_failures", "cost_mismatches", "below_optimum")
                for line in getattr(self, kind)]


def random_problem(graph, rng: random.Random) -> Problem:
    """The graph on 2 to 4 devices of random speeds (or equal), a shared or switched network."""
    k = rng.randint(2, 4)
    devices = [Device(f"d{i}", rng.choice((1e8, 3e8, 1e9)), op_overhead_s=rng.choice((0.0, 1e-5))) for i in range(k)]
    bandwidth = rng.choice((1e5, 1e6, 1e8))
    net = SharedNetwork(bandwidth, latency_s=1e-4) if rng.random() < 0.5 else SwitchedNetwork(bandwidth, latency_s=1e-4)
    split = "equal" if rng.random() < 0.3 else "proportional"
    return Problem(graph, Cluster(tuple(devices), split=split), net)


def _crash(where: str) -> str:
    tb = traceback.format_exc().strip().splitlines()
    return f"{where}: {tb[-1]} (at {tb[-3].strip() if len(tb) >= 3 else '?'})"


def _solve_all(problem: Problem, out: FuzzOutcome, brute_max: int) -> list[tuple[str, object]]:
    """Every cheap solver's result (the refusals left out, crashes recorded)."""
    solvers = dict(CHEAP_SOLVERS)
    if problem.graph.is_chain():
        solvers["dp"] = {}
    solvers["brute"] = {"max_plans": brute_max}
    results = []
    for name, settings in solvers.items():
        try:
            results.append((name, make_solver(name, **settings).solve(problem)))
        except SolverError:
            continue  # a documented refusal (brute over max_plans, dp on a DAG)
        except Exception:
            out.crashes.append(_crash(f"solver {name}"))
    return results


def _space(name: str) -> str:
    return "pairs" if name == "ilp_pairs" else "full"


def check_model(
    model: nn.Module,
    shape: Sequence[int],
    rng: random.Random,
    n_random: int = 3,
    brute_max: int = 2000,
    distributed: bool = False,
) -> FuzzOutcome:
    """Run one model through the whole pipeline and collect what went wrong (see the module docstring)."""
    out = FuzzOutcome()
    try:
        graph = trace(model, tuple(shape))
    except UnsupportedOperator as e:
        out.unsupported = str(e).splitlines()[0]
        return out
    except Exception:
        out.crashes.append(_crash("capture"))
        return out
    problem = random_problem(graph, rng)
    results = _solve_all(problem, out, brute_max)
    plans: list[tuple[str, Plan]] = []
    optima: dict[str, list[tuple[str, float]]] = {"full": [], "pairs": []}
    for name, res in results:
        if res.plan is None:
            if res.termination != "infeasible":
                out.crashes.append(f"solver {name}: no plan ({res.termination}) {res.extra.get('error', '')}")
            continue
        plans.append((name, res.plan))
        if res.termination == "optimal":
            optima[_space(name)].append((name, res.objective))
    for i in range(n_random):
        plans.append((f"random#{i}", draw_plan(problem, rng)))

    latencies: dict[str, float] = {}
    for label, plan in plans:
        out.plans += 1
        try:
            program = compile_plan(problem, plan)
            cost = evaluate(problem, plan)
            rep = verify(problem, program, model)
        except Exception:
            out.crashes.append(_crash(f"plan {label}"))
            continue
        if not rep.reference_finite:
            out.reference_not_finite = True
            return out  # nothing to compare with (the verify report says so); not a pipeline failure
        if not rep.passed:
            out.verify_failures.append(f"plan {label}: {rep.diff.splitlines()[0] if rep.diff else rep.summary()}")
        msgs = program.messages()
        if cost.messages != len(msgs) or cost.bytes_sent != sum(b for _, _, b in msgs):
            out.cost_mismatches.append(
                f"plan {label}: cost model {cost.messages} messages / {cost.bytes_sent} B, program "
                f"{len(msgs)} / {sum(b for _, _, b in msgs)} B"
            )
        peaks = tuple(m.activation_peak_bytes for m in cost.per_device)
        if rep.messages_match and peaks != rep.actual_activation_peaks:
            out.cost_mismatches.append(
                f"plan {label}: activation peaks {peaks} priced, {rep.actual_activation_peaks} held")
        if cost.fits_memory:
            latencies[label] = cost.latency_s
    _check_optima(out, optima, latencies)
    if distributed and not out.crashes:
        _check_distributed(problem, model, plans, out)
    return out


def _check_optima(out: FuzzOutcome, optima: dict, latencies: dict[str, float]) -> None:
    for space, found in optima.items():
        if not found:
            continue
        best_name, best = min(found, key=lambda t: t[1])
        for name, value in found:
            if not math.isclose(value, best, rel_tol=1e-6, abs_tol=1e-12):
                out.below_optimum.append(f"proven optima of the {space} space differ: {name} {value!r}, "
                                         f"{best_name} {best!r}")
        # every plan lies in the full space; the pairs space holds the greedy's plans and its base plan
        in_pairs = ("greedy_iop", "coedge")
        members = latencies if space == "full" else {n: v for n, v in latencies.items() if n in in_pairs}
        for label, lat in members.items():
            if lat < best * (1 - OPTIMUM_RTOL) - 1e-15:
                out.below_optimum.append(f"plan {label} {lat!r} s < proven optimum {best!r} s of {best_name} ({space})")


def _check_distributed(problem: Problem, model: nn.Module, plans, out: FuzzOutcome) -> None:
    torch.set_num_threads(1)
    programs = [(label, compile_plan(problem, plan)) for label, plan in plans[-2:]]
    try:
        traces = DistributedExecutor(warmup=0, repeats=1, timeout_s=60, run_timeout_s=300).run_many(
            [Job(pr, model) for _, pr in programs])
    except Exception:
        out.crashes.append(_crash("distributed executor"))
        return
    for (label, program), tr in zip(programs, traces):
        out.distributed_plans += 1
        rep = check_trace(program, tr, model)
        if rep.max_abs_err > rep.tolerance:
            out.verify_failures.append(f"distributed, plan {label}: {rep.summary()}")
        if not rep.bytes_match or tr.messages != len(program.messages()):
            out.cost_mismatches.append(f"distributed, plan {label}: sent {list(rep.sent_bytes)} B / {tr.messages} "
                                       f"messages, priced {list(rep.expected_bytes)} B / {len(program.messages())}")
