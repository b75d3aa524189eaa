"""The ILP's twin reduction (placements on interchangeable devices left out): checked against the cost model,
the unreduced model and brute force."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import pytest
import torch.nn as nn

import iopopt
from iopopt import Cluster, Device, Problem, evaluate
from iopopt.frontend.synthetic import random_cnn
from iopopt.model.network import NetworkModel
from iopopt.network import SharedNetwork, SwitchedNetwork
from iopopt.solvers.exact import BruteSolver
from iopopt.solvers.ilp import IlpSolver
from iopopt.solvers.ilp.reduce import lift
from iopopt.solvers.ilp.twins import collapse
from iopopt.space.plans import random_plan

RTOL = 1e-9


def _problem(seed: int, speeds, network=None, layers: int = 3) -> Problem:
    rng = random.Random(seed)
    kind = "dag" if seed % 2 else "chain"
    module, shape = random_cnn(seed, layers, kind=kind, channels=(2, 12), input_hw=(8, 12))
    graph = iopopt.trace(module, shape, name=f"{kind}-s{seed}")
    devs = tuple(Device(f"d{i}", f, op_overhead_s=1e-5) for i, f in enumerate(speeds))
    if network is None:
        bw, alpha = rng.choice([1e7, 1e8, 1e9]), rng.choice([0.0, 1e-5, 1e-4])
        network = SharedNetwork(bw, alpha) if seed % 2 else SwitchedNetwork(bw, alpha)
    return Problem(graph, Cluster(devs), network)


def _all(problem: Problem) -> dict:
    return {n: problem.strategies(n) for n in problem.graph.order}


@pytest.mark.parametrize("seed", range(8))
def test_plans_mapped_onto_twins_are_no_worse(seed):
    """The reduction's claim, against the cost model: every plan, its placements renamed onto the kept twins,
    costs no more."""
    problem = _problem(seed, (2e7, 1e7, 1e7, 2e7, 1e7))
    domains, removals = collapse(problem, _all(problem))
    assert removals, "five devices of two kinds: some placement is renamed"
    for j in range(30):
        plan = random_plan(problem, seed=100 * seed + j)
        mapped = lift(plan, removals)
        assert all(mapped[n] in domains[n] for n in problem.graph.order)
        before, after = evaluate(problem, plan), evaluate(problem, mapped)
        assert after.latency_s <= before.latency_s * (1 + RTOL), (plan, mapped)


@pytest.mark.parametrize("seed", range(4))
def test_brute_force_equals_the_ilp_on_twin_devices(seed):
    """Three devices, two of them twins: brute force over every plan against the (twin-reduced) ILP."""
    problem = _problem(seed, (2e7, 1e7, 1e7), layers=2)
    assert collapse(problem, _all(problem))[1], "the twins are collapsed, so the check covers the reduction"
    brute = BruteSolver(max_plans=10**6).solve(problem)
    ilp = IlpSolver().solve(problem)
    assert brute.termination == ilp.termination == "optimal"
    assert math.isclose(brute.objective, ilp.objective, rel_tol=1e-6), (brute, ilp)


def test_a_cluster_of_equal_boards_keeps_its_optimum_with_fewer_variables():
    module, shape = iopopt.zoo.build("resnet18")
    graph = iopopt.trace(module, shape, name="resnet18")
    problem = Problem(graph, Cluster(tuple(Device(f"d{i}", 4e9) for i in range(6))), SwitchedNetwork(1.25e8, 1e-4))
    domains, removals = collapse(problem, _all(problem))
    renamed = {s for _, s, _ in removals}
    assert renamed, "six equal boards: their placements collapse"
    assert all(not any(s in domains[n] for s in renamed) for n in graph.order if len(domains[n]) > 1)
    reduced = IlpSolver().solve(problem)
    unreduced = IlpSolver(deadline_s=1e6).solve(problem)  # a budget switches every reduction off
    assert reduced.termination == unreduced.termination == "optimal"
    assert reduced.extra["variables"] < unreduced.extra["variables"] / 2
    assert math.isclose(reduced.objective, unreduced.objective, rel_tol=1e-9)


def test_distinct_devices_and_a_slower_link_are_kept():
    """Devices of different speeds are no twins; a twin behind a slower link never replaces a faster one."""
    distinct = _problem(1, (4e7, 2e7, 1e7))
    assert collapse(distinct, _all(distinct))[1] == []
    speeds = (4e7, 1e7, 1e7)
    equal = _problem(0, speeds, SwitchedNetwork(1e7, 1e-4))
    assert {(s, r) for _, s, r in collapse(equal, _all(equal))[1]} == {("dev2", "dev1")}
    # device 1's link is slower than device 2's: 2 cannot be renamed onto 1 (nor 1 onto 2: 2 comes later)
    slow = _problem(0, speeds, SwitchedNetwork(1e7, 1e-4, device_bandwidths=(1e7, 5e6, 1e7)))
    assert collapse(slow, _all(slow))[1] == []


@pytest.mark.parametrize("host,subsets", [(0, False), (2, False), (4, False), (2, True)])
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 23, 25, 26, 32])  # 23-32: a split gathered onto a twin binds
def test_every_term_is_no_worse_on_the_kept_twin(seed, host, subsets):
    """The three conditions, pair by pair through the cost terms (no memo, no vectors): each node term, and
    each edge term of every strategy pair, renamed onto the kept twins, is no larger and still feasible
    (the host first or among the devices, splits over subsets too)."""
    import dataclasses

    from iopopt.compile.terms import terms

    base = _problem(seed, (2e7, 1e7, 1e7, 2e7, 1e7, 1e7))
    problem = Problem(base.graph, dataclasses.replace(base.cluster, host=host, subsets=subsets), base.network)
    _, removals = collapse(problem, _all(problem))
    sigma = {(n, s): r for n, s, r in removals}
    t = terms(problem)
    checked = 0
    for n in problem.graph.order:
        for s in problem.strategies(n):
            if (n, s) in sigma:
                assert t.node(n, sigma[n, s]).compute_s <= t.node(n, s).compute_s
    for u, v, i in problem.graph.edges():
        for s in problem.strategies(u):
            for q in problem.strategies(v):
                s2, q2 = sigma.get((u, s), s), sigma.get((v, q), q)
                if (s2, q2) == (s, q) or (e := t.edge(u, v, i, s, q)) is None:
                    continue
                e2 = t.edge(u, v, i, s2, q2)
                assert e2 is not None and e2.time_s <= e.time_s, (u, v, s, q, s2, q2)
                checked += 1
    assert checked > 100


def _one_conv() -> iopopt.OpGraph:
    """input -> a 1x1 conv from 2 to 64 channels -> output: the tensors into and out of the conv differ 32x."""
    return iopopt.trace(nn.Conv2d(2, 64, 1), (1, 2, 4, 4), name="conv")


@dataclass(frozen=True)
class _Links(NetworkModel):
    """Per-link latency plus bytes over the link's bandwidth, messages one after the other."""

    latency: tuple = ((0.0, 0.0, 0.2), (0.0, 0.0, 0.0), (0.2, 0.0, 0.0))
    bandwidth: tuple = ((1.0, 1e3, 1e6), (1e3, 1.0, 1e6), (1e6, 1e6, 1.0))
    name: str = "links"

    def phase_time(self, messages):
        return sum(self.latency[m.src][m.dst] + m.nbytes / self.bandwidth[m.src][m.dst] for m in messages)


