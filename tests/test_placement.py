"""Placement (``dev<j>``: an op whole on one device) and the ``offload`` baseline.

Oracles: the unsplit torch forward (``verify`` in float64, byte-exact
messages, weights and activation peaks), byte counts from the tensor shapes,
the cost model for every single-device plan, and brute force for the ILP.
"""

from __future__ import annotations

import functools
import math
import random
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import iopopt
from iopopt import Cluster, Device, Problem, evaluate, zoo
from iopopt.frontend.synthetic import random_cnn
from iopopt.model.layouts import placement, placement_name, strategies_for
from iopopt.network import SharedNetwork, SwitchedNetwork
from iopopt.solvers import make_solver
from iopopt.solvers.baselines import offload_plans
from iopopt.solvers.exact import BruteSolver, DpSolver
from iopopt.solvers.ilp import IlpSolver

torch.set_num_threads(1)
CONF = Path(iopopt.__file__).resolve().parent / "conf"


@functools.cache
def _zoo(name: str):
    if name == "small_chain":  # small enough for brute force on 2 devices with placements
        module, shape = random_cnn(7, 2, kind="chain", channels=(2, 8), input_hw=(8, 8))
    else:
        module, shape = zoo.build(name)
    return module, iopopt.trace(module, shape, name=name)


def _problem(name: str, flops, network, host: int = 0, caps=None) -> Problem:
    caps = caps or [math.inf] * len(flops)
    devices = tuple(Device(f"d{i}", f, c) for i, (f, c) in enumerate(zip(flops, caps)))
    return Problem(_zoo(name)[1], Cluster(devices, host), network)


def test_placement_names():
    assert placement_name(3) == "dev3" and placement("dev3") == 3 and placement("dev0") == 0
    assert all(placement(s) is None for s in ("dev", "devx", "dev01", "host", "rows", "xdev1"))


def test_every_op_may_run_on_any_device_but_input_and_output():
    problem = _problem("tiny_residual", [1e9, 2e9, 3e9], SharedNetwork(1e7), host=1)
    for op in problem.graph:
        got = problem.strategies(op.name)
        if op.kind in ("input", "output"):
            assert got == ("host",)
        else:
            assert got[: len(strategies_for(op))] == strategies_for(op)  # the splits first, as before
            assert got[len(strategies_for(op)):] == ("dev0", "dev2")  # the host's own is "host"
    one = _problem("tiny_residual", [1e9], SharedNetwork(1e7))
    assert all(placement(s) is None for n in one.graph.order for s in one.strategies(n))
    with pytest.raises(iopopt.model.InvalidPlan, match="dev3"):
        problem.plan({"conv1": "dev3"})


def test_a_placed_model_sends_its_input_there_and_its_output_back():
    module, graph = _zoo("tiny_chain")
    problem = _problem("tiny_chain", [1e9, 5e9, 2e9], SwitchedNetwork(1e7, 1e-4))
    plan = problem.plan({}, default="dev1")
    report = evaluate(problem, plan)
    nb = graph.dtype_bytes
    inp, out = graph[graph.order[0]], graph[graph.order[-1]]
    assert report.messages == 2
    assert report.bytes_sent == (math.prod(inp.out_shape) + math.prod(out.in_shapes[0])) * nb
    weights = [m.weights_bytes for m in report.per_device]
    assert weights[0] == weights[2] == 0 and weights[1] == sum(op.weight_elems for op in graph) * nb
    check = iopopt.verify(problem, plan, module)
    assert check.passed and check.messages_match and check.weights_match and check.memory_match


@pytest.mark.parametrize("seed", range(6))
def test_plans_mixing_placements_and_splits_verify(seed):
    """Random plans over every strategy, placements on every device included, host not device 0."""
    name = ("tiny_residual", "tiny_chain", "inception_mini")[seed % 3]
    module, graph = _zoo(name)
    problem = _problem(name, [1e9, 2e9, 3e9], SharedNetwork(1e7, 1e-4), host=seed % 3)
    rng = random.Random(seed)
    plan = iopopt.plans.draw_plan(problem, rng)
    while not any(placement(s) is not None for s in plan.values()):
        plan = iopopt.plans.draw_plan(problem, rng)
    check = iopopt.verify(problem, plan, module)
    assert check.passed, check.diff
    assert check.messages_match and check.weights_match and check.memory_match


