"""The emulated device testbed: a plan measured on this machine with every rank behaving like its device.

Each rank of the distributed executor runs in a cgroup-v1 CPU quota set from
its device's speed relative to the profiled core, in a private network
namespace whose loopback links are shaped to the network preset (``tc tbf``;
shared medium or switched ports), with per-message latency emulated in the
application. Namespaces, cgroups and processes are removed when the run ends,
fails, is interrupted or killed. Needs root, the cgroup-v1 ``cpu``
controller, ``ip``/``tc``/``nsenter``; :func:`unavailable_reason` says in one
line what is missing.

Modules: ``bed`` (lifecycle, quotas), ``netns`` (namespaces and shaping),
``latency`` (emulated per-message latency), ``devices`` (cluster → quotas and
the emulated cluster), ``executor``, ``selfcheck`` (does it hold its promise).
"""

from .bed import RankPlacement, Testbed, TestbedSpec, TestbedUnavailable, cpu_period, unavailable_reason
from .devices import cpu_fractions, emulated_cluster, testbed_spec
from .executor import TestbedExecutor
from .latency import MessageLatency

__all__ = [
    "MessageLatency",
    "RankPlacement",
    "Testbed",
    "TestbedExecutor",
    "TestbedSpec",
    "TestbedUnavailable",
    "cpu_fractions",
    "cpu_period",
    "emulated_cluster",
    "testbed_spec",
    "unavailable_reason",
]
