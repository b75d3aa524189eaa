"""Network models: turn one phase of messages into seconds.

A phase is a set of messages that may travel at the same time. The models are
deliberately simple and closed-form so that the cost of a resharding is a fixed
number per (edge, strategy pair), which keeps the ILP exact.

For energy (DESIGN §4) each model also says how long every device's network
interface is busy sending and receiving in a phase (:meth:`NetworkModel.radio_s`),
again a sum over messages, so a device's transmit and receive time is a sum
of edge terms:

- ``shared`` (one medium): a message occupies the medium for its airtime
  ``latency_s + nbytes / bandwidth``; its sender transmits and its receiver
  receives for that airtime. Messages serialise, so a device's transmit plus
  receive time never exceeds the phase's duration.
- ``switched`` (a full-duplex link per device): a device transmits for the
  serialisation time of what it sends on its own link plus ``latency_s`` per
  message, ``Σ_sent (latency_s + nbytes / B_d)``, and receives likewise for
  what arrives on its link. Each is at most the phase's duration, but a
  device may send and receive at once (full duplex), so transmit plus receive
  may exceed it.

Both models also take ``message_overhead_s``: an endpoint's own work per
message (its software stack, waking the thread that waits for it; LogP's
*o*), which the devices pay in parallel, each for the messages it sends or
receives, and which does not occupy the medium. A phase takes that times the
most messages any one device sends or receives, on top of the medium's time.
It is not radio time. It defaults to 0: the presets fold a host's cost into
``latency_s``; the testbed's prediction sets it to what ``iopopt profile``
measured for a message between ranks of this machine.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .ranges import range_error

__all__ = ["Message", "NetworkModel", "SharedNetwork", "SwitchedNetwork", "NETWORKS", "make_network"]


@dataclass(frozen=True)
class Message:
    """``nbytes`` bytes sent from device index ``src`` to device index ``dst``."""

    src: int
    dst: int
    nbytes: int


def _check(owner: str, name: str, value: object, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= 0 if allow_zero else value > 0)  # type: ignore[operator]  # a number by now
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{owner}: {name} must be a finite number {bound}, got {value!r}")
    if (bad := range_error(name.partition("[")[0], value, name)) is not None:
        raise ValueError(f"{owner}: {bad}")


def _most_per_device(messages: Sequence[Message]) -> int:
    """The most messages any one device sends, or receives, in ``messages``."""
    sent = Counter(m.src for m in messages)
    recv = Counter(m.dst for m in messages)
    return max(max(sent.values(), default=0), max(recv.values(), default=0))


class NetworkModel(ABC):
    """Maps the messages of one communication phase to a duration in seconds."""

    name: str = "network"
    message_overhead_s: float = 0.0

    @abstractmethod
    def phase_time(self, messages: Sequence[Message]) -> float:
        """Seconds for all ``messages`` of one phase to arrive."""

    def time(self, phases: Iterable[Sequence[Message]]) -> float:
        """Seconds for phases that run one after the other."""
        return sum(self.phase_time(p) for p in phases if p)

    def radio_s(self, messages: Sequence[Message], k: int) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """Seconds each of ``k`` devices spends sending and receiving ``messages`` (one phase).

        Returns ``(tx_s, rx_s)``, one entry per device, or None when the model
        does not say (then a plan's energy is unknown). The default says nothing.
        """
        return None


@dataclass(frozen=True)
class SharedNetwork(NetworkModel):
    """One collision domain (e.g. Wi-Fi): transfers serialize.

    T = Σ_m (latency_s + nbytes_m / bandwidth_bytes_per_s) + message_overhead_s · max_d msgs_d

    >>> SharedNetwork(100.0, 0.5).phase_time([Message(0, 1, 100), Message(2, 1, 50)])
    2.5
    >>> SharedNetwork(100.0, 0.5, message_overhead_s=0.25).phase_time([Message(0, 1, 100), Message(2, 1, 50)])
    3.0
    """

    bandwidth_bytes_per_s: float
    latency_s: float = 0.0
    name: str = "shared"
    message_overhead_s: float = 0.0

    def __post_init__(self):
        _check("SharedNetwork", "bandwidth_bytes_per_s", self.bandwidth_bytes_per_s)
        _check("SharedNetwork", "latency_s", self.latency_s, allow_zero=True)
        _check("SharedNetwork", "message_overhead_s", self.message_overhead_s, allow_zero=True)

    def phase_time(self, messages: Sequence[Message]) -> float:
        total = sum(m.nbytes for m in messages)
        hosts = self.message_overhead_s * _most_per_device(messages) if self.message_overhead_s else 0.0
        return len(messages) * self.latency_s + total / self.bandwidth_bytes_per_s + hosts

    def radio_s(self, messages: Sequence[Message], k: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The sender transmits and the receiver receives for each message's airtime, ``latency_s + nbytes / B``.

        >>> SharedNetwork(100.0, 0.5).radio_s([Message(0, 1, 100), Message(2, 1, 50)], 3)
        ((1.5, 0.0, 1.0), (0.0, 2.5, 0.0))
        """
        tx, rx = [0.0] * k, [0.0] * k
        for m in messages:
            air = self.latency_s + m.nbytes / self.bandwidth_bytes_per_s
            tx[m.src] += air
            rx[m.dst] += air
        return tuple(tx), tuple(rx)


@dataclass(frozen=True)
class SwitchedNetwork(NetworkModel):
    """Full-duplex link per device to a switch.

    T = (latency_s + message_overhead_s) · max_d msgs_d + max_d max(sent_d, recv_d) / B_d,
    where msgs_d = max(messages sent by d, messages received by d) and B_d is
    the device's link bandwidth (``device_bandwidths`` or the common
    ``bandwidth_bytes_per_s``).
    """

    bandwidth_bytes_per_s: float
    latency_s: float = 0.0
    device_bandwidths: tuple[float, ...] | None = None
    name: str = "switched"
    message_overhead_s: float = 0.0

    def __post_init__(self):
        _check("SwitchedNetwork", "bandwidth_bytes_per_s", self.bandwidth_bytes_per_s)
        _check("SwitchedNetwork", "latency_s", self.latency_s, allow_zero=True)
        _check("SwitchedNetwork", "message_overhead_s", self.message_overhead_s, allow_zero=True)
        if self.device_bandwidths is not None:
            object.__setattr__(self, "device_bandwidths", tuple(self.device_bandwidths))
            for i, b in enumerate(self.device_bandwidths):
                _check("SwitchedNetwork", f"device_bandwidths[{i}]", b)

    def _bw(self, d: int) -> float:
        if self.device_bandwidths is None or d >= len(self.device_bandwidths):
            return self.bandwidth_bytes_per_s
        return self.device_bandwidths[d]

    def phase_time(self, messages: Sequence[Message]) -> float:
        if not messages:
            return 0.0
        sent_b: Counter[int] = Counter()
        recv_b: Counter[int] = Counter()
        for m in messages:
            sent_b[m.src] += m.nbytes
            recv_b[m.dst] += m.nbytes
        transfer = max(max(sent_b[d], recv_b[d]) / self._bw(d) for d in sent_b.keys() | recv_b.keys())
        return (self.latency_s + self.message_overhead_s) * _most_per_device(messages) + transfer

    def radio_s(self, messages: Sequence[Message], k: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """A device transmits ``latency_s + nbytes / B_d`` per message it sends on its link, receives likewise.

        >>> SwitchedNetwork(100.0, 0.5).radio_s([Message(0, 1, 100), Message(2, 1, 50)], 3)
        ((1.5, 0.0, 1.0), (0.0, 2.5, 0.0))
        """
        tx, rx = [0.0] * k, [0.0] * k
        for m in messages:
            tx[m.src] += self.latency_s + m.nbytes / self._bw(m.src)
            rx[m.dst] += self.latency_s + m.nbytes / self._bw(m.dst)
        return tuple(tx), tuple(rx)


NETWORKS = {"shared": SharedNetwork, "switched": SwitchedNetwork}


def make_network(kind: str, **settings: Any) -> NetworkModel:
    """Build a network model by name (``shared`` or ``switched``)."""
    try:
        cls = NETWORKS[kind]
    except KeyError:
        raise ValueError(f"unknown network model {kind!r}; valid: {sorted(NETWORKS)}") from None
    return cls(**settings)
