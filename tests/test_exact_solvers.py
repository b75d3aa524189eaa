"""Exact solvers (``ilp``, ``dp``, ``brute``) checked against each other and against the cost model.

Every optimum is checked by an independent algorithm: dynamic programming on
chains, exhaustive enumeration on tiny graphs, random valid plans, and
``iopopt.evaluate`` for memory. ``--runslow`` adds the long sweeps.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import random
import re
import subprocess
import sys

import pytest

import iopopt
from iopopt import Cluster, Device, Plan, Problem, evaluate
from iopopt.frontend.synthetic import random_cnn
from iopopt.network import SharedNetwork, SwitchedNetwork
from iopopt.solvers import SolverError, make_solver
from iopopt.solvers.exact import BruteSolver, DpSolver
from iopopt.solvers.ilp import IlpSolver
from iopopt.space.pairs import BASES, apply_pairs, base_plan, candidate_pairs, conflicts

RTOL = 1e-9


@functools.cache
def _graph(seed: int, n_layers: int, kind: str, channels=(2, 12), hw=(8, 12)):
    module, shape = random_cnn(seed, n_layers, kind=kind, channels=channels, input_hw=hw)
    return iopopt.trace(module, shape, name=f"{kind}{n_layers}-s{seed}")


@functools.cache
def _zoo_graph(name: str):
    module, shape = iopopt.zoo.build(name)
    return iopopt.trace(module, shape, name=name)


def _random_problem(graph, seed: int, k: int, capacities=None) -> Problem:
    """Slow devices, a fast network: partitioning pays off, so the optimum is not trivial."""
    rng = random.Random(seed)
    flops = [rng.choice([1e7, 2e7, 5e7]) for _ in range(k)]
    caps = capacities or [math.inf] * k
    cluster = Cluster(tuple(Device(f"d{i}", f, c) for i, (f, c) in enumerate(zip(flops, caps))))
    bw, alpha = rng.choice([1e7, 1e8, 1e9]), rng.choice([0.0, 1e-5, 1e-4])
    network = SharedNetwork(bw, alpha) if rng.random() < 0.5 else SwitchedNetwork(bw, alpha)
    return Problem(graph, cluster, network)


def _with_capacities(problem: Problem, caps) -> Problem:
    devs = tuple(Device(d.name, d.flops_per_s, c, d.op_overhead_s) for d, c in zip(problem.cluster.devices, caps))
    return Problem(problem.graph, Cluster(devs, problem.cluster.host), problem.network)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=RTOL, abs_tol=1e-15)


def _chain_problem(seed: int) -> Problem:
    return _random_problem(_graph(seed, 4 + seed % 8, "chain"), seed, 2 + seed % 4)


# (seed, n_layers) of random_cnn(kind="dag") graphs that branch yet have at most 10^6 plans
_TINY_DAGS = [(30, 2), (19, 2), (7, 3), (13, 3), (16, 3), (17, 2), (4, 3), (23, 2), (26, 2), (5, 2), (30, 3), (20, 3)]
BRUTE_MAX = 10**6


def _tiny_problem(seed: int) -> Problem:
    """Even seeds: a tiny random chain; odd seeds: a tiny random DAG (residual add or concat).

    On 2 + seed % 3 devices, or fewer (then a layer fewer) where the full space,
    placements on every device included, would exceed ``BRUTE_MAX`` plans.
    """
    if seed % 2 == 0:
        gseed, layers, kind = 1000 + seed, 1 + seed % 3, "chain"
    else:
        (gseed, layers), kind = _TINY_DAGS[(seed // 2) % len(_TINY_DAGS)], "dag"
    while True:
        graph = _graph(gseed, layers, kind)
        for k in range(2 + seed % 3, 1, -1):
            problem = _random_problem(graph, 1000 + seed, k)
            if layers == 1 or _plan_count(problem) <= BRUTE_MAX:
                return problem
        layers -= 1


def _plan_count(problem: Problem) -> int:
    return math.prod(len(problem.strategies(v)) for v in problem.graph.order)


# -- dp == ilp on chains ------------------------------------------------------------------


def _check_dp_equals_ilp(problem: Problem) -> None:
    dp = DpSolver().solve(problem)
    ilp = IlpSolver().solve(problem)
    assert dp.termination == ilp.termination == "optimal"
    assert _close(dp.objective, ilp.objective), (dp.objective, ilp.objective)
    assert _close(evaluate(problem, ilp.plan).latency_s, ilp.objective)
    assert ilp.bound <= ilp.objective and _close(ilp.bound, ilp.objective)


@pytest.mark.parametrize("seed", range(15))
def test_dp_equals_ilp_on_random_chains(seed):
    _check_dp_equals_ilp(_chain_problem(seed))


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(15, 50))
def test_dp_equals_ilp_on_more_random_chains(seed):
    _check_dp_equals_ilp(_chain_problem(seed))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["alexnet", "vgg16"])
@pytest.mark.parametrize("k", [2, 4])
def test_dp_equals_ilp_on_zoo_chains(name, k):
    graph = _zoo_graph(name)
    assert graph.is_chain()
    # IoT-class devices on a 100 Mbit/s shared link
    problem = Problem(graph, Cluster.homogeneous(k, 5e9), SharedNetwork(12.5e6, 1e-3))
    _check_dp_equals_ilp(problem)


# -- brute == ilp on tiny graphs, both spaces -------------------------------------------------


def _check_brute_equals_ilp(problem: Problem, space: str) -> None:
    try:
        brute = BruteSolver(space=space, max_plans=BRUTE_MAX).solve(problem)
    except SolverError as exc:
        assert "max_plans" in str(exc)
        pytest.skip(f"space too big for brute: {exc}")
    ilp = IlpSolver(space=space).solve(problem)
    assert brute.termination == ilp.termination == "optimal"
    assert _close(brute.objective, ilp.objective), (brute.objective, ilp.objective)


@pytest.mark.parametrize("space", ["full", "pairs"])
@pytest.mark.parametrize("seed", range(8))
def test_brute_equals_ilp_on_tiny_graphs(seed, space):
    _check_brute_equals_ilp(_tiny_problem(seed), space)


@pytest.mark.slow
@pytest.mark.parametrize("space", ["full", "pairs"])
@pytest.mark.parametrize("seed", range(8, 100))
def test_brute_equals_ilp_on_more_tiny_graphs(seed, space):
    _check_brute_equals_ilp(_tiny_problem(seed), space)


def test_pairs_brute_equals_ilp_with_many_pairs():
    """A chain of convs has a pair per adjacent conv couple: 2^#pairs subsets, most of them overlapping."""
    graph = _graph(5, 9, "chain")
    problem = _random_problem(graph, 5, 3)
    assert len(candidate_pairs(problem)) >= 5
    for base in BASES:
        brute = BruteSolver(space="pairs", base=base).solve(problem)
        ilp = IlpSolver(space="pairs", base=base).solve(problem)
        assert _close(brute.objective, ilp.objective)


