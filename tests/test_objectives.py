"""Objectives and budgets: ilp against brute force on random tiny problems, monotone deadlines, bad settings.

The budgets of the cross-check are drawn from plans neither solver chose
(random valid plans), so that some are infeasible and some bind.
"""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

import iopopt
from iopopt.app import configs, targets
from iopopt.cost import energy, latency
from iopopt.frontend.synthetic import random_cnn
from iopopt.model.cluster import Cluster, Device
from iopopt.network import SharedNetwork, SwitchedNetwork
from iopopt.solvers import SolverError, make_solver
from iopopt.solvers.exact import BruteSolver, DpSolver
from iopopt.solvers.ilp import IlpSolver
from iopopt.solvers.testing import CASE_IDS, SolverContract, space_size
from iopopt.space.plans import build_plan

REPO = Path(__file__).resolve().parent.parent


def tiny_problem(seed: int):
    """A random tiny CNN on 2-3 heterogeneous devices with power figures, on a shared or switched network."""
    rng = random.Random(seed)
    module, shape = random_cnn(seed, n_layers=2, kind=rng.choice(["chain", "dag"]), channels=(2, 6), input_hw=(8, 8))
    graph = iopopt.trace(module, shape, name=f"tiny{seed}")
    devices = []
    for d in range(rng.choice([2, 2, 3])):
        idle = rng.uniform(0.5, 2.0)
        devices.append(Device(f"d{d}", rng.uniform(5e6, 3e7), op_overhead_s=rng.uniform(0, 2e-4),
                              active_power_w=idle + rng.uniform(0.5, 4), idle_power_w=idle,
                              tx_power_w=idle + rng.uniform(0, 2), rx_power_w=idle + rng.uniform(0, 1)))
    net = (SharedNetwork(rng.uniform(5e6, 1e8), 1e-5) if rng.random() < 0.5
           else SwitchedNetwork(rng.uniform(5e6, 1e8), 1e-5))
    return iopopt.Problem(graph, Cluster(tuple(devices)), net, name=f"tiny{seed}")


def _settings(problem, rng: random.Random) -> dict:
    """An objective and a random subset of budgets, each near a random plan's figure (some cannot be met)."""
    plan = build_plan(problem, "random", seed=rng.randrange(1000))
    report = iopopt.evaluate(problem, plan)
    out = {"objective": rng.choice(["latency", "energy", "peak_memory"])}
    if rng.random() < 0.6:
        out["deadline_s"] = report.latency_s * rng.uniform(0.5, 1.2)
    if rng.random() < 0.6:
        out["energy_budget_j"] = report.energy_j * rng.uniform(0.5, 1.2)
    if rng.random() < 0.4:
        out["memory_budget_bytes"] = report.peak_memory_bytes * rng.uniform(0.6, 1.2)
    return out


def test_ilp_agrees_with_brute_force_on_tiny_problems_with_budgets():
    rng = random.Random(7)
    seen = {"optimal": 0, "infeasible": 0}
    checked = 0
    for seed in range(40):
        problem = tiny_problem(seed)
        if space_size(problem) > 20000:
            continue
        for _ in range(3):
            settings = _settings(problem, rng)
            want = BruteSolver(**settings).solve(problem)
            got = IlpSolver(**settings).solve(problem)
            assert got.termination == want.termination, (seed, settings, got.extra, want.extra)
            seen[str(got.termination)] += 1
            checked += 1
            if got.termination == "infeasible":
                assert set(got.extra["binding"]) <= {"deadline_s", "energy_budget_j", "memory_budget_bytes", "memory"}
                continue
            assert math.isclose(got.objective, want.objective, rel_tol=1e-9), (seed, settings)
            assert got.objective_name == want.objective_name == settings["objective"]
            report = got.report
            assert report.latency_s <= settings.get("deadline_s", math.inf) * (1 + 1e-7)
            assert report.energy_j <= settings.get("energy_budget_j", math.inf) * (1 + 1e-7)
            assert report.peak_memory_bytes <= settings.get("memory_budget_bytes", math.inf)
    assert checked >= 40 and seen["optimal"] >= 10 and seen["infeasible"] >= 5, seen


