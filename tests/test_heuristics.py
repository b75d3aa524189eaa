"""greedy_iop and the baselines, checked against independent oracles.

The greedy is compared with a naive re-implementation that re-evaluates the
whole plan with the cost model at every step (no incremental terms), and its
local optimality is checked by trying every remaining pair with the cost model.
"""

from __future__ import annotations

import contextlib
import functools

import pytest
import torch
from torch import nn

from iopopt import Cluster, Problem, evaluate, trace, zoo
from iopopt.frontend.synthetic import random_cnn
from iopopt.frontend.zoo import init_weights
from iopopt.model.layouts import STRATEGIES
from iopopt.model.problem import InvalidPlan
from iopopt.network import SharedNetwork, SwitchedNetwork
from iopopt.solvers import SolverError, make_solver
from iopopt.solvers.baselines import BestUniform, RandomPlan
from iopopt.solvers.exact import BruteSolver
from iopopt.solvers.greedy_iop import BENEFIT_RTOL, GreedyIop
from iopopt.solvers.testing import contract_problems
from iopopt.space.pairs import apply_pairs, base_plan, candidate_pairs, conflicts

torch.set_num_threads(1)

# id -> (model, k, network); slow devices, fast network: pairing pays off.
_CASES = {
    "chain0-k2-shared": ("chain0", 2, "shared"),
    "chain1-k4-switched": ("chain1", 4, "switched"),
    "chain2-k2-switched": ("chain2", 2, "switched"),
    "chain3-k2-shared": ("chain3", 2, "shared"),
    "dag4-k3-shared": ("dag4", 3, "shared"),
    "dag19-k3-switched": ("dag19", 3, "switched"),  # adds of two convs: partial sums possible
    "tiny_chain-k4-shared": ("tiny_chain", 4, "shared"),
    "resnet18-k4-shared": ("resnet18", 4, "shared"),
    "uniform8-k4-switched": ("uniform8", 4, "switched"),  # identical layers: exact ties between pairs
    "bare8-k3-shared": ("bare8", 3, "shared"),  # conv → conv edges: applying a pair changes its neighbours' benefits
    "bare8-k2-switched": ("bare8", 2, "switched"),
}


def _uniform_chain(n_convs: int = 8, channels: int = 64, hw: int = 2, relu: bool = True):
    """``n_convs`` identical 3×3 convs (each followed by a ReLU if ``relu``)."""
    with torch.device("meta"):
        layers = []
        for _ in range(n_convs):
            layers += [nn.Conv2d(channels, channels, 3, padding=1)] + ([nn.ReLU()] if relu else [])
        module = nn.Sequential(*layers)
    module.to_empty(device="cpu")
    shape = (1, channels, hw, hw)
    return init_weights(module, seed=0, input_shape=shape).eval(), shape


@functools.cache
def _graph(model: str):
    if model.startswith("chain"):
        module, shape = random_cnn(int(model[5:]), 8, kind="chain", channels=(4, 16))
    elif model == "uniform8":
        module, shape = _uniform_chain()
    elif model == "bare8":
        module, shape = _uniform_chain(channels=32, hw=4, relu=False)
    elif model.startswith("dag"):
        module, shape = random_cnn(int(model[3:]), 10, kind="dag", channels=(4, 16))
    else:
        module, shape = zoo.build(model)
    return trace(module, shape, name=model)


@functools.cache
def problem_for(case: str, memory_bytes: float = float("inf")) -> Problem:
    model, k, net = _CASES[case]
    network = SharedNetwork(1e8, 1e-5) if net == "shared" else SwitchedNetwork(1e8, 1e-5)
    return Problem(_graph(model), Cluster.homogeneous(k, 1e7, memory_bytes=memory_bytes), network, name=case)


def cost(problem, plan) -> float:
    return evaluate(problem, plan).latency_s


