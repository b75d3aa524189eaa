"""The roofline device model: hand-computed times of tiny ops, the bytes each device moves, old behaviour kept.

Oracles: times worked out by hand from the layer dimensions, the tensors the
simulated executor really hands to each kernel (inputs, output, weight shard),
and the plain ``FLOPs / flops_per_s + overhead`` formula for devices given
only a FLOP/s figure.
"""

from __future__ import annotations

import math
import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import iopopt
from iopopt import Cluster, Device
from iopopt.compile import compile_plan, terms
from iopopt.cost import evaluate
from iopopt.exec import kernels
from iopopt.exec.simulated import SimulatedExecutor
from iopopt.frontend.synthetic import random_cnn
from iopopt.model.cluster import RATE_KINDS, KindRates
from iopopt.model.layouts import strategies_for
from iopopt.network import SwitchedNetwork

torch.set_num_threads(1)

NET = SwitchedNetwork(bandwidth_bytes_per_s=1e8, latency_s=1e-4)


def _problem(module, shape, devices, host=0):
    return iopopt.Problem(iopopt.trace(module.eval(), shape), Cluster(tuple(devices), host=host, split="equal"), NET)


# -- hand-computed roofline times ---------------------------------------------------------------


def roof(flops, nbytes, rate, bw, overhead):
    return max(flops / rate, nbytes / bw) + overhead


def test_linear_layer_by_hand_in_host_oc_and_ic():
    # Linear(1000 -> 500) at batch 1: 2*1000*500 = 1e6 FLOPs; weights 500*1000 + bias 500
    dev = dict(flops_per_s=1e11, kind_flops_per_s={"linear": 1e9}, memory_bandwidth_bytes_per_s=2e9,
               op_overhead_s=1e-5)
    module = nn.Sequential(nn.Flatten(), nn.Linear(1000, 500))
    p = _problem(module, (1, 1000, 1, 1), [Device("a", **dev), Device("b", **dev)])
    lin = next(op.name for op in p.graph if op.kind == "linear")
    t = terms(p)
    host = t.node(lin, "host")
    # host: reads 1000 inputs and 500500 weights, writes 500 outputs (float32)
    assert host.moved_bytes == ((1000 + 500 * 1000 + 500 + 500) * 4, 0)
    assert host.device_compute_s[0] == pytest.approx(roof(1e6, 2_008_000, 1e9, 2e9, 1e-5), rel=1e-12)
    assert host.device_compute_s[0] == pytest.approx(1.004e-3 + 1e-5, rel=1e-12)  # memory-bound
    oc = t.node(lin, "oc")
    # oc: each device reads the whole input, 250 rows of W with their 250 biases, writes 250 outputs
    assert oc.moved_bytes == ((1000 + 250 * 1000 + 250 + 250) * 4,) * 2
    assert oc.device_compute_s[1] == pytest.approx(roof(5e5, 1_006_000, 1e9, 2e9, 1e-5), rel=1e-12)
    ic = t.node(lin, "ic")
    # ic: each device reads 500 input features and W[:, 500 cols]; writes a full 500-wide partial; bias on host
    assert ic.moved_bytes == ((500 + 500 * 500 + 500 + 500) * 4, (500 + 500 * 500 + 500) * 4)
    assert ic.device_compute_s == pytest.approx(
        (roof(5e5, 1_006_000, 1e9, 2e9, 1e-5), roof(5e5, 1_004_000, 1e9, 2e9, 1e-5)), rel=1e-12
    )


def test_conv_rows_with_halo_by_hand():
    # Conv 4 -> 6, 3x3, padding 1 on an 8x8 input, 2 devices with 4 output rows each.
    # Device 0 reads input rows 0..4 (5 rows: its 4 and one halo row), device 1 rows 3..7.
    dev = dict(flops_per_s=1e9, memory_bandwidth_bytes_per_s=1e6)  # slow memory: the byte term binds
    conv_net = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1, bias=False))
    p = _problem(conv_net, (1, 4, 8, 8), [Device("a", **dev), Device("b", **dev)])
    conv = next(op.name for op in p.graph if op.kind == "conv")
    term = terms(p).node(conv, "rows")
    weights = 6 * 4 * 3 * 3
    per_device = (4 * 5 * 8 + 6 * 4 * 8 + weights) * 4
    assert term.moved_bytes == (per_device, per_device)
    flops = 2 * 6 * 4 * 8 * 4 * 9  # 2 * Cout * its output elements per channel * Cin * k*k
    assert term.flops == (flops, flops)
    assert term.device_compute_s == pytest.approx((per_device / 1e6,) * 2, rel=1e-12)