@pytest.mark.parametrize(
    "network",
    [
        # only the messages tell the twins apart: device 1's link is 10^6 times slower than device 2's
        SwitchedNetwork(1e9, 1e-5, device_bandwidths=(1e9, 1e3, 1e9)),
        # which twin is faster depends on the message's size: 1 for the small input, 2 for the conv's output
        _Links(),
    ],
    ids=["slow-link", "size-dependent"],
)
def test_a_twin_that_sends_some_message_slower_keeps_its_placements(network):
    problem = Problem(_one_conv(), Cluster((Device("h", 1e3), Device("a", 1e9), Device("b", 1e9))), network)
    assert collapse(problem, _all(problem))[1] == []
    brute = BruteSolver(max_plans=10**6).solve(problem)
    ilp = IlpSolver().solve(problem)
    assert brute.plan["conv2d"] == "dev2", "the case is meant to need device 2"
    assert math.isclose(brute.objective, ilp.objective, rel_tol=1e-9), (brute, ilp)


@pytest.mark.parametrize(
    "settings",
    [{"objective": "energy"}, {"memory_budget_bytes": 1e12}, {"objective": "peak_memory"}, {"deadline_s": 1e6},
     {"capacity": 1e9}],
    ids=["energy", "memory-budget", "peak-memory", "deadline", "capacity"],
)
def test_memory_energy_and_budgets_leave_the_twins_alone(settings, monkeypatch):
    """The reduction is for latency with no memory rows: any other objective, a budget or a finite capacity
    never calls it (latency on the same boards does)."""
    import iopopt.solvers.ilp.model as ilp_model

    calls = []
    real = ilp_model.collapse
    monkeypatch.setattr(ilp_model, "collapse", lambda *a: calls.append(1) or real(*a))
    settings = dict(settings)
    cap = settings.pop("capacity", math.inf)
    watts = dict(active_power_w=3.0, idle_power_w=1.0, tx_power_w=2.0, rx_power_w=1.5)
    devs = tuple(Device(f"d{i}", 1e7, cap, **watts) for i in range(3))
    problem = Problem(_problem(0, (1e7,)).graph, Cluster(devs), SwitchedNetwork(1e7, 1e-4))
    assert IlpSolver(**settings).solve(problem).termination == "optimal"
    assert calls == []
    IlpSolver().solve(Problem(problem.graph, Cluster(tuple(Device(f"d{i}", 1e7) for i in range(3))), problem.network))
    assert calls == [1]