# -- ilp against independent plans ---------------------------------------------------------------


def _random_valid_plans(problem: Problem, n: int, seed: int) -> list[Plan]:
    rng = random.Random(seed)
    plans = []
    while len(plans) < n:
        plan = Plan({v: rng.choice(problem.strategies(v)) for v in problem.graph.order})
        try:
            plan.validate(problem)
        except iopopt.InvalidPlan:
            continue
        plans.append(plan)
    return plans


@pytest.mark.parametrize("seed", [0, 3])
def test_ilp_is_no_worse_than_random_plans(seed):
    problem = _random_problem(_graph(seed, 10, "dag"), seed, 3)
    ilp = IlpSolver().solve(problem)
    pairs_opt = IlpSolver(space="pairs").solve(problem)
    assert ilp.termination == pairs_opt.termination == "optimal"
    for plan in _random_valid_plans(problem, 200, seed):
        assert ilp.objective <= evaluate(problem, plan).latency_s * (1 + RTOL)
    # the pairs space is a subset of the full space and contains the base plan
    assert ilp.objective <= pairs_opt.objective * (1 + RTOL)
    assert pairs_opt.objective <= evaluate(problem, base_plan(problem, "coedge")).latency_s * (1 + RTOL)


def test_pairs_plan_is_in_the_pairs_space():
    problem = _random_problem(_graph(2, 8, "dag"), 2, 4)
    for base in BASES:
        result = IlpSolver(space="pairs", base=base).solve(problem)
        start = base_plan(problem, base)
        changed = {v for v in problem.graph.order if result.plan[v] != start[v]}
        # only an applied pair puts its second operator in ic (no base plan uses ic)
        chosen = [p for p in candidate_pairs(problem) if result.plan[p.b] == "ic"]
        assert not conflicts(chosen)
        assert apply_pairs(start, chosen) == result.plan
        assert changed <= {v for p in chosen for v in p.nodes}