def test_the_weight_pass_of_row_shares_by_hand():
    # Conv 4 -> 6, 3x3, padding 1 on an 8x8 input: 216 weights (864 bytes); 2 devices, 4 of the 8 rows each.
    # A row share goes through all 864 bytes of weights, where half the layer would go through 432.
    dev = dict(flops_per_s=1e9, weight_bytes_per_s=1e6, op_overhead_s=1e-6)
    conv_net = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1, bias=False))
    p = _problem(conv_net, (1, 4, 8, 8), [Device("a", **dev), Device("b", **dev)])
    conv = next(op.name for op in p.graph if op.kind == "conv")
    t = terms(p)
    flops = 2 * 6 * 8 * 8 * 4 * 9
    rows = t.node(conv, "rows")
    assert rows.device_compute_s == pytest.approx((flops / 2 / 1e9 + 0.5 * 864 / 1e6 + 1e-6,) * 2, rel=1e-12)
    # the whole layer and the channel shares pay no more than their FLOPs: the fitted rate holds their one pass
    assert t.node(conv, "host").compute_s == pytest.approx(flops / 1e9 + 1e-6, rel=1e-12)
    assert t.node(conv, "oc").device_compute_s == pytest.approx((flops / 2 / 1e9 + 1e-6,) * 2, rel=1e-12)
    assert t.node(conv, "ic").device_compute_s == pytest.approx((flops / 2 / 1e9 + 1e-6,) * 2, rel=1e-12)
    # the pass joins the FLOP term, under the byte term's max
    d = Device("d", 1e9, weight_bytes_per_s=1e6, memory_bandwidth_bytes_per_s=1e3)
    assert d.compute_s("conv", 1e3, 1e3, 1e3, 0.5) == pytest.approx(1.0)  # bytes bind: 1e3 / 1e3
    assert Device("d", 1e9).compute_s("conv", 1e3, 0.0, 1e9, 0.1) == pytest.approx(1e-6)  # no pass: no term


def test_the_weight_pass_in_every_strategy_with_subsets_and_fused_stacks():
    # every strategy of every node, device subsets and fused row stacks included: exactly the row shares
    # (rows, rows@m, rows_fused<d>) pay (1 - f) * weights / weight_bytes_per_s, f their own rows (halo included)
    from iopopt.model.layouts import subset

    module = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, bias=False),
                           nn.BatchNorm2d(8), nn.MaxPool2d(2), nn.Conv2d(8, 6, 1)).eval()
    devs = tuple(Device(f"d{i}", f, weight_bytes_per_s=1e6) for i, f in enumerate((1e9, 2e9, 1.5e9)))
    p = iopopt.Problem(iopopt.trace(module, (1, 3, 10, 10)), Cluster(devs, subsets=True, fused_depth=2), NET)
    t = terms(p)
    paid = set()
    for op in p.graph:
        for s in p.strategies(op.name):
            term = t.node(op.name, s)
            for d, dev in enumerate(devs):
                if not term.active[d]:
                    continue
                extra = 0.0
                if subset(s)[0] == "rows":
                    f = term.out.parts[d].n_rows / op.out_shape[2]
                    extra = (1 - f) * term.weight_bytes[d] / 1e6
                    if f < 1 and term.weight_bytes[d]:
                        paid.add(s)
                assert term.device_compute_s[d] == pytest.approx(term.flops[d] / dev.flops_per_s + extra,
                                                                 rel=1e-12, abs=1e-15), (op.name, s, d)
    assert {"rows", "rows@2", "rows_fused1", "rows_fused2"} <= paid, paid


