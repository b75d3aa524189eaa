"""Clusters, networks, split fractions and plan validation: every bad input gets a clear error."""

import math

import pytest
import torch

import iopopt
from iopopt import Cluster, Device, InvalidPlan, split_counts, zoo
from iopopt.network import SharedNetwork, SwitchedNetwork, make_network

torch.set_num_threads(1)


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        (dict(name="a", flops_per_s=0), "flops_per_s"),
        (dict(name="a", flops_per_s=-1e9), "flops_per_s"),
        (dict(name="a", flops_per_s=float("nan")), "flops_per_s"),
        (dict(name="a", flops_per_s=1e9, memory_bytes=0), "memory_bytes"),
        (dict(name="a", flops_per_s=1e9, memory_bytes=-5), "memory_bytes"),
        (dict(name="a", flops_per_s=1e9, op_overhead_s=-1e-3), "op_overhead_s"),
        (dict(name="", flops_per_s=1e9), "name"),
    ],
)
def test_bad_device(kwargs, needle):
    with pytest.raises(ValueError, match=needle) as err:
        Device(**kwargs)
    bad = [v for k, v in kwargs.items() if k == needle]
    if bad and not (isinstance(bad[0], float) and math.isnan(bad[0])):
        assert repr(bad[0]) in str(err.value)


def test_bad_cluster():
    d = Device("a", 1e9)
    with pytest.raises(ValueError, match="devices must not be empty"):
        Cluster(())
    with pytest.raises(ValueError, match=r"host must be a device index in \[0, 0\], got 3"):
        Cluster((d,), host=3)
    with pytest.raises(ValueError, match="host"):
        Cluster((d,), host=-1)
    with pytest.raises(ValueError, match="unique"):
        Cluster((d, Device("a", 2e9)))
    with pytest.raises(ValueError, match=r"split must be one of \('proportional', 'equal'\), got 'fair'"):
        Cluster((d,), split="fair")
    with pytest.raises(ValueError, match="k must be a positive integer, got 0"):
        Cluster.homogeneous(0, 1e9)


@pytest.mark.parametrize("cls", [SharedNetwork, SwitchedNetwork])
@pytest.mark.parametrize("bw", [0, -1.0, float("inf")])
def test_bad_bandwidth(cls, bw):
    with pytest.raises(ValueError, match="bandwidth_bytes_per_s") as err:
        cls(bandwidth_bytes_per_s=bw)
    assert repr(bw) in str(err.value)


@pytest.mark.parametrize("cls", [SharedNetwork, SwitchedNetwork])
def test_bad_latency(cls):
    with pytest.raises(ValueError, match="latency_s must be a finite number >= 0, got -0.1"):
        cls(bandwidth_bytes_per_s=1e6, latency_s=-0.1)


def test_bad_device_bandwidth():
    with pytest.raises(ValueError, match=r"device_bandwidths\[1\]"):
        SwitchedNetwork(bandwidth_bytes_per_s=1e6, device_bandwidths=(1e6, 0))


def test_unknown_network_kind():
    with pytest.raises(ValueError, match=r"unknown network model 'wifi'; valid: \['shared', 'switched'\]"):
        make_network("wifi", bandwidth_bytes_per_s=1e6)


@pytest.mark.parametrize(
    "n,weights,expected",
    [
        (10, [1, 1, 1], (4, 3, 3)),
        (2, [1, 1, 1, 1], (1, 1, 0, 0)),
        (7, [3, 1], (5, 2)),
        (0, [1, 2], (0, 0)),
        (5, [1, 1e-9], (5, 0)),
    ],
)
def test_split_counts(n, weights, expected):
    assert split_counts(n, weights) == expected


def test_split_policy():
    devs = (Device("a", 3e9), Device("b", 1e9))
    assert Cluster(devs).counts(8) == (6, 2)
    assert Cluster(devs, split="equal").counts(8) == (4, 4)


@pytest.fixture(scope="module")
def problem():
    module, shape = zoo.build("tiny_chain")
    return iopopt.Problem(iopopt.trace(module, shape), Cluster.homogeneous(3, 1e9), SharedNetwork(1e6))