# -- the pairs decision space ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["resnet18", "inception_mini"])
def test_candidate_pairs_follow_the_rules(name):
    graph = _zoo_graph(name)
    problem = Problem(graph, Cluster.homogeneous(3, 1e9), SharedNetwork(1e8))
    pairs = candidate_pairs(problem)
    assert pairs
    for p in pairs:
        assert graph[p.a].kind in ("conv", "linear") and graph[p.b].kind in ("conv", "linear")
        path = p.nodes
        for u, v in zip(path, path[1:]):
            assert graph.consumers(u) == [(v, 0)], f"{u} must feed only {v}"
        assert all(graph[v].is_channelwise for v in p.between)
    for base in BASES:
        plan = base_plan(problem, base)
        plan.validate(problem)
        apply_pairs(plan, pairs[::2] if not conflicts(pairs[::2]) else pairs[:1]).validate(problem)
    clash = conflicts(pairs)
    if clash:
        with pytest.raises(ValueError, match="share a node"):
            apply_pairs(base_plan(problem, "coedge"), list(clash[0]))
    with pytest.raises(ValueError, match="valid: \\['coedge', 'oc'\\]"):
        base_plan(problem, "rows")


# -- memory ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("space", ["full", "pairs"])
@pytest.mark.parametrize("seed", range(6))
def test_memory_capacities_are_respected(seed, space):
    free = _tiny_problem(seed)
    unconstrained = IlpSolver(space=space).solve(free)
    peaks = [m.peak_bytes for m in evaluate(free, unconstrained.plan).per_device]
    rng = random.Random(seed)
    problem = _with_capacities(free, [max(1.0, p * rng.uniform(0.7, 1.0)) for p in peaks])
    ilp = IlpSolver(space=space).solve(problem)
    assert ilp.termination in ("optimal", "infeasible")
    if ilp.termination == "optimal":
        assert evaluate(problem, ilp.plan).fits_memory
        assert ilp.objective >= unconstrained.objective * (1 - RTOL)
    else:
        assert ilp.plan is None and ilp.extra["binding_devices"]
    brute = BruteSolver(space=space, max_plans=BRUTE_MAX).solve(problem)
    assert brute.termination == ilp.termination
    if brute.termination == "optimal":
        assert _close(brute.objective, ilp.objective)


def test_brute_memory_figures_match_the_cost_model():
    """brute computes all plans' peaks at once with numpy; they must equal ``evaluate``'s, plan by plan."""
    import numpy as np

    from iopopt.solvers.brute import _peaks

    for seed in (1, 3, 4):
        problem = _tiny_problem(seed)
        strategies = [problem.strategies(v) for v in problem.graph.order]
        plans = _random_valid_plans(problem, 30, seed)
        choices = np.array([[strategies[i].index(p[v]) for i, v in enumerate(problem.graph.order)] for p in plans])
        peaks = _peaks(problem, strategies, choices)
        for plan, row in zip(plans, peaks):
            assert list(row) == [m.peak_bytes for m in evaluate(problem, plan).per_device]


