"""Energy per inference: checked against what the simulated executor computes and sends.

The oracle rebuilds every device's busy, transmit, receive and idle seconds
from the run itself -- the tensors each device actually computed from and
produced (their element counts give its share of the FLOPs and the bytes it
moved), the weight shards it built and the messages it sent, priced with
:meth:`Device.compute_s` and the network formulas written out here again --
and the energy from DESIGN §4's first form, Σ_d [P_active·busy + P_tx·tx +
P_rx·rx + P_idle·(T − busy − tx − rx)]. The cost model computes it from its
own node and edge terms in the increment form.
"""

from __future__ import annotations

import copy
import math
import random
from collections import defaultdict

import pytest
import torch

import iopopt
from iopopt import zoo
from iopopt.compile.program import compile_plan
from iopopt.cost import energy, evaluate_program
from iopopt.exec.simulated import SimulatedExecutor
from iopopt.exec.verify import default_input
from iopopt.model.cluster import Cluster, Device
from iopopt.network import SharedNetwork, SwitchedNetwork
from iopopt.space.plans import build_plan

torch.set_num_threads(1)


def power_cluster(k: int, seed: int) -> Cluster:
    """``k`` heterogeneous roofline devices with power figures (a device's increments may be negative)."""
    rng = random.Random(seed)
    devices = []
    for d in range(k):
        idle = rng.uniform(0.1, 3.0)
        devices.append(
            Device(
                f"d{d}",
                flops_per_s=rng.uniform(2e8, 2e9),
                op_overhead_s=rng.uniform(0, 1e-4),
                memory_bandwidth_bytes_per_s=rng.uniform(5e8, 5e9),
                kind_flops_per_s={"linear": rng.uniform(1e8, 1e9), "maxpool": rng.uniform(1e7, 1e8)},
                active_power_w=idle + rng.uniform(0.5, 5.0),
                idle_power_w=idle,
                tx_power_w=idle + rng.uniform(-0.05, 1.0),
                rx_power_w=idle + rng.uniform(0.0, 0.8),
            )
        )
    return Cluster(tuple(devices))


NETWORKS = {
    "shared": SharedNetwork(bandwidth_bytes_per_s=2e6, latency_s=1e-3),
    "switched": SwitchedNetwork(bandwidth_bytes_per_s=5e6, latency_s=2e-4, device_bandwidths=(5e6, 2e6, 8e6)),
}


class _Recording(SimulatedExecutor):
    """The simulated executor, keeping what each device computed: its input buffers, output and weight bytes."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.computed: list[tuple] = []

    def _compute(self, step, bufs):
        outs, node_w = super()._compute(step, bufs)
        for d, out in enumerate(outs):
            if out is not None:
                self.computed.append((step, d, [b[d] for b in bufs], out, node_w[d]))
        return outs, node_w


def _airtime_s(network, src: int, dst: int, nbytes: int) -> tuple[float, float]:
    """(transmit, receive) seconds of one message, per DESIGN §4 and the network's docstring."""
    if isinstance(network, SharedNetwork):
        air = network.latency_s + nbytes / network.bandwidth_bytes_per_s
        return air, air
    bw = network.device_bandwidths or ()
    b_src = bw[src] if src < len(bw) else network.bandwidth_bytes_per_s
    b_dst = bw[dst] if dst < len(bw) else network.bandwidth_bytes_per_s
    return network.latency_s + nbytes / b_src, network.latency_s + nbytes / b_dst


def _phase_s(network, msgs) -> float:
    if isinstance(network, SharedNetwork):
        return sum(network.latency_s + m.nbytes / network.bandwidth_bytes_per_s for m in msgs)
    bw = network.device_bandwidths or ()
    n_sent, n_recv, b_sent, b_recv = (defaultdict(int) for _ in range(4))
    for m in msgs:
        n_sent[m.src] += 1
        n_recv[m.dst] += 1
        b_sent[m.src] += m.nbytes
        b_recv[m.dst] += m.nbytes
    devs = set(n_sent) | set(n_recv)

    def b(d):
        return bw[d] if d < len(bw) else network.bandwidth_bytes_per_s

    return network.latency_s * max(max(n_sent[d], n_recv[d]) for d in devs) + max(
        max(b_sent[d], b_recv[d]) / b(d) for d in devs
    )