def naive_greedy(problem, base: str, recompute: bool) -> list:
    """The paper's greedy by its definition: full cost-model evaluation of every candidate plan."""
    start = base_plan(problem, base)
    pairs = candidate_pairs(problem)
    tol = BENEFIT_RTOL * cost(problem, start)
    pos = problem.graph.position

    def pick(avail, gain):
        best = max((gain[p] for p in avail), default=0.0)
        if best <= tol:
            return None
        return min((p for p in avail if gain[p] >= best - tol), key=lambda p: (pos[p.a], str(p)))

    applied: list = []
    current = cost(problem, start)
    initial = {p: current - cost(problem, apply_pairs(start, [p])) for p in pairs}
    avail = list(pairs)
    while True:
        used = {n for q in applied for n in q.nodes}
        avail = [p for p in avail if used.isdisjoint(p.nodes)]
        if recompute:
            gain = {p: current - cost(problem, apply_pairs(start, applied + [p])) for p in avail}
        else:
            gain = initial
        p = pick(avail, gain)
        if p is None:
            return applied
        now = cost(problem, apply_pairs(start, applied + [p]))
        avail.remove(p)
        if current - now > tol:
            applied.append(p)
            current = now


PARAMS = [(c, b, r) for c in _CASES for b in ("coedge", "oc") for r in (True, False)]


@pytest.mark.parametrize("case,base,recompute", PARAMS, ids=[f"{c}-{b}-{'re' if r else 'once'}" for c, b, r in PARAMS])
def test_greedy_matches_naive_oracle(case, base, recompute):
    problem = problem_for(case)
    result = GreedyIop(base=base, recompute=recompute).solve(problem)
    start = base_plan(problem, base)
    expected = naive_greedy(problem, base, recompute)
    assert result.extra["pairs"] == [[p.a, p.b] for p in expected]
    assert result.plan == apply_pairs(start, expected)
    assert result.objective <= cost(problem, start) * (1 + 1e-12)
    assert result.termination == "completed" and result.bound is None
    assert result.extra["evaluations"] >= len(candidate_pairs(problem))


@pytest.mark.parametrize("case", list(_CASES))
@pytest.mark.parametrize("base", ["coedge", "oc"])
def test_greedy_with_recompute_is_a_local_optimum(case, base):
    problem = problem_for(case)
    result = GreedyIop(base=base, recompute=True).solve(problem)
    by_name = {(p.a, p.b): p for p in candidate_pairs(problem)}
    applied = [by_name[tuple(ab)] for ab in result.extra["pairs"]]
    assert not conflicts(applied), "each operator may be in at most one pair"
    used = {n for p in applied for n in p.nodes}
    start = base_plan(problem, base)
    for p in by_name.values():
        if used.isdisjoint(p.nodes):
            gain = result.objective - cost(problem, apply_pairs(start, applied + [p]))
            assert gain <= BENEFIT_RTOL * cost(problem, start), f"pair {p} still helps by {gain} s"


@pytest.mark.parametrize("case", [c for c in _CASES if not c.startswith("resnet")])
@pytest.mark.parametrize("base", ["coedge", "oc"])
def test_greedy_is_no_better_than_the_optimum_of_its_space(case, base):
    """An independent exhaustive search over base + disjoint pairs bounds the greedy from below."""
    problem = problem_for(case)
    best = BruteSolver(space="pairs", base=base).solve(problem)
    greedy = GreedyIop(base=base).solve(problem)
    assert best.termination == "optimal"
    assert best.objective <= greedy.objective * (1 + 1e-12)


def test_greedy_cases_exercise_the_algorithm():
    """The cases above apply several pairs and include overlapping candidates (conflicts to resolve)."""
    applied = {
        (c, b): GreedyIop(base=b).solve(problem_for(c)).extra["pairs"] for c in _CASES for b in ("oc", "coedge")
    }
    assert sum(map(len, applied.values())) >= 10
    assert any(len(v) >= 3 for v in applied.values())
    assert any(conflicts(candidate_pairs(problem_for(c))) for c in _CASES)


def test_ties_go_to_the_earliest_pair():
    problem = problem_for("uniform8-k4-switched")
    result = GreedyIop().solve(problem)
    gains = result.extra["benefits_s"]
    assert len(gains) >= 3 and len(set(gains)) == 1, "the middle pairs of identical layers tie exactly"
    pos = problem.graph.position
    firsts = [pos[a] for a, _ in result.extra["pairs"]]
    assert firsts == sorted(firsts)
    # among the tied pairs, the first applied is the earliest in topological order
    start = base_plan(problem, "coedge")
    pairs = candidate_pairs(problem)
    gains0 = [cost(problem, start) - cost(problem, apply_pairs(start, [p])) for p in pairs]
    tol = BENEFIT_RTOL * cost(problem, start)
    tied = [p for p, g in zip(pairs, gains0) if g >= max(gains0) - tol]
    assert len(tied) >= 2 and result.extra["pairs"][0] == [tied[0].a, tied[0].b]