def test_tiny_capacity_is_infeasible_and_names_the_device():
    free = _tiny_problem(1)
    caps = [math.inf] * free.k
    caps[0] = 64.0  # bytes: the host cannot even hold the input image
    problem = _with_capacities(free, caps)
    for solver in (IlpSolver(), IlpSolver(space="pairs"), BruteSolver(max_plans=BRUTE_MAX)):
        result = solver.solve(problem)
        assert result.termination == "infeasible" and result.plan is None
        assert result.extra["binding_devices"] == ["d0"]
        assert "d0" in result.extra["reason"]


def test_jointly_infeasible_capacities_are_proven_by_the_backend():
    """Capacities each device could meet alone but not all at once: the backend must prove it."""
    for seed in range(40):
        free = _tiny_problem(seed)
        peaks = [m.peak_bytes for m in evaluate(free, IlpSolver().solve(free).plan).per_device]
        problem = _with_capacities(free, [0.8 * p if p else math.inf for p in peaks])
        result = IlpSolver(memory="on").solve(problem)
        if result.termination == "infeasible" and "solve_s" in result.extra:
            assert result.extra["binding_devices"]
            assert BruteSolver(max_plans=BRUTE_MAX).solve(problem).termination == "infeasible"
            return
    pytest.skip("no instance needed the backend to prove infeasibility")


def test_memory_off_and_auto():
    free = _tiny_problem(2)
    assert IlpSolver().solve(free).extra["memory_rows"] == 0  # infinite capacities: no rows
    plan = IlpSolver().solve(free).plan
    peaks = [m.peak_bytes for m in evaluate(free, plan).per_device]
    tight = _with_capacities(free, [p - 1 if p > 1 else math.inf for p in peaks])
    off = IlpSolver(memory="off").solve(tight)
    assert off.extra["memory_rows"] == 0 and off.memory_fits is False
    assert off.termination == "optimal"  # optimal for its model (no memory rows); memory_fits says the rest
    on = IlpSolver(memory="on").solve(tight)
    auto = IlpSolver(memory="auto").solve(tight)
    assert 0 < auto.extra["memory_rows"] <= on.extra["memory_rows"]
    assert on.termination == auto.termination
    if on.plan is not None:
        assert _close(on.objective, auto.objective) and evaluate(tight, on.plan).fits_memory


# -- time limit and backends -------------------------------------------------------------------


def test_time_limited_solve_keeps_incumbent_and_bound():
    graph = _graph(0, 300, "dag", channels=(4, 32), hw=(16, 16))
    flops = [1e7, 2e7, 1.1e7, 3e7, 1.2e7, 2.1e7]  # no two devices alike: no twin reduction makes it easy
    devices = tuple(Device(f"d{i}", f) for i, f in enumerate(flops))
    problem = Problem(graph, Cluster(devices), SwitchedNetwork(1e8, 1e-5))
    # each backend needs about a second to prove this one; within 0.1 s it holds the warm start (the all-host
    # plan) or better, and a bound (its own, or every term at its least when it stopped before having one)
    for backend in ("HiGHS", "PULP_CBC_CMD"):
        result = IlpSolver(time_limit_s=0.1, backend=backend).solve(problem)
        assert result.termination == "time_limit", result.extra
        assert result.plan is not None and result.extra["stopped_by_limit"]
        assert _close(result.objective, evaluate(problem, result.plan).latency_s)
        assert result.objective <= evaluate(problem, problem.plan({})).latency_s * (1 + RTOL)  # the warm start
        assert result.bound is not None and result.bound <= result.objective
        assert result.gap is not None and result.gap > 0