def measured_energy(problem, plan, module):
    """Per device (busy, tx, rx) seconds, the latency and the energy, rebuilt from one simulated run."""
    program = compile_plan(problem, plan)
    model = copy.deepcopy(module).to(torch.float64).eval()
    ex = _Recording(problem, model)
    with torch.no_grad():
        trace = ex.run(program, default_input(problem.graph))
    k, nb = problem.k, problem.dtype_bytes
    busy = [0.0] * k
    step_busy: dict[str, list[float]] = defaultdict(lambda: [0.0] * k)
    for step, d, inputs, out, weight_bytes in ex.computed:
        op = step.op
        if step.term.out.kind == "P" and op.kind in ("conv", "linear"):  # ic: its share of the input channels
            share = inputs[0].numel() / math.prod(op.in_shapes[0])
        else:  # its share of the output (all of it when it computes the whole output)
            share = out.numel() / math.prod(op.out_shape)
        moved = sum(t.numel() for t in inputs if t is not None) * nb + out.numel() * nb + weight_bytes
        seconds = problem.cluster.devices[d].compute_s(str(op.kind), op.flops * share, moved)
        busy[d] += seconds
        step_busy[op.name][d] += seconds
    tx, rx = [0.0] * k, [0.0] * k
    by_node = defaultdict(list)
    for m in trace.messages:
        t_s, r_s = _airtime_s(problem.network, m.src, m.dst, m.nbytes)
        tx[m.src] += t_s
        rx[m.dst] += r_s
        by_node[m.node].append(m)
    # the latency: the slowest device of every step, plus every phase of the measured messages
    # (recorded in program order; the program only says how many belong to each phase)
    latency = sum(max(v) for v in step_busy.values())
    for step in program.steps:
        msgs = by_node.get(step.op.name, [])
        start = 0
        for res in step.inputs:
            for phase in res.phases:
                latency += _phase_s(problem.network, msgs[start : start + len(phase)])
                start += len(phase)
        assert start == len(msgs)
    devs = problem.cluster.devices
    joules = sum(
        dev.active_power_w * busy[d] + dev.tx_power_w * tx[d] + dev.rx_power_w * rx[d]
        + dev.idle_power_w * (latency - busy[d] - tx[d] - rx[d])
        for d, dev in enumerate(devs)
    )
    return busy, tx, rx, latency, joules, evaluate_program(program)


def _close(a, b, rel=1e-9):
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


@pytest.mark.parametrize("network", sorted(NETWORKS))
@pytest.mark.parametrize("name", ["tiny_chain", "tiny_residual", "inception_mini"])
def test_energy_equals_what_the_executor_computed_and_sent(name, network):
    module, shape = zoo.build(name)
    graph = iopopt.trace(module, shape)
    for k, seed in ((2, 1), (3, 2)):
        problem = iopopt.Problem(graph, power_cluster(k, seed), NETWORKS[network])
        plans = [build_plan(problem, kind) for kind in ("coedge", "all_oc")]
        plans += [build_plan(problem, "random", seed=s) for s in range(3)]
        for plan in plans:
            busy, tx, rx, latency, joules, report = measured_energy(problem, plan, module)
            assert _close(latency, report.latency_s)
            assert report.energy_j is not None and _close(joules, report.energy_j), (joules, report.energy_j)
            assert _close(joules, energy(problem, plan))  # the sum of node and edge terms the solvers read
            for d, e in enumerate(report.energy_per_device):
                assert _close(busy[d], e.busy_s) and _close(tx[d], e.tx_s) and _close(rx[d], e.rx_s)
                assert _close(latency - busy[d] - tx[d] - rx[d], e.idle_s)


def test_energy_check_can_fail():
    """A model that forgot the receive side would be caught: the oracle sees every receiver's airtime."""
    module, shape = zoo.build("tiny_chain")
    problem = iopopt.Problem(iopopt.trace(module, shape), power_cluster(2, 1), NETWORKS["shared"])
    _, _, rx, _, joules, report = measured_energy(problem, build_plan(problem, "all_oc"), module)
    assert sum(rx) > 0
    dev = problem.cluster.devices
    without_rx = report.energy_j - sum((dev[d].rx_power_w - dev[d].idle_power_w) * rx[d] for d in range(2))
    assert not _close(joules, without_rx)


def test_no_power_figures_no_energy():
    module, shape = zoo.build("tiny_chain")
    graph = iopopt.trace(module, shape)
    bare = iopopt.Problem(graph, Cluster.homogeneous(2, 1e9), NETWORKS["shared"])
    report = iopopt.evaluate(bare, build_plan(bare, "coedge"))
    assert report.energy_j is None and report.energy_per_device is None
    assert "J" not in report.summary()
    powered = iopopt.Problem(graph, power_cluster(2, 1), NETWORKS["shared"])
    assert iopopt.evaluate(powered, build_plan(powered, "coedge")).energy_j > 0


def test_switched_links_may_send_and_receive_at_once():
    """Full duplex: a device's transmit plus receive time may exceed the communication time (idle then < 0)."""
    module, shape = zoo.build("tiny_chain")
    problem = iopopt.Problem(iopopt.trace(module, shape), power_cluster(3, 2), NETWORKS["switched"])
    report = iopopt.evaluate(problem, build_plan(problem, "all_oc"))
    assert any(e.tx_s + e.rx_s > report.comm_s for e in report.energy_per_device)
    shared = iopopt.Problem(problem.graph, problem.cluster, NETWORKS["shared"])
    report = iopopt.evaluate(shared, build_plan(shared, "all_oc"))
    assert all(e.tx_s + e.rx_s <= report.comm_s * (1 + 1e-12) and e.idle_s >= 0 for e in report.energy_per_device)


# -- bad power figures -------------------------------------------------------------------


@pytest.mark.parametrize("value", [-1.0, math.inf, math.nan, "5"])
def test_a_bad_power_figure_is_one_line_naming_it(value):
    with pytest.raises(ValueError) as info:
        Device("d0", 1e9, active_power_w=5.0, idle_power_w=value, tx_power_w=2.0, rx_power_w=2.0)
    msg = str(info.value)
    assert "\n" not in msg and "idle_power_w" in msg and ">= 0" in msg and repr(value) in msg


def test_power_figures_come_as_a_set():
    with pytest.raises(ValueError, match="idle_power_w, tx_power_w, rx_power_w"):
        Device("d0", 1e9, active_power_w=5.0)