def test_per_kind_bandwidth_by_hand():
    # a 1x1 conv 64 -> 64 on 32x32: 2*64*64*1024 FLOPs; reads 64*1024 + 4096 weights, writes 64*1024 (float32)
    d = Device("d", 1e11, memory_bandwidth_bytes_per_s=5e10, kind_bytes_per_s={"conv": 4e9}, op_overhead_s=1e-6)
    flops, nbytes = 2 * 64 * 64 * 1024, (64 * 1024 * 2 + 64 * 64) * 4
    assert d.compute_s("conv", flops, nbytes) == pytest.approx(nbytes / 4e9 + 1e-6, rel=1e-15)  # memory-bound
    assert d.compute_s("act", 65536, 8 * 65536) == pytest.approx(8 * 65536 / 5e10 + 1e-6, rel=1e-15)
    assert d.bandwidth("conv") == 4e9 and d.bandwidth("bn") == 5e10 and Device("e", 1e9).bandwidth("conv") is None


def test_per_kind_rate_and_default_rate():
    d = Device("d", 1e10, kind_flops_per_s={"maxpool": 1e8}, op_overhead_s=2e-6)
    assert d.compute_s("maxpool", 1e6) == pytest.approx(1e6 / 1e8 + 2e-6, rel=1e-15)
    assert d.compute_s("conv", 1e6) == 1e6 / 1e10 + 2e-6  # conv: flops_per_s
    assert d.compute_s("act", 1e6, 1e12) == 1e6 / 1e10 + 2e-6  # no bandwidth: bytes are free
    assert d.is_roofline and not Device("e", 1e10).is_roofline


def test_devices_with_only_flops_are_unchanged_bit_for_bit():
    module, shape = random_cnn(3, n_layers=6, kind="dag", channels=(3, 8), input_hw=(12, 10))
    devs = [Device("a", 3e9, op_overhead_s=1e-4), Device("b", 1e9), Device("c", 2e9, op_overhead_s=5e-5)]
    p = _problem(module, shape, devs)
    t = terms(p)
    for op in p.graph:
        for s in strategies_for(op):
            term = t.node(op.name, s)
            for d, dev in enumerate(devs):
                want = term.flops[d] / dev.flops_per_s + dev.op_overhead_s if term.active[d] else 0.0
                assert term.device_compute_s[d] == want  # exactly the old formula
    assert p.lower_bound_s() == p.graph.total_flops / sum(d.flops_per_s for d in devs)


# -- the bytes each device moves equal what the executor hands its kernels ----------------------


def _draw_plan(problem, rng):
    chosen = {}
    for op in problem.graph:
        s = rng.choice(strategies_for(op))
        if s == "partial" and any(chosen[i] not in ("ic", "partial") for i in op.inputs):
            s = "host"
        chosen[op.name] = s
    return iopopt.Plan(chosen)


class TwoBranches(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(5, 4, 3, padding=1)
        self.b = nn.Conv2d(5, 4, 1)

    def forward(self, x):
        return self.a(x) + self.b(x)


def test_moved_bytes_equal_the_executors_kernel_tensors(monkeypatch):
    seen: dict[tuple[str, int], int] = {}
    real = kernels.compute

    def recording(op, strategy, d, inputs, in_regions, out_region, shard, **kw):
        out = real(op, strategy, d, inputs, in_regions, out_region, shard, **kw)
        elems = sum(t.numel() for t in inputs if t is not None) + kernels.shard_elems(shard)
        seen[(op.name, d)] = elems + (out.numel() if out is not None else 0)
        return out

    monkeypatch.setattr(kernels, "compute", recording)
    covered = set()
    devs = [Device(f"d{i}", f, memory_bandwidth_bytes_per_s=1e9) for i, f in enumerate((1e9, 2e9, 1.5e9))]
    cases = [random_cnn(seed, n_layers=6, kind="dag" if seed % 2 else "chain", channels=(2, 9), input_hw=(11, 9))
             for seed in range(6)]
    cases.append((TwoBranches(), (1, 5, 6, 7)))
    for seed, (module, shape) in enumerate(cases):
        problem = iopopt.Problem(iopopt.trace(module.eval(), shape), Cluster(tuple(devs)), NET)
        rng = random.Random(seed)
        plans = [_draw_plan(problem, rng) for _ in range(4)]
        if isinstance(module, TwoBranches):  # both convs in ic, their sum in partial sums
            plans = [problem.plan({n: s for n, s in (("a", "ic"), ("b", "ic"), ("add", "partial"))}, "host")]
        for plan in plans:
            program = compile_plan(problem, plan)
            seen.clear()
            SimulatedExecutor(problem, module, dtype=torch.float32).run(program, torch.randn(shape))
            for step in program.steps:
                term = step.term
                for d in range(problem.k):
                    if term.active[d] and step.op.kind not in ("input", "output"):
                        want = seen[(step.op.name, d)] * problem.dtype_bytes
                        assert term.moved_bytes[d] == want, (step.op.name, step.strategy, d)
                        covered.add(step.strategy)
    assert covered == {"host", "replicate", "oc", "ic", "rows", "channel", "partial"}


# -- roofline clusters keep the cost model's invariants -----------------------------------------

_GRAPHS: dict = {}


def _graph(seed):
    if seed not in _GRAPHS:
        module, shape = random_cnn(seed, n_layers=5, kind="dag", channels=(2, 9), input_hw=(9, 7))
        _GRAPHS[seed] = iopopt.trace(module, shape)
    return _GRAPHS[seed]


roofline_devices = st.lists(
    st.builds(
        lambda f, rates, bw, kbw, ovh: (f, rates, bw, kbw, ovh),
        st.sampled_from([1e8, 1e9, 4e9]),
        st.dictionaries(st.sampled_from(RATE_KINDS), st.sampled_from([1e7, 1e8, 1e10]), max_size=5),
        st.sampled_from([None, 1e7, 1e9]),
        st.dictionaries(st.sampled_from(("conv",) + RATE_KINDS), st.sampled_from([1e6, 1e8]), max_size=3),
        st.sampled_from([0.0, 1e-5]),
    ),
    min_size=2,
    max_size=4,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 5), devs=roofline_devices, plan_seed=st.integers(0, 10**6),
       working_set=st.sampled_from([(None, None), (1e3, 1e6), (64.0, 1e8)]),
       weight_pass=st.sampled_from([None, 1e6, 1e9]))