def test_a_limit_hit_before_the_backend_took_up_the_first_incumbent_returns_that_plan(monkeypatch):
    # what CBC does with a short limit on a loaded machine: it stops while reading the model, with no solution
    from iopopt.solvers.ilp import solver as ilp_solver

    class NoSolution:
        def actualSolve(self, lp, **kw):
            lp.status, lp.sol_status = 0, 0  # not solved, no solution found
            return lp.status

    monkeypatch.setattr(ilp_solver, "make_backend", lambda *a, **kw: NoSolution())
    monkeypatch.setattr(ilp_solver, "limit_and_bound", lambda *a: (True, None))
    problem = _random_problem(_graph(1, 8, "dag"), 1, 3)
    got = IlpSolver(time_limit_s=0.1).solve(problem)
    host = problem.plan({})
    assert got.termination == "time_limit" and got.plan == host
    assert _close(got.objective, evaluate(problem, host).latency_s) and got.bound <= got.objective
    pairs = IlpSolver(time_limit_s=0.1, space="pairs").solve(problem)
    assert pairs.plan == base_plan(problem, "coedge")
    # the first incumbent does not fit the host's memory: no plan
    host_bytes = evaluate(problem, host).peak_memory_bytes
    devices = tuple(dataclasses.replace(d, memory_bytes=host_bytes / 2) if i == problem.cluster.host else d
                    for i, d in enumerate(problem.cluster.devices))
    small = Problem(problem.graph, dataclasses.replace(problem.cluster, devices=devices), problem.network)
    got = IlpSolver(time_limit_s=0.1).solve(small)
    assert got.termination == "time_limit" and got.plan is None


def test_highs_backend_agrees_with_cbc():
    pulp = pytest.importorskip("pulp")
    if not pulp.HiGHS().available():
        pytest.skip("HiGHS backend not available (install highspy)")
    for seed in (0, 1, 3):
        problem = _random_problem(_graph(seed, 8, "dag"), seed, 3)
        cbc = IlpSolver(backend="PULP_CBC_CMD").solve(problem)
        highs = IlpSolver(backend="HiGHS").solve(problem)
        assert cbc.termination == "optimal" and cbc.extra["backend"] == "PULP_CBC_CMD"
        assert highs.termination == "optimal"
        assert _close(cbc.objective, highs.objective)
        assert highs.bound <= highs.objective


def test_highs_pairs_proof_that_its_own_plan_contradicts_is_solved_again():
    # A gap-study instance on which HiGHS 1.16's presolved solve returned a plan 3.5 % above the optimum it proved
    # (its bound); CBC, the independent oracle, finds that optimum
    import yaml

    from iopopt.app.configs import build_cluster
    from iopopt.solvers import CONF_DIR

    module, shape = random_cnn(1000, n_layers=17, kind="chain", channels=(8, 64), input_hw=(64, 64))
    cluster = build_cluster(yaml.safe_load((CONF_DIR / "cluster" / "hetero_4.yaml").read_text()))
    problem = Problem(iopopt.trace(module, shape), cluster, SwitchedNetwork(1.25e8, 1e-4))
    cbc = IlpSolver(space="pairs", backend="PULP_CBC_CMD").solve(problem)
    highs = IlpSolver(space="pairs").solve(problem)
    assert cbc.termination == highs.termination == "optimal", highs.extra
    assert _close(highs.objective, cbc.objective) and highs.bound <= highs.objective * (1 + 1e-9)


