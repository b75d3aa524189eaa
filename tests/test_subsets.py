"""Device subsets: every split also on the m fastest devices only (``oc@2``), with ``Cluster(subsets=True)``.

Oracles: the unsplit torch forward (``verify``: float64, byte-exact messages,
weights and activation peaks), the devices' speeds for which devices a subset
uses, brute force and DP for the ILP, and the optimum on k devices for the one
on k+1 (never slower: every plan on the first k is a plan on k+1 when the added
device is no faster than the others).
"""

from __future__ import annotations

import functools
import importlib.util
import math
import random
from pathlib import Path

import pytest
import torch

import iopopt
from iopopt import Cluster, Device, Problem
from iopopt.frontend.synthetic import random_cnn
from iopopt.model.layouts import base_strategy, subset
from iopopt.model.problem import InvalidPlan
from iopopt.network import SharedNetwork, SwitchedNetwork
from iopopt.solvers.exact import BruteSolver, DpSolver
from iopopt.solvers.ilp import IlpSolver

torch.set_num_threads(1)
SPEEDS = (1e8, 3e8, 2e8, 3e8)  # the two fastest: devices 1 and 3 (a tie, the lower index first)


@functools.cache
def _model(name: str, seed: int = 0, layers: int = 2, kind: str = "chain"):
    if name == "synthetic":
        module, shape = random_cnn(seed, layers, kind=kind, channels=(2, 8), input_hw=(8, 8))
    else:
        module, shape = iopopt.zoo.build(name)
    return module, iopopt.trace(module, shape, name=f"{name}{seed}")


def _problem(graph, speeds=SPEEDS, network=None, host: int = 0, subsets: bool = True) -> Problem:
    devices = tuple(Device(f"d{i}", f) for i, f in enumerate(speeds))
    return Problem(graph, Cluster(devices, host, subsets=subsets), network or SharedNetwork(1e7, 1e-4))


def test_subset_names():
    assert subset("oc@2") == ("oc", 2) and subset("oc") == ("oc", None) and subset("dev2") == ("dev2", None)
    assert base_strategy("rows@3") == "rows" and subset("oc@0") == ("oc@0", None)


def test_strategies_on_subsets_only_when_asked():
    _, graph = _model("tiny_chain")
    conv = next(op.name for op in graph if op.kind == "conv")
    with_subsets = _problem(graph).strategies(conv)
    assert {"oc@2", "ic@3", "rows@2", "replicate@3"} <= set(with_subsets)
    assert not any("@1" in s or "@4" in s or s.startswith("host@") for s in with_subsets)
    assert not any("@" in s for s in _problem(graph, subsets=False).strategies(conv))
    with pytest.raises(InvalidPlan, match="oc@2"):
        _problem(graph, subsets=False).plan({conv: "oc@2"})


def test_a_subset_uses_the_fastest_devices():
    _, graph = _model("tiny_chain")
    problem = _problem(graph)
    conv = next(op.name for op in graph if op.kind == "conv")
    fastest = sorted(range(4), key=lambda d: (-SPEEDS[d], d))
    t = iopopt.compile.terms(problem)
    for m in (2, 3):
        for s in ("oc", "ic", "rows", "replicate"):
            term = t.node(conv, f"{s}@{m}")
            bias = {problem.host} if s == "ic" else set()  # the host adds the bias to its partial sum
            assert {d for d in range(4) if term.active[d]} == set(fastest[:m]) | bias, (s, m)
            assert {d for d in range(4) if term.weight_bytes[d]} == set(fastest[:m]) | bias, (s, m)


def test_partial_sums_pass_on_over_the_same_devices_only():
    _, graph = _model("synthetic", 19, 2, "dag")
    add = next((op for op in graph if op.kind == "add"), None)
    if add is None:
        pytest.skip("no add in this graph")
    problem = _problem(graph)
    producer = add.inputs[0]
    if "ic@2" not in problem.strategies(producer) or "partial@3" not in problem.strategies(add.name):
        pytest.skip("the add's input is no conv/linear")
    with pytest.raises(InvalidPlan, match="partial-sum input"):
        problem.plan({producer: "ic@2", add.name: "partial@3"})


@pytest.mark.parametrize("name,host", [("tiny_residual", 1), ("inception_mini", 2), ("tiny_chain", 0)])
def test_random_plans_on_subsets_verify(name, host):
    module, graph = _model(name)
    problem = _problem(graph, host=host)
    rng = random.Random(host)
    for _ in range(3):
        plan = iopopt.plans.draw_plan(problem, rng)
        check = iopopt.verify(problem, plan, module)
        assert check.passed, check.diff
        assert check.messages_match and check.weights_match and check.memory_match


@pytest.mark.parametrize("seed", range(4))
def test_brute_dp_and_ilp_agree_with_subsets(seed):
    _, graph = _model("synthetic", 100 + seed, 1 + seed % 2, "chain")
    rng = random.Random(seed)
    speeds = [rng.choice([1e7, 2e7, 5e7]) for _ in range(3)]
    net = SharedNetwork(1e8, 1e-5) if seed % 2 else SwitchedNetwork(1e8, 1e-5)
    problem = _problem(graph, speeds, net)
    if math.prod(len(problem.strategies(n)) for n in graph.order) > 10**6:
        pytest.skip("space too big for brute")
    results = [s.solve(problem) for s in (BruteSolver(max_plans=10**6), DpSolver(), IlpSolver())]
    assert all(r.termination == "optimal" for r in results)
    assert all(math.isclose(r.objective, results[0].objective, rel_tol=1e-9) for r in results)


def _monotone_script():
    path = Path(__file__).resolve().parent.parent / "scripts" / "monotone_devices.py"
    spec = importlib.util.spec_from_file_location("monotone_devices", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("seed", [0])  # an instance whose optimum slows down on k+1 devices without subsets
def test_one_more_device_never_slows_the_optimum(seed):
    mono = _monotone_script()
    label, graph, devices, net = list(mono.synthetic_instances(seed + 1))[seed]
    small = mono._optimum(graph, devices[:-1], net, True)
    big = mono._optimum(graph, devices, net, True)
    assert big <= small * (1 + 1e-9), (label, small, big)


@pytest.mark.slow
def test_one_more_device_never_slows_the_optimum_on_every_instance():
    """The paper's 12 instances (k = 2 → 3 → 4) and 50 synthetic ones."""
    mono = _monotone_script()
    for label, graph, devices, net in [*mono.paper_instances(), *mono.synthetic_instances(50)]:
        small = mono._optimum(graph, devices[:-1], net, True)
        big = mono._optimum(graph, devices, net, True)
        assert big <= small * (1 + 1e-9), (label, small, big)