def test_roofline_lower_bound_and_max_over_terms(seed, devs, plan_seed, working_set, weight_pass):
    cache, dram = working_set
    cluster = Cluster(tuple(Device(f"d{i}", f, kind_flops_per_s=r, memory_bandwidth_bytes_per_s=bw,
                                   kind_bytes_per_s=kbw, op_overhead_s=o, cache_bytes=cache, dram_bytes_per_s=dram,
                                   weight_bytes_per_s=weight_pass)
                            for i, (f, r, bw, kbw, o) in enumerate(devs)))
    problem = iopopt.Problem(_graph(seed), cluster, NET)
    plan = _draw_plan(problem, random.Random(plan_seed))
    report = evaluate(problem, plan)
    assert report.lower_bound_s <= report.latency_s * (1 + 1e-12)
    t = terms(problem)
    for op in problem.graph:
        term = t.node(op.name, plan[op.name])
        for d, dev in enumerate(cluster.devices):
            if not term.active[d]:
                continue
            pointwise = op.kind == "conv" and tuple(op.params["kernel"]) == (1, 1)
            kind = "pwconv" if pointwise else op.kind
            rate = dev.kind_flops_per_s.get(kind, dev.flops_per_s)
            floor = term.flops[d] / rate
            if weight_pass is not None and plan[op.name] == "rows":  # a row share goes through all its weights
                fraction = term.out.parts[d].n_rows / op.out_shape[2]
                floor += (1 - fraction) * term.weight_bytes[d] / weight_pass
            bw = dev.kind_bytes_per_s.get(kind)
            if bw is None and pointwise:
                bw = dev.kind_bytes_per_s.get("conv")
            if bw is None:
                bw = dev.memory_bandwidth_bytes_per_s
            if cache is not None and term.moved_bytes[d] > cache:
                bw = dram if bw is None else min(bw, dram)
            if bw is not None:
                floor = max(floor, term.moved_bytes[d] / bw)
            assert term.device_compute_s[d] == pytest.approx(floor + dev.op_overhead_s, rel=1e-12)


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,needles",
    [
        (dict(kind_flops_per_s={"linear": 0}), ["kind_flops_per_s['linear']", "0"]),
        (dict(kind_flops_per_s={"maxpool": -3e8}), ["kind_flops_per_s['maxpool']", "-300000000.0"]),
        (dict(kind_flops_per_s={"act": math.inf}), ["kind_flops_per_s['act']", "inf"]),
        (dict(kind_flops_per_s={"pooling": 1e8}), ["'pooling'", "valid kinds:", "maxpool", "linear"]),
        (dict(kind_flops_per_s={"conv": 1e8}), ["'conv'", "flops_per_s", "valid kinds:"]),
        (dict(memory_bandwidth_bytes_per_s=0), ["memory_bandwidth_bytes_per_s", "got 0"]),
        (dict(memory_bandwidth_bytes_per_s=-1e9), ["memory_bandwidth_bytes_per_s", "-1000000000.0"]),
        (dict(memory_bandwidth_bytes_per_s=math.nan), ["memory_bandwidth_bytes_per_s", "nan"]),
        (dict(kind_flops_per_s=[("linear", 1e9)]), ["kind_flops_per_s must be a mapping"]),
        (dict(kind_bytes_per_s={"conv": 0.0}), ["kind_bytes_per_s['conv']", "0.0"]),
        (dict(kind_bytes_per_s={"relu": 1e9}), ["'relu'", "kind_bytes_per_s", "valid kinds: conv, dwconv"]),
        (dict(cache_bytes=8e6), ["cache_bytes given but not dram_bytes_per_s"]),
        (dict(dram_bytes_per_s=2e10), ["dram_bytes_per_s given but not cache_bytes"]),
        (dict(cache_bytes=0, dram_bytes_per_s=2e10), ["cache_bytes must be a positive finite number, got 0"]),
        (dict(cache_bytes=8e6, dram_bytes_per_s=-1.0), ["dram_bytes_per_s must be a positive finite number", "-1.0"]),
        (dict(cache_bytes=8e6, dram_bytes_per_s=1e300), ["dram_bytes_per_s=1e+300 is outside"]),
        (dict(weight_bytes_per_s=0), ["weight_bytes_per_s must be a positive finite number, got 0"]),
        (dict(weight_bytes_per_s=-5e9), ["weight_bytes_per_s", "-5000000000.0"]),
        (dict(weight_bytes_per_s=1e300), ["weight_bytes_per_s=1e+300 is outside"]),
        (dict(spill_weight_bytes=4e6), ["spill_weight_bytes needs the working-set bandwidth", "without them"]),
        (dict(cache_bytes=8e6, dram_bytes_per_s=2e10, spill_weight_bytes=-4e6), ["spill_weight_bytes", "-4000000.0"]),
        (dict(cache_bytes=8e6, dram_bytes_per_s=2e10, spill_weight_bytes=0),
         ["spill_weight_bytes must be a positive", "got 0"]),
    ],
)
def test_bad_roofline_device(kwargs, needles):
    with pytest.raises(ValueError) as err:
        Device("a", 1e9, **kwargs)
    msg = str(err.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, (needle, msg)


def test_pointwise_convs_and_the_working_set_by_hand():
    # pwconv: the conv's figures unless it has its own
    d = Device("d", 1e11, kind_bytes_per_s={"conv": 4e9}, memory_bandwidth_bytes_per_s=3e10)
    assert d.rate("pwconv") == 1e11 and d.bandwidth("pwconv") == 4e9
    d = Device("d", 1e11, kind_flops_per_s={"pwconv": 5e10}, kind_bytes_per_s={"conv": 4e9, "pwconv": 1e10})
    assert d.compute_s("pwconv", 1e8, 1e6) == pytest.approx(max(1e8 / 5e10, 1e6 / 1e10))
    # the working set: at most the DRAM bandwidth beyond cache_bytes, the kind's own below
    d = Device("d", 1e11, kind_bytes_per_s={"act": 1e11}, cache_bytes=8e6, dram_bytes_per_s=2e10)
    assert d.compute_s("act", 1e6, 8e6) == pytest.approx(8e6 / 1e11)
    assert d.compute_s("act", 1e6, 9e6) == pytest.approx(9e6 / 2e10)
    assert d.compute_s("bn", 1e6, 9e6) == pytest.approx(9e6 / 2e10)  # no bandwidth of its own: the DRAM's
    assert d.compute_s("bn", 1e6, 7e6) == pytest.approx(1e6 / 1e11)  # in the cache: bytes free, as before
    slow = Device("d", 1e11, kind_bytes_per_s={"conv": 4e9}, cache_bytes=8e6, dram_bytes_per_s=2e10)
    assert slow.compute_s("conv", 1e6, 9e6) == pytest.approx(9e6 / 4e9)  # slower than DRAM already: unchanged
    assert Device("d", 1e9).compute_s("act", 1e6, 1e12) == Device("d", 1e9).compute_s("act", 1e6)  # flops only


def test_one_by_one_convs_priced_as_pwconv_in_the_cost_terms():
    module = nn.Sequential(nn.Conv2d(4, 8, 1), nn.Conv2d(8, 8, 3, padding=1)).eval()
    graph = iopopt.trace(module, (1, 4, 6, 6))
    dev = Device("d", 1e9, kind_flops_per_s={"pwconv": 1e7}, op_overhead_s=1e-6)
    t = terms(iopopt.Problem(graph, Cluster((dev,)), NET))
    convs = [op for op in graph if op.kind == "conv"]
    assert [tuple(op.params["kernel"]) for op in convs] == [(1, 1), (3, 3)]
    one, three = (t.node(op.name, "host") for op in convs)
    assert one.compute_s == pytest.approx(convs[0].flops / 1e7 + 1e-6)
    assert three.compute_s == pytest.approx(convs[1].flops / 1e9 + 1e-6)


def test_unknown_kind_asked_of_a_device():
    with pytest.raises(ValueError, match="no rate for op kind 'nosuch'; valid kinds: conv, dwconv"):
        Device("a", 1e9).compute_s("nosuch", 1.0)


def test_kind_rates_are_an_immutable_hashable_mapping():
    a = Device("a", 1e9, kind_flops_per_s={"linear": 1e8})
    b = Device("a", 1e9, kind_flops_per_s={"linear": 1e8})
    assert a == b and hash(a) == hash(b) and isinstance(a.kind_flops_per_s, KindRates)
    assert a != Device("a", 1e9, kind_flops_per_s={"linear": 2e8})
    with pytest.raises(TypeError):
        a.kind_flops_per_s["linear"] = 1.0  # type: ignore[index]
    assert Cluster.homogeneous(2, 1e9, kind_flops_per_s={"act": 1e8}).devices[1].rate("act") == 1e8


def test_an_input_written_by_an_operator_holding_more_than_spill_weight_bytes_is_read_at_dram_speed():
    # conv 64 -> 64, 3x3 on 16x16 (weights and bias 4 x (64 x 64 x 9 + 64) = 147,712 bytes), then a ReLU
    # (65,536 bytes in, 65,536 out) and a max-pool.
    module = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)).eval()
    conv_weights = 4 * (64 * 64 * 9 + 64)
    conv_bytes = 4 * (2 * 64 * 16 * 16) + conv_weights
    relu_bytes = 4 * 2 * 64 * 16 * 16
    pool_bytes = 4 * (64 * 16 * 16 + 64 * 8 * 8)
    fig = dict(op_overhead_s=1e-6, memory_bandwidth_bytes_per_s=1e10, cache_bytes=1e8, dram_bytes_per_s=1e9)
    for spill, cold in ((conv_weights - 1, True), (conv_weights, False), (None, False)):
        devs = (Device("a", 1e9, spill_weight_bytes=spill, **fig), Device("b", 1e9, spill_weight_bytes=spill, **fig))
        p = _problem(module, (1, 64, 16, 16), devs)
        t = terms(p)
        relu, pool = (next(op.name for op in p.graph if op.kind == k) for k in ("act", "maxpool"))
        bw = 1e9 if cold else 1e10
        flops = p.graph[relu].flops
        assert t.node(relu, "host").compute_s == pytest.approx(roof(flops, relu_bytes, 1e9, bw, 1e-6), rel=1e-12)
        # shares too, whatever the producer's own strategy in the plan: the producer is counted whole
        share = t.node(relu, "oc")
        assert share.device_compute_s == pytest.approx(
            tuple(roof(f, b, 1e9, bw, 1e-6) for f, b in zip(share.flops, share.moved_bytes)), rel=1e-12)
        # the pool reads the ReLU's output (a producer without weights): at the memory bandwidth, whatever the size
        assert t.node(pool, "host").compute_s == pytest.approx(max(
            p.graph[pool].flops / 1e9, pool_bytes / 1e10) + 1e-6, rel=1e-12)
        # the conv reads the network input (no producer): its own size alone decides
        conv = next(op.name for op in p.graph if op.kind == "conv")
        assert t.node(conv, "host").compute_s == pytest.approx(max(p.graph[conv].flops / 1e9,
                                                                   conv_bytes / 1e10) + 1e-6, rel=1e-12)