def test_a_contradicted_highs_proof_is_solved_again_without_presolve(monkeypatch):
    from iopopt.solvers.ilp import solver as ilp_solver

    problem = _random_problem(_graph(1, 8, "dag"), 1, 3)
    calls = []
    real_bound, real_backend = ilp_solver.limit_and_bound, ilp_solver.make_backend

    def backend(pulp, s, tmp, warm_start=False, presolve=True):
        calls.append(presolve)
        return real_backend(pulp, s, tmp, warm_start=warm_start, presolve=presolve)

    def bound_below_on_the_first_solve(*args):
        stopped, bound = real_bound(*args)
        return stopped, (bound * 0.9 if len(calls) == 1 else bound)

    monkeypatch.setattr(ilp_solver, "make_backend", backend)
    monkeypatch.setattr(ilp_solver, "limit_and_bound", bound_below_on_the_first_solve)
    got = IlpSolver().solve(problem)
    assert calls == [True, False]
    assert got.termination == "optimal" and "solved again without presolve" in got.extra["note"]
    first = got.extra["first_solve"]
    assert first["bound"] < first["objective"] and first["solve_s"] is not None
    cbc = IlpSolver(backend="PULP_CBC_CMD").solve(problem)
    assert _close(got.objective, cbc.objective)
    # contradicted twice: the re-solve's plan is kept, not called optimal, and the note says both
    calls.clear()
    monkeypatch.setattr(ilp_solver, "limit_and_bound", lambda *a: (False, real_bound(*a)[1] * 0.9))
    got = IlpSolver().solve(problem)
    assert calls == [True, False] and got.termination == "feasible"
    assert "solved again without presolve" in got.extra["note"] and "exceeds its bound" in got.extra["note"]
    # a re-solve that fails leaves the first plan, and the note says so
    calls.clear()
    monkeypatch.setattr(ilp_solver, "limit_and_bound", bound_below_on_the_first_solve)

    def failing(pulp, s, tmp, warm_start=False, presolve=True):
        calls.append(presolve)
        if not presolve:
            raise SolverError("ilp: backend HiGHS failed: simulated")
        return real_backend(pulp, s, tmp, warm_start=warm_start, presolve=presolve)

    monkeypatch.setattr(ilp_solver, "make_backend", failing)
    got = IlpSolver().solve(problem)
    assert calls == [True, False] and got.termination == "feasible" and got.plan is not None
    assert "that failed: ilp: backend HiGHS failed: simulated" in got.extra["note"]
    monkeypatch.setattr(ilp_solver, "make_backend", backend)
    # CBC is never solved again: its contradicted proof is reported as a feasible plan
    calls.clear()
    monkeypatch.setattr(ilp_solver, "limit_and_bound", lambda *a: (False, real_bound(*a)[1] * 0.9))
    got = IlpSolver(backend="PULP_CBC_CMD").solve(problem)
    assert calls == [True] and got.termination == "feasible" and "exceeds its bound" in got.extra["note"]


# -- settings and refusals ------------------------------------------------------------------


def test_unknown_settings_name_value_and_options():
    problem = _tiny_problem(0)
    with pytest.raises(SolverError, match=r"backend 'NOPE' is unknown to PuLP; available: \[.*PULP_CBC_CMD"):
        IlpSolver(backend="NOPE").solve(problem)
    with pytest.raises(SolverError, match=r"space 'rows'; valid: \['full', 'pairs'\]"):
        IlpSolver(space="rows").solve(problem)
    with pytest.raises(SolverError, match=r"memory mode 'maybe'; valid: \['auto', 'on', 'off'\]"):
        IlpSolver(memory="maybe").solve(problem)
    with pytest.raises(SolverError, match=r"base plan 'rows'; valid: \['coedge', 'oc'\]"):
        IlpSolver(space="pairs", base="rows").solve(problem)
    with pytest.raises(SolverError, match=r"space 'rows'; valid: \['full', 'pairs'\]"):
        BruteSolver(space="rows").solve(problem)


def test_brute_refuses_big_spaces():
    problem = _chain_problem(7)
    count = math.prod(len(problem.strategies(v)) for v in problem.graph.order)
    shown = re.escape(f"{count:.3g}" if count >= 10**7 else str(count))  # large counts in scientific notation
    with pytest.raises(SolverError, match=rf"has {shown} plans .* max_plans=1000"):
        BruteSolver(max_plans=1000).solve(problem)


def test_dp_refuses_non_chains_naming_a_node():
    problem = _random_problem(_graph(2, 8, "dag"), 2, 2)
    assert not problem.graph.is_chain()
    with pytest.raises(SolverError, match=r"not a chain \(node '.+' has \d+ (inputs|consumers)\)"):
        DpSolver().solve(problem)


@pytest.mark.parametrize("name", ["ilp", "ilp_pairs", "dp", "brute"])
def test_configs_build_the_solvers(name):
    solver = make_solver(name)
    assert solver.name == name.split("_")[0] and solver.exact
    assert type(solver)(**solver.get_params()).get_params() == solver.get_params()


def test_import_is_light():
    """Importing the solver modules does not load the MILP backends (they load on first solve)."""
    code = (
        "import sys, iopopt.solvers.ilp, iopopt.solvers.exact; "
        "assert 'pulp' not in sys.modules and 'highspy' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
