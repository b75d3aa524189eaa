"""Property tests of the cost model on random small graphs and random valid plans."""

import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import iopopt
from iopopt import Cluster, Device, Plan
from iopopt.cost import evaluate, latency
from iopopt.frontend.synthetic import random_cnn
from iopopt.model.layouts import strategies_for
from iopopt.network import SharedNetwork, SwitchedNetwork

torch.set_num_threads(1)

_GRAPHS: dict = {}


def graph(seed: int, kind: str):
    key = (seed, kind)
    if key not in _GRAPHS:
        module, shape = random_cnn(seed, n_layers=5, kind=kind, channels=(2, 9), input_hw=(9, 7))
        _GRAPHS[key] = iopopt.trace(module, shape)
    return _GRAPHS[key]


def random_valid_plan(problem, rng: random.Random) -> Plan:
    """A random applicable strategy per node; a partial-sum add whose inputs are not partial falls back to host."""
    g = problem.graph
    chosen: dict[str, str] = {}
    for op in g:
        s = rng.choice(strategies_for(op))
        if s == "partial" and any(chosen[i] not in ("ic", "partial") for i in op.inputs):
            s = "host"
        chosen[op.name] = s
    plan = Plan(chosen)
    plan.validate(problem)
    return plan


problems = st.builds(
    lambda seed, kind, speeds, overhead, shared, bw, lat, split: iopopt.Problem(
        graph(seed, kind),
        Cluster(tuple(Device(f"d{i}", s, op_overhead_s=overhead) for i, s in enumerate(speeds)), split=split),
        (SharedNetwork if shared else SwitchedNetwork)(bandwidth_bytes_per_s=bw, latency_s=lat),
    ),
    seed=st.integers(0, 7),
    kind=st.sampled_from(["chain", "dag"]),
    speeds=st.lists(st.sampled_from([1e8, 5e8, 1e9, 4e9]), min_size=2, max_size=6),
    overhead=st.sampled_from([0.0, 1e-4]),
    shared=st.booleans(),
    bw=st.sampled_from([1e5, 1e6, 1e8]),
    lat=st.sampled_from([0.0, 1e-3]),
    split=st.sampled_from(["proportional", "equal"]),
)

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(problem=problems, plan_seed=st.integers(0, 10**6))
def test_lower_bound_below_latency(problem, plan_seed):
    plan = random_valid_plan(problem, random.Random(plan_seed))
    report = evaluate(problem, plan)
    assert report.lower_bound_s <= report.latency_s * (1 + 1e-12)
    assert report.latency_s == pytest.approx(report.compute_s + report.comm_s, rel=1e-12)
    assert latency(problem, plan) == pytest.approx(report.latency_s, rel=1e-12)
    assert report.messages == sum(o.messages for o in report.per_op)
    for m in report.per_device:
        assert m.peak_bytes == m.weights_bytes + m.activation_peak_bytes


@SETTINGS
@given(problem=problems)
def test_all_host_has_no_messages_and_host_compute(problem):
    plan = problem.plan({}, default="host")
    report = evaluate(problem, plan)
    host = problem.cluster.devices[problem.host]
    ops = [op for op in problem.graph if op.kind not in ("input", "output")]
    expected = sum(op.flops for op in ops) / host.flops_per_s + len(ops) * host.op_overhead_s
    assert report.messages == 0 and report.bytes_sent == 0 and report.comm_s == 0
    assert report.latency_s == pytest.approx(expected, rel=1e-12)
    others = [m for d, m in enumerate(report.per_device) if d != problem.host]
    assert all(m.peak_bytes == 0 for m in others)
    host_mem = report.per_device[problem.host]
    assert host_mem.weights_bytes == problem.graph.total_weight_elems * problem.dtype_bytes


@SETTINGS
@given(problem=problems, plan_seed=st.integers(0, 10**6))
def test_evaluation_is_deterministic(problem, plan_seed):
    plan = random_valid_plan(problem, random.Random(plan_seed))
    fresh = iopopt.Problem(problem.graph, problem.cluster, problem.network)
    assert evaluate(problem, plan) == evaluate(fresh, plan)


@SETTINGS
@given(problem=problems)
def test_replicated_weights_everywhere(problem):
    plan = problem.plan({}, default="replicate")
    report = evaluate(problem, plan)
    full = problem.graph.total_weight_elems * problem.dtype_bytes
    assert all(m.weights_bytes == full for m in report.per_device)


def test_sharded_weights_sum_to_the_model():
    """oc/ic/channel shards partition the weights (biases of ic ops are held once, by the host)."""
    g = graph(3, "chain")
    problem = iopopt.Problem(g, Cluster.homogeneous(3, 1e9), SharedNetwork(1e6))
    checked = 0
    for default in ("oc", "ic"):
        strategies = {}
        for op in g:
            valid = strategies_for(op)
            strategies[op.name] = default if default in valid else ("channel" if "channel" in valid else "host")
        plan = Plan(strategies)
        try:
            plan.validate(problem)
        except iopopt.InvalidPlan:
            continue
        report = evaluate(problem, plan)
        assert sum(m.weights_bytes for m in report.per_device) == g.total_weight_elems * g.dtype_bytes
        checked += 1
    assert checked == 2


@SETTINGS
@given(
    sends=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4), st.integers(0, 10**6)), min_size=1, max_size=12),
    shared=st.booleans(),
    overhead=st.sampled_from([1e-4, 2e-3]),
)
def test_message_overhead_adds_the_busiest_devices_messages_to_a_phase(sends, shared, overhead):
    """``message_overhead_s`` costs each device its own messages, in parallel: the phase grows by the overhead times
    the most messages one device sends or receives (counted here by brute force), on a shared medium too."""
    from iopopt.model.network import Message

    msgs = [Message(s, d, n) for s, d, n in sends if s != d]
    net = (SharedNetwork if shared else SwitchedNetwork)(1e6, 1e-3)
    with_o = (SharedNetwork if shared else SwitchedNetwork)(1e6, 1e-3, message_overhead_s=overhead)
    busiest = max([sum(m.src == d for m in msgs) for d in range(5)] + [sum(m.dst == d for m in msgs) for d in range(5)])
    assert with_o.phase_time(msgs) == pytest.approx(net.phase_time(msgs) + overhead * busiest)
    assert with_o.radio_s(msgs, 5) == net.radio_s(msgs, 5)  # host work, not airtime