def test_dp_agrees_with_brute_force_on_energy():
    for seed in range(30):
        problem = tiny_problem(seed)
        if not problem.graph.is_chain() or space_size(problem) > 20000:
            continue
        got = DpSolver(objective="energy").solve(problem)
        want = BruteSolver(objective="energy").solve(problem)
        assert math.isclose(got.objective, want.objective, rel_tol=1e-9)
        assert got.objective_name == "energy" and got.objective == got.report.energy_j


def _preset_problem(model: str, cluster: str, network: str):
    from omegaconf import OmegaConf

    module, shape = iopopt.zoo.build(model)
    conf = REPO / "iopopt" / "conf"
    c = configs.build_cluster(OmegaConf.load(conf / "cluster" / f"{cluster}.yaml"))
    n = targets.build_network(OmegaConf.load(conf / "network" / f"{network}.yaml"))
    return iopopt.Problem(iopopt.trace(module, shape), c, n, name=f"{model}|{cluster}|{network}")


def test_loosening_the_deadline_never_raises_the_optimal_energy():
    problem = _preset_problem("alexnet", "rpi4_x4", "wifi_100mbps")
    fastest = IlpSolver().solve(problem)
    frugal = IlpSolver(objective="energy").solve(problem)
    lo, hi = fastest.objective, frugal.report.latency_s
    assert hi > lo  # the two optima differ: there is a trade-off to sweep
    energies = []
    for deadline in [lo * (1 - 0.05)] + [lo + (hi - lo) * f for f in (0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5)]:
        r = IlpSolver(objective="energy", deadline_s=deadline).solve(problem)
        if deadline < lo * (1 - 1e-9):
            assert r.termination == "infeasible" and r.extra["binding"] == ["deadline_s"]
            continue
        assert r.termination == "optimal"
        assert r.report.latency_s <= deadline * (1 + 1e-7)  # the plan meets its deadline
        energies.append(r.objective)
    assert all(b <= a * (1 + 1e-9) for a, b in zip(energies, energies[1:])), energies
    assert math.isclose(energies[-1], frugal.objective, rel_tol=1e-9)
    assert energies[0] >= frugal.objective and energies[0] <= fastest.report.energy_j * (1 + 1e-9)


PAPER = [(m, c, n) for m in ("alexnet", "vgg16", "resnet18") for c in ("rpi4_x2", "rpi4_x3", "rpi4_x4")
         for n in ("ethernet_1g", "wifi_100mbps")]
OTHERS = ("single", "coedge", "oc", "best_uniform", "random", "greedy_iop", "ilp", "ilp_pairs")


def _energy_is_least(model, cluster, network):
    problem = _preset_problem(model, cluster, network)
    best = make_solver("ilp", objective="energy").solve(problem)
    assert best.termination == "optimal" and best.objective_name == "energy"
    assert math.isclose(best.objective, best.report.energy_j, rel_tol=1e-12)
    for name in OTHERS:
        other = make_solver(name).solve(problem)
        assert other.report.energy_j is not None
        assert best.objective <= other.report.energy_j * (1 + 1e-9), (name, best.objective, other.report.energy_j)


@pytest.mark.parametrize("network", ["ethernet_1g", "wifi_100mbps"])
def test_ilp_energy_is_least_on_a_paper_instance(network):
    _energy_is_least("alexnet", "rpi4_x2", network)


@pytest.mark.slow
@pytest.mark.parametrize("model,cluster,network", PAPER, ids=["-".join(p) for p in PAPER])
def test_ilp_energy_is_least_on_every_paper_instance(model, cluster, network):
    _energy_is_least(model, cluster, network)


# -- budgets the model can tell at once, and bad settings -----------------------------------


def test_a_deadline_below_the_lower_bound_is_infeasible_without_a_solve():
    problem = tiny_problem(3)
    deadline = problem.lower_bound_s() / 2
    r = IlpSolver(deadline_s=deadline).solve(problem)
    assert r.termination == "infeasible" and r.plan is None
    assert r.extra["binding"] == ["deadline_s"] and "lower bound" in r.extra["reason"]
    assert f"deadline_s={deadline:.6g}" in r.extra["reason"]
    assert "solve_s" not in r.extra  # the backend never ran
    assert BruteSolver(deadline_s=deadline).solve(problem).termination == "infeasible"


def test_an_energy_budget_below_every_plan_names_it():
    problem = tiny_problem(3)
    least = BruteSolver(objective="energy").solve(problem).objective
    for solver in (IlpSolver(energy_budget_j=least * 0.99), BruteSolver(energy_budget_j=least * 0.99)):
        r = solver.solve(problem)
        assert r.termination == "infeasible" and r.extra["binding"] == ["energy_budget_j"], r.extra


