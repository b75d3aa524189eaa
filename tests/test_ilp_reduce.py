"""The ILP's exact reduction (dominated strategies left out): checked against the cost model and brute force."""

from __future__ import annotations

import math
import random

import pytest

import iopopt
from iopopt import Cluster, Device, Problem, evaluate
from iopopt.frontend.synthetic import random_cnn
from iopopt.network import SharedNetwork, SwitchedNetwork
from iopopt.solvers.exact import BruteSolver
from iopopt.solvers.ilp import IlpSolver
from iopopt.solvers.ilp.model import _full_domains, _reduced
from iopopt.solvers.ilp.reduce import lift
from iopopt.space.plans import random_plan

RTOL = 1e-9


def _problem(seed: int, k: int, caps=None, power: bool = False) -> Problem:
    rng = random.Random(seed)
    kind = "dag" if seed % 2 else "chain"
    module, shape = random_cnn(seed, 2 + seed % 2, kind=kind, channels=(2, 12), input_hw=(8, 12))
    graph = iopopt.trace(module, shape, name=f"{kind}-s{seed}")
    caps = caps or [math.inf] * k
    watts = dict(active_power_w=3.0, idle_power_w=1.0, tx_power_w=2.0, rx_power_w=1.5) if power else {}
    devs = tuple(Device(f"d{i}", rng.choice([1e7, 2e7, 5e7]), caps[i], **watts) for i in range(k))
    bw, alpha = rng.choice([1e7, 1e8, 1e9]), rng.choice([0.0, 1e-5, 1e-4])
    network = SharedNetwork(bw, alpha) if seed % 2 else SwitchedNetwork(bw, alpha)
    return Problem(graph, Cluster(devs), network)


def _resnet18(k: int) -> Problem:
    module, shape = iopopt.zoo.build("resnet18")
    graph = iopopt.trace(module, shape, name="resnet18")
    devs = tuple(Device(f"d{i}", f) for i, f in enumerate((8e9, 4e9, 2e9, 4e9)[:k]))
    return Problem(graph, Cluster(devs), SwitchedNetwork(1.25e9, 2e-5))


@pytest.mark.parametrize("memory", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_lifted_plans_are_no_worse_and_fit_where_the_plan_fits(seed, memory):
    """Every plan, mapped into the reduced space, costs no more (and, with memory, no device holds more)."""
    problem = _problem(seed, 3)
    removed = 0
    domains, removals = _reduced(problem, _full_domains(problem), "latency", memory)
    removed += len(removals)
    for j in range(25):
        plan = random_plan(problem, seed=100 * seed + j)
        lifted = lift(plan, removals)
        assert all(lifted[n] in domains[n] for n in problem.graph.order)
        before, after = evaluate(problem, plan), evaluate(problem, lifted)
        assert after.latency_s <= before.latency_s * (1 + RTOL)
        if memory:
            for b, a in zip(before.per_device, after.per_device):
                assert a.peak_bytes <= b.peak_bytes
    assert removed > 0 or seed % 2  # the chains always lose some strategy (a check that could not fail otherwise)


def test_resnet18_loses_strategies_and_variables_but_not_its_optimum():
    problem = _resnet18(4)
    domains, removals = _reduced(problem, _full_domains(problem), "latency", False)
    full = sum(len(d) for d in _full_domains(problem).values())
    assert len(removals) == full - sum(len(d) for d in domains.values()) > full // 5
    reduced = IlpSolver().solve(problem)
    # the unreduced model: a budget switches the reduction off; one far above any plan's latency binds nothing
    unreduced = IlpSolver(deadline_s=1e6).solve(problem)
    assert reduced.termination == unreduced.termination == "optimal"
    assert reduced.extra["variables"] < unreduced.extra["variables"]
    assert math.isclose(reduced.objective, unreduced.objective, rel_tol=1e-9)


@pytest.mark.parametrize("seed", [0, 2, 4, 6])  # chains of 2 layers on 2 devices: brute force stays small
def test_brute_equals_reduced_ilp_with_memory_and_energy(seed):
    """Brute force over the whole space against the reduced ILP: capped memory, and the energy objective."""
    free = _problem(seed, 2, power=True)
    peaks = [m.peak_bytes for m in evaluate(free, free.plan({})).per_device]
    problem = _problem(seed, 2, caps=[0.8 * max(peaks)] * 2, power=True)
    for objective in ("latency", "energy"):
        brute = BruteSolver(objective=objective, max_plans=10**6).solve(problem)
        ilp = IlpSolver(objective=objective).solve(problem)
        assert brute.termination == ilp.termination
        if ilp.termination == "optimal":
            assert math.isclose(brute.objective, ilp.objective, rel_tol=1e-6), (objective, brute, ilp)
            assert evaluate(problem, ilp.plan).fits_memory
