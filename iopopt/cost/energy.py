"""Energy per inference (DESIGN §4): a sum of node and edge terms, as latency is.

Each device d has power figures (watts): ``active`` while computing,
``idle``, ``tx`` / ``rx`` while its network interface sends / receives. Over
one inference of latency T, d computes for ``busy_d`` seconds (the sum of its
compute time over the operators it takes part in), transmits for ``tx_d`` and
receives for ``rx_d`` seconds (what the network model says its interface is
busy with, :meth:`~iopopt.model.network.NetworkModel.radio_s`), and idles
otherwise:

    E = Σ_d [ P_active·busy_d + P_tx·tx_d + P_rx·rx_d + P_idle·(T − busy_d − tx_d − rx_d) ]
      = Σ_d [ P_idle·T + (P_active − P_idle)·busy_d + (P_tx − P_idle)·tx_d + (P_rx − P_idle)·rx_d ]

The second form is how it is computed: the idle draw is the baseline over the
whole inference and each activity adds its increment. It stays linear in the
plan's terms even where activities overlap: on a switched (full-duplex)
network a device may send and receive at once, so ``idle_d = T − busy_d −
tx_d − rx_d`` may be negative there; both increments are then paid for the
overlap, which is what a full-duplex interface draws. Execution is
layer-synchronous, so computing never overlaps communication, and on a shared
medium transmit plus receive never exceeds the communication time.

Every device idles for the whole inference, including one that computes
nothing: it is part of the cluster and powered.

Since T, busy_d, tx_d and rx_d are sums over nodes and edges, so is E: a node
term contributes ``Σ_d P_idle,d · compute_s + Σ_d (P_active,d − P_idle,d) ·
device_compute_s[d]`` and an edge term ``Σ_d P_idle,d · time_s + Σ_d
(P_tx,d − P_idle,d) · tx_s[d] + (P_rx,d − P_idle,d) · rx_s[d]``
(:func:`node_energy_j`, :func:`edge_energy_j`). That is what makes energy as
exact as latency in the ILP.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

from ..compile.program import Program
from ..compile.reshard import Resharding
from ..compile.terms import NodeTerm, terms
from ..model.cluster import Cluster
from ..model.problem import Problem

__all__ = ["DeviceEnergy", "PowerIncrements", "power_increments", "node_energy_j", "edge_energy_j",
           "energy_profile", "energy"]


@dataclass(frozen=True)
class DeviceEnergy:
    """One device over one inference: seconds computing, sending, receiving, idle, and joules.

    ``idle_s = T − busy_s − tx_s − rx_s`` (negative only where a full-duplex
    link sends and receives at once; see the module docstring).
    """

    name: str
    busy_s: float
    tx_s: float
    rx_s: float
    idle_s: float
    energy_j: float


@dataclass(frozen=True)
class PowerIncrements:
    """A cluster's power figures as the energy formula uses them (watts).

    ``idle_w``: the summed idle draw of every device (the baseline over the
    inference); ``active_w[d]``, ``tx_w[d]``, ``rx_w[d]``: device d's draw in
    that state minus its idle draw.
    """

    idle_w: float
    active_w: tuple[float, ...]
    tx_w: tuple[float, ...]
    rx_w: tuple[float, ...]


@functools.lru_cache(maxsize=64)
def power_increments(cluster: Cluster) -> PowerIncrements | None:
    """The cluster's :class:`PowerIncrements`, or None when some device has no power figures."""
    if not cluster.has_power:
        return None
    devs = cluster.devices
    idle = [float(d.idle_power_w or 0.0) for d in devs]
    return PowerIncrements(
        idle_w=sum(idle),
        active_w=tuple(float(d.active_power_w or 0.0) - i for d, i in zip(devs, idle)),
        tx_w=tuple(float(d.tx_power_w or 0.0) - i for d, i in zip(devs, idle)),
        rx_w=tuple(float(d.rx_power_w or 0.0) - i for d, i in zip(devs, idle)),
    )


def node_energy_j(power: PowerIncrements, term: NodeTerm) -> float:
    """Joules of a node term: the idle baseline over its compute time plus each device's active increment."""
    inc = sum(a * s for a, s in zip(power.active_w, term.device_compute_s))
    return power.idle_w * term.compute_s + inc


def edge_energy_j(power: PowerIncrements, res: Resharding) -> float | None:
    """Joules of an edge term (None when the network model gives no radio times)."""
    if res.tx_s is None or res.rx_s is None:
        return None
    inc = sum(w * s for w, s in zip(power.tx_w, res.tx_s)) + sum(w * s for w, s in zip(power.rx_w, res.rx_s))
    return power.idle_w * res.time_s + inc


def energy_profile(program: Program, latency_s: float) -> tuple[float, tuple[DeviceEnergy, ...]] | None:
    """Total joules and each device's :class:`DeviceEnergy` of a compiled plan of latency ``latency_s``.

    None when a device has no power figures or the network model gives no
    radio times: energy is then unknown, not zero.
    """
    cluster = program.problem.cluster
    if power_increments(cluster) is None:
        return None
    k = cluster.k
    busy, tx, rx = [0.0] * k, [0.0] * k, [0.0] * k
    for step in program.steps:
        for d, s in enumerate(step.term.device_compute_s):
            busy[d] += s
        for res in step.inputs:
            if res.tx_s is None or res.rx_s is None:
                return None
            for d in range(k):
                tx[d] += res.tx_s[d]
                rx[d] += res.rx_s[d]
    per_device = []
    for d, dev in enumerate(cluster.devices):
        p_idle = float(dev.idle_power_w or 0.0)
        joules = (
            p_idle * latency_s
            + (float(dev.active_power_w or 0.0) - p_idle) * busy[d]
            + (float(dev.tx_power_w or 0.0) - p_idle) * tx[d]
            + (float(dev.rx_power_w or 0.0) - p_idle) * rx[d]
        )
        per_device.append(DeviceEnergy(dev.name, busy[d], tx[d], rx[d], latency_s - busy[d] - tx[d] - rx[d], joules))
    return sum(e.energy_j for e in per_device), tuple(per_device)


def energy(problem: Problem, plan: Mapping[str, str]) -> float | None:
    """Just the energy (joules), summed straight from the cached node and edge terms (no validation).

    None when energy is unknown (no power figures, or no radio times);
    ``inf`` for an infeasible edge, as :func:`~iopopt.cost.evaluate.latency` does.
    """
    power = power_increments(problem.cluster)
    if power is None:
        return None
    t = terms(problem)
    total = 0.0
    for op in problem.graph:
        s = plan[op.name]
        for i, src in enumerate(op.inputs):
            e = t.edge(src, op.name, i, plan[src], s)
            if e is None:
                return float("inf")
            joules = edge_energy_j(power, e)
            if joules is None:
                return None
            total += joules
        total += node_energy_j(power, t.node(op.name, s))
    return total
