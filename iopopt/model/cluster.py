"""Devices, clusters and how work is split among them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Device", "Cluster", "split_counts", "SPLIT_POLICIES"]

SPLIT_POLICIES = ("proportional", "equal")


def _positive(owner: str, field_name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{owner}: {field_name} must be a positive finite number, got {value!r}")


@dataclass(frozen=True)
class Device:
    """One device of a cluster.

    Parameters
    ----------
    name : str
        Unique name within its cluster.
    flops_per_s : float
        Sustained compute throughput, FLOP/s.
    memory_bytes : float
        Memory available for weights and activations, bytes.
    op_overhead_s : float
        Fixed cost of running one operator (kernel launch, framework), seconds.
    """

    name: str
    flops_per_s: float
    memory_bytes: float = float("inf")
    op_overhead_s: float = 0.0

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Device: name must be a non-empty string, got {self.name!r}")
        _positive(f"Device {self.name!r}", "flops_per_s", self.flops_per_s)
        if not (isinstance(self.memory_bytes, (int, float)) and self.memory_bytes > 0):
            raise ValueError(f"Device {self.name!r}: memory_bytes must be positive, got {self.memory_bytes!r}")
        if not (isinstance(self.op_overhead_s, (int, float)) and self.op_overhead_s >= 0):
            raise ValueError(f"Device {self.name!r}: op_overhead_s must be >= 0, got {self.op_overhead_s!r}")

    def compute_s(self, flops: float) -> float:
        """Seconds this device takes for ``flops`` FLOPs of one operator (work plus the per-op overhead).

        The one function that prices compute: the cost terms, and through them
        every solver, report and timeline, call it.
        """
        return flops / self.flops_per_s + self.op_overhead_s


@dataclass(frozen=True)
class Cluster:
    """k devices; ``host`` holds the input image and must end holding the output.

    ``split`` chooses how channel and row splits share work:
    ``proportional`` (to ``flops_per_s``) or ``equal``.
    """

    devices: tuple[Device, ...]
    host: int = 0
    split: str = "proportional"
    name: str = ""

    def __post_init__(self):
        object.__setattr__(self, "devices", tuple(self.devices))
        if not self.devices:
            raise ValueError("Cluster: devices must not be empty")
        for d in self.devices:
            if not isinstance(d, Device):
                raise ValueError(f"Cluster: devices must be Device objects, got {d!r}")
        names = [d.name for d in self.devices]
        if len(set(names)) != len(names):
            raise ValueError(f"Cluster: device names must be unique, got {names}")
        if isinstance(self.host, bool) or not isinstance(self.host, int) or not 0 <= self.host < len(self.devices):
            raise ValueError(f"Cluster: host must be a device index in [0, {len(self.devices) - 1}], got {self.host!r}")
        if self.split not in SPLIT_POLICIES:
            raise ValueError(f"Cluster: split must be one of {SPLIT_POLICIES}, got {self.split!r}")

    @property
    def k(self) -> int:
        return len(self.devices)

    @property
    def total_flops_per_s(self) -> float:
        return sum(d.flops_per_s for d in self.devices)

    def weights(self) -> tuple[float, ...]:
        """Share weights of the devices under the cluster's split policy."""
        if self.split == "equal":
            return (1.0,) * self.k
        return tuple(d.flops_per_s for d in self.devices)

    def counts(self, n: int) -> tuple[int, ...]:
        """Integer shares of ``n`` items (channels, rows) per device."""
        return split_counts(n, self.weights())

    @classmethod
    def homogeneous(cls, k: int, flops_per_s: float, memory_bytes: float = float("inf"), **kw: Any) -> Cluster:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"Cluster.homogeneous: k must be a positive integer, got {k!r}")
        op_overhead_s = kw.pop("op_overhead_s", 0.0)
        devs = tuple(Device(f"d{i}", flops_per_s, memory_bytes, op_overhead_s) for i in range(k))
        return cls(devs, **kw)


def split_counts(n: int, weights: Sequence[float]) -> tuple[int, ...]:
    """Split ``n`` items in proportion to ``weights`` by largest remainder.

    Ties in the remainder go to the lower device index. A device may get zero.

    >>> split_counts(10, [1, 1, 1])
    (4, 3, 3)
    >>> split_counts(2, [1, 1, 1, 1])
    (1, 1, 0, 0)
    """
    if n < 0:
        raise ValueError(f"split_counts: n must be >= 0, got {n}")
    total = float(sum(weights))
    if total <= 0:
        raise ValueError(f"split_counts: weights must have a positive sum, got {list(weights)}")
    quotas = [n * w / total for w in weights]
    counts = [int(math.floor(q + 1e-12)) for q in quotas]
    rest = n - sum(counts)
    order = sorted(range(len(weights)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in order[:rest]:
        counts[i] += 1
    return tuple(counts)