def test_greedy_beats_its_base_on_a_pairing_friendly_problem():
    problem = problem_for("chain3-k2-shared")
    for base in ("coedge", "oc"):
        result = GreedyIop(base=base).solve(problem)
        assert result.objective < cost(problem, base_plan(problem, base))


def test_greedy_rejects_unknown_settings():
    problem = contract_problems()[0].problem
    with pytest.raises(SolverError, match=r"unknown base 'rows'; valid: \['coedge', 'oc'\]"):
        GreedyIop(base="rows").solve(problem)
    with pytest.raises(SolverError, match="recompute must be true or false"):
        GreedyIop(recompute="yes").solve(problem)


# -- memory -------------------------------------------------------------------------------

SOLVERS = ["greedy_iop", "single", "coedge", "oc", "best_uniform", "random"]


@pytest.mark.parametrize("name", SOLVERS)
def test_memory_violation_is_reported(name):
    problem = problem_for("chain0-k2-shared", memory_bytes=1000)
    result = make_solver(name).solve(problem)
    # why the heuristic stopped stays apart from whether its plan fits
    assert result.termination == "completed" and result.memory_fits is False and not result.ok
    violations = result.extra["memory_violations"]
    assert violations and all("capacity 1000 B" in v for v in violations)
    assert result.plan is not None and result.objective == pytest.approx(cost(problem, result.plan), rel=1e-12)


@pytest.mark.parametrize("name", SOLVERS)
def test_no_violation_with_ample_memory(name):
    result = make_solver(name).solve(problem_for("chain0-k2-shared"))
    assert result.termination == "completed" and "memory_violations" not in result.extra


# -- baselines ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(_CASES))
def test_best_uniform_is_no_worse_than_any_uniform_plan(case):
    problem = problem_for(case)
    best = BestUniform().solve(problem)
    rivals = [base_plan(problem, b) for b in ("coedge", "oc")]
    for strategy in STRATEGIES:
        with contextlib.suppress(InvalidPlan):
            rivals.append(problem.plan({}, default=strategy))
    assert len(rivals) >= 6
    assert best.objective <= min(cost(problem, p) for p in rivals) * (1 + 1e-12)
    for name in ("single", "coedge", "oc"):
        assert best.objective <= make_solver(name).solve(problem).objective * (1 + 1e-12)


def test_fixed_baselines_are_their_plans():
    problem = problem_for("dag4-k3-shared")
    assert set(make_solver("single").solve(problem).plan.values()) == {"host"}
    assert make_solver("coedge").solve(problem).plan == base_plan(problem, "coedge")
    assert make_solver("oc").solve(problem).plan == base_plan(problem, "oc")


@pytest.mark.parametrize("case", ["dag4-k3-shared", "resnet18-k4-shared"])
def test_random_is_deterministic_per_seed(case):
    problem = problem_for(case)
    plans = {seed: RandomPlan(seed=seed).solve(problem).plan for seed in range(4)}
    assert all(RandomPlan(seed=s).solve(problem).plan == p for s, p in plans.items())
    assert len(set(plans.values())) == 4, "different seeds should give different plans"


def test_random_best_of_samples():
    problem = problem_for("dag4-k3-shared")
    one = RandomPlan(seed=3, samples=1).solve(problem)
    many = RandomPlan(seed=3, samples=16).solve(problem)
    assert many.objective <= one.objective  # the first draw of both is the same
    assert many.extra["samples"] == 16


def test_random_plans_are_valid_and_use_partial_sums():
    """Many seeds: every plan validates, and some add sums partial sums (both inputs from convs in ``ic``)."""
    problem = problem_for("dag19-k3-switched")
    seen = set()
    for seed in range(400):
        plan = RandomPlan(seed=seed).solve(problem).plan
        plan.validate(problem)
        seen.update(plan.values())
    assert {"partial", "ic", "rows", "oc", "channel"} <= seen


def test_random_rejects_bad_settings():
    problem = contract_problems()[0].problem
    with pytest.raises(SolverError, match="samples must be a positive integer"):
        RandomPlan(samples=0).solve(problem)
    with pytest.raises(SolverError, match="seed must be an integer"):
        RandomPlan(seed="a").solve(problem)