def test_offload_is_the_fastest_single_device():
    problem = _problem("tiny_chain", [1e8, 3e9, 1e9], SharedNetwork(1e8, 1e-4))
    got = make_solver("offload").solve(problem)
    each = {n: evaluate(problem, p).latency_s for n, p in offload_plans(problem).items()}
    assert set(each) == {"d0", "d1", "d2"}
    assert got.plan == offload_plans(problem)["d1"] and got.extra["device"] == "d1"
    assert math.isclose(got.objective, min(each.values()))
    assert got.objective < make_solver("single").solve(problem).objective
    ilp = IlpSolver().solve(problem)
    assert ilp.termination == "optimal" and ilp.objective <= got.objective * (1 + 1e-9)


def test_offload_prefers_a_device_the_model_fits():
    fast_small = _problem("tiny_chain", [1e8, 3e9, 1e9], SharedNetwork(1e8, 1e-4))
    need = [m.peak_bytes for m in evaluate(fast_small, offload_plans(fast_small)["d1"]).per_device][1]
    problem = _problem("tiny_chain", [1e8, 3e9, 1e9], SharedNetwork(1e8, 1e-4), caps=[math.inf, need - 1, math.inf])
    got = make_solver("offload").solve(problem)
    assert got.extra["device"] == "d2" and got.memory_fits


def test_a_model_no_device_holds_is_split_into_segments():
    """Capacities at the least possible peak: no device holds the model alone, the ILP still finds the optimum."""
    flops = [1e8, 1e9]
    free = _problem("small_chain", flops, SharedNetwork(1e6, 1e-3))
    least = BruteSolver(max_plans=10**6, objective="peak_memory").solve(free).objective
    problem = _problem("small_chain", flops, SharedNetwork(1e6, 1e-3), caps=[least, least])
    assert not any(evaluate(problem, p).fits_memory for p in offload_plans(problem).values())
    assert not make_solver("offload").solve(problem).memory_fits
    ilp = IlpSolver().solve(problem)
    brute = BruteSolver(max_plans=10**6).solve(problem)
    assert ilp.termination == brute.termination == "optimal"
    assert math.isclose(ilp.objective, brute.objective, rel_tol=1e-9)
    assert evaluate(problem, ilp.plan).fits_memory
    assert iopopt.verify(problem, ilp.plan, _zoo("small_chain")[0]).passed


def test_dp_and_brute_take_placements():
    """A fast helper on a slow link: the optimum places work off the host, and dp, brute and ilp agree."""
    problem = _problem("small_chain", [1e7, 1e9], SharedNetwork(1e8, 1e-5))
    results = [s.solve(problem) for s in (DpSolver(), BruteSolver(max_plans=10**6), IlpSolver())]
    assert all(r.termination == "optimal" for r in results)
    assert math.isclose(results[0].objective, results[1].objective, rel_tol=1e-9)
    assert math.isclose(results[2].objective, results[1].objective, rel_tol=1e-9)
    assert any(placement(s) == 1 for s in results[2].plan.values())


def _preset(group: str, name: str):
    from iopopt.app.configs import build_cluster
    from iopopt.app.targets import build_network

    cfg = OmegaConf.to_container(OmegaConf.load(CONF / group / f"{name}.yaml"))
    return build_cluster(cfg) if group == "cluster" else build_network(cfg)


def test_presets_a_weak_host_and_boards_too_small_for_vgg16():
    weak = _preset("cluster", "camera_rpi5_x2")
    assert weak.k == 3 and weak.host == 0
    assert all(d.flops_per_s > 4 * weak.devices[0].flops_per_s for d in weak.devices[1:])
    small = _preset("cluster", "rpi_zero2_x4")
    vgg_weights = 138_357_544 * 4  # fp32 bytes; parameter count from torchvision's VGG16_Weights.meta
    assert all(d.memory_bytes < vgg_weights for d in small.devices)
    assert sum(d.memory_bytes for d in small.devices) > vgg_weights


@pytest.mark.slow
@pytest.mark.parametrize("name", ["alexnet", "resnet18"])
def test_weak_host_over_wifi_gains_twice_over_single(name):
    problem = Problem(_zoo(name)[1], _preset("cluster", "camera_rpi5_x2"), _preset("network", "wifi_50mbps"))
    ilp = IlpSolver().solve(problem)
    single = make_solver("single").solve(problem)
    assert ilp.termination == "optimal"
    assert single.objective >= 2 * ilp.objective, (single.objective, ilp.objective)
    assert ilp.objective <= make_solver("offload").solve(problem).objective * (1 + 1e-9)
