"""From a cluster to CPU quotas, and back: the cluster the testbed actually emulates.

A device's CPU fraction is its conv rate over the profiled core's
(``iopopt profile``; one torch thread per rank). If the fractions add up to
more than the cores there are, or one exceeds a core, every device is
scaled down by the same factor (``scale`` < 1, recorded), so ranks never
compete for cores. The *emulated cluster* is the profiled core with every
rate multiplied by the device's fraction and the per-operator overhead
divided by it: the cost model on it predicts what the testbed should measure.
"""

from __future__ import annotations

import dataclasses
import os

from ...model.cluster import POWER_FIELDS, Cluster, Device
from ...model.network import NetworkModel, SharedNetwork, SwitchedNetwork
from .bed import TestbedSpec

__all__ = ["cpu_fractions", "emulated_cluster", "testbed_spec"]

#: The figures of a device that are rates: an emulated device has each times its CPU fraction (not cache_bytes).
_SCALED = ("memory_bandwidth_bytes_per_s", "dram_bytes_per_s", "weight_bytes_per_s")


def cpu_fractions(cluster: Cluster, core: Device, cores: float | None = None) -> tuple[tuple[float, ...], float]:
    """Per device, the share of one core that makes the profiled ``core`` as fast as it; and the common scale.

    >>> from iopopt.model.cluster import Cluster, Device
    >>> cpu_fractions(Cluster((Device("a", 2e9), Device("b", 1e9))), Device("core", 1e10), cores=2)
    ((0.2, 0.1), 1.0)
    >>> cpu_fractions(Cluster((Device("a", 2e10), Device("b", 2e10))), Device("core", 1e10), cores=2)
    ((1.0, 1.0), 0.5)
    """
    cores = float(cores if cores is not None else (os.cpu_count() or 1))
    raw = [d.flops_per_s / core.flops_per_s for d in cluster.devices]
    scale = min(1.0, cores / sum(raw), 1.0 / max(raw))
    return tuple(f * scale for f in raw), scale


def emulated_cluster(cluster: Cluster, core: Device, fractions: tuple[float, ...]) -> Cluster:
    """The cluster the testbed emulates: ``core`` scaled by each fraction (names, memory, power of ``cluster``)."""
    devices = []
    for dev, f in zip(cluster.devices, fractions):
        devices.append(
            dataclasses.replace(
                core,
                name=dev.name,
                flops_per_s=core.flops_per_s * f,
                kind_flops_per_s={k: v * f for k, v in core.kind_flops_per_s.items()},
                kind_bytes_per_s={k: v * f for k, v in core.kind_bytes_per_s.items()},
                **{key: None if getattr(core, key) is None else getattr(core, key) * f for key in _SCALED},
                op_overhead_s=core.op_overhead_s / f,
                memory_bytes=dev.memory_bytes,
                **{key: getattr(dev, key) for key in POWER_FIELDS},
            )
        )
    return dataclasses.replace(cluster, devices=tuple(devices), name=f"{cluster.name or 'cluster'}@testbed")


def testbed_spec(cluster: Cluster, network: NetworkModel, core: Device,
                 cores: float | None = None) -> tuple[TestbedSpec, float]:
    """The :class:`TestbedSpec` emulating ``cluster`` on ``network``, and the scale of the CPU fractions."""
    fractions, scale = cpu_fractions(cluster, core, cores)
    if isinstance(network, SharedNetwork):
        topology = "shared"
    elif isinstance(network, SwitchedNetwork):
        if network.device_bandwidths is not None and len(set(network.device_bandwidths)) > 1:
            raise ValueError("the testbed shapes every switched link alike; per-device bandwidths "
                             f"{network.device_bandwidths} are not supported")
        topology = "switched"
    else:
        raise ValueError(f"the testbed emulates SharedNetwork and SwitchedNetwork, not {type(network).__name__}")
    spec = TestbedSpec(k=cluster.k, cpu_fractions=fractions, topology=topology,
                       bandwidth_bytes_per_s=network.bandwidth_bytes_per_s, latency_s=network.latency_s)
    return spec, scale