@pytest.mark.parametrize("seed", [0, 4, 8])
def test_budgets_that_only_bind_together_are_named_together(seed):
    problem = tiny_problem(seed)
    fast = BruteSolver().solve(problem)
    frugal = BruteSolver(objective="energy").solve(problem)
    assert frugal.objective < fast.report.energy_j * (1 - 1e-6)  # a trade-off: the fastest plan is not the frugal one
    settings = {"deadline_s": fast.objective * (1 + 1e-9), "energy_budget_j": frugal.objective * (1 + 1e-9)}
    if BruteSolver(**settings).solve(problem).termination != "infeasible":
        pytest.skip("a plan is both fastest and, within 1e-9, least energy")
    r = IlpSolver(**settings).solve(problem)
    assert r.termination == "infeasible" and set(r.extra["binding"]) == {"deadline_s", "energy_budget_j"}


@pytest.mark.parametrize("name", ["ilp", "ilp_pairs", "brute", "dp"])
def test_a_misspelt_objective_names_the_valid_ones(name):
    with pytest.raises(SolverError) as info:
        make_solver(name, objective="enrgy").check_settings()
    msg = str(info.value)
    assert "\n" not in msg and "'enrgy'" in msg and "latency" in msg and "energy" in msg


def test_dp_refuses_budgets_and_energy_needs_power():
    with pytest.raises(SolverError, match="budgets are not supported.*use ilp or brute"):
        DpSolver(deadline_s=0.1).check_settings()
    bare = iopopt.Problem(tiny_problem(3).graph, Cluster.homogeneous(2, 1e7), SharedNetwork(1e7))
    for solver in (IlpSolver(objective="energy"), BruteSolver(objective="energy"), DpSolver(objective="energy")):
        if solver.name == "dp" and not bare.graph.is_chain():
            continue
        with pytest.raises(SolverError, match="power figures"):
            solver.solve(bare)


def test_greedy_and_baselines_report_energy_and_latency_as_their_objective():
    problem = tiny_problem(3)
    for name in ("greedy_iop", "single", "coedge", "oc"):
        r = make_solver(name).solve(problem)
        assert r.objective_name == "latency" and r.objective == latency(problem, r.plan)
        assert math.isclose(r.report.energy_j, energy(problem, r.plan), rel_tol=1e-12)


def _cli(tmp_path, *args):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run([sys.executable, "-m", "iopopt", *args, f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize("args,needles", [
    (["solver=ilp", "solver.objective=enrgy"], ["unknown objective 'enrgy'", "latency, energy, peak_memory"]),
    (["cluster.devices.1.rx_power_w=-0.5"], ["cluster.devices[1].rx_power_w", ">= 0", "-0.5"]),
    (["solver=dp", "solver.deadline_s=0.2"], ["budgets are not supported", "use ilp or brute"]),
])
def test_bad_settings_exit_2_with_one_line(tmp_path, args, needles):
    proc = _cli(tmp_path, "model=tiny_chain", *args)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("iopopt: configuration error:")
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


# -- the solver contract, with energy as the objective ---------------------------------------


class TestIlpEnergy(SolverContract):
    @pytest.fixture
    def solver(self):
        return IlpSolver(objective="energy")


class TestIlpPeakMemory(SolverContract):
    # dag-k4-switched takes CBC about 2 min to prove in the space with placements (4 devices, symmetric
    # min-max): it runs in the slow class below
    contract_ids = CASE_IDS[:-1]

    @pytest.fixture
    def solver(self):
        return IlpSolver(objective="peak_memory")


@pytest.mark.slow
class TestIlpPeakMemoryFourDevices(SolverContract):
    contract_ids = CASE_IDS[-1:]

    @pytest.fixture
    def solver(self):
        return IlpSolver(objective="peak_memory")


class TestBruteEnergy(SolverContract):
    contract_ids = ("chain7-k2-shared", "dag7-k3-switched", "dag10-k2-memory")

    @pytest.fixture
    def solver(self):
        return BruteSolver(objective="energy")


class TestDpEnergy(SolverContract):
    contract_ids = ("chain7-k2-shared", "chain-k3-shared")

    @pytest.fixture
    def solver(self):
        return DpSolver(objective="energy")