def test_inapplicable_strategy(problem):
    linear = next(op.name for op in problem.graph if op.kind == "linear")
    with pytest.raises(InvalidPlan, match=rf"'rows' is not applicable to node '{linear}' \(kind linear\); valid: "):
        problem.plan({linear: "rows"})


def test_unknown_strategy(problem):
    conv = next(op.name for op in problem.graph if op.kind == "conv")
    with pytest.raises(InvalidPlan, match="'diagonal' is not applicable"):
        problem.plan({conv: "diagonal"})


def test_plan_missing_and_unknown_nodes(problem):
    with pytest.raises(InvalidPlan, match="no strategy for"):
        iopopt.Plan({"x": "host"}).validate(problem)
    with pytest.raises(InvalidPlan, match="not in the graph"):
        problem.plan({"nope": "host"})


def test_partial_add_needs_partial_inputs():
    module, shape = zoo.build("tiny_residual")
    p = iopopt.Problem(iopopt.trace(module, shape), Cluster.homogeneous(2, 1e9), SharedNetwork(1e6))
    add = next(op.name for op in p.graph if op.kind == "add")
    with pytest.raises(InvalidPlan, match=f"edge .* → {add}: '{add}' in 'partial' needs a partial-sum input"):
        p.plan({add: "partial"})


def test_problem_type_errors(problem):
    with pytest.raises(ValueError, match="graph must be an OpGraph"):
        iopopt.Problem("resnet", problem.cluster, problem.network)
    with pytest.raises(ValueError, match="network must be a NetworkModel"):
        iopopt.Problem(problem.graph, problem.cluster, 1e6)


def test_evaluate_takes_a_mapping_and_rejects_other_plans(problem):
    plan = problem.plan({}, default="host")
    assert iopopt.evaluate(problem, dict(plan)) == iopopt.evaluate(problem, plan)
    with pytest.raises(TypeError, match="a plan must be an iopopt.Plan or a mapping node → strategy, got list"):
        iopopt.evaluate(problem, ["host"])


def test_unknown_solver_setting_lists_the_valid_ones():
    from iopopt.solvers import SolverError, make_solver

    needle = r"unknown setting 'foo' of solver 'greedy_iop'; valid settings: \['base', 'recompute', 'memory_aware'\]"
    with pytest.raises(SolverError, match=needle):
        make_solver("greedy_iop", foo=1)
    with pytest.raises(ValueError, match=r"unknown solver 'gredy'; valid: \["):
        make_solver("gredy")


# -- cost terms belong to one problem ------------------------------------------------------------


def test_a_copy_with_another_network_gets_its_own_cost_terms():
    """dataclasses.replace(problem, network=...) must not reuse the first network's cached terms."""
    import dataclasses

    from iopopt.space.plans import all_oc

    module, shape = zoo.build("tiny_chain")
    slow_net = SharedNetwork(bandwidth_bytes_per_s=1e6, latency_s=1e-3)
    fast_net = SharedNetwork(bandwidth_bytes_per_s=1e9, latency_s=1e-6)
    slow = iopopt.Problem(iopopt.trace(module, shape), Cluster.homogeneous(3, 1e9), slow_net)
    plan = all_oc(slow)
    before = iopopt.evaluate(slow, plan)  # fills slow's cache first
    fast = dataclasses.replace(slow, network=fast_net)
    fresh = iopopt.Problem(slow.graph, slow.cluster, fast_net)  # built from scratch: the oracle
    assert before.messages > 0
    assert iopopt.evaluate(fast, plan).latency_s == iopopt.evaluate(fresh, plan).latency_s
    assert iopopt.evaluate(fast, plan).comm_s < before.comm_s / 100
    # and the first problem keeps its own figures
    assert iopopt.evaluate(slow, plan).latency_s == before.latency_s
    # the same for the cluster: a copy on faster devices computes faster
    quick = dataclasses.replace(slow, cluster=Cluster.homogeneous(3, 1e12))
    assert iopopt.evaluate(quick, plan).compute_s < before.compute_s / 100
