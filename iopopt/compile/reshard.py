"""Resharding: the messages that turn one tensor distribution into another.

Direct algorithms, no relays (DESIGN §3): a device that lacks part of the
region it needs receives each missing piece from the device that holds it; a
partial sum is reduced by every holder sending its copy of the target region;
``P → R`` is a reduce-scatter followed by an all-gather.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..model.cluster import split_counts
from ..model.layouts import ChannelBlocks, Dist, Intervals, Layout, Region, full_region
from ..model.network import Message, NetworkModel

__all__ = ["Transfer", "Resharding", "reshard", "blocks"]


@dataclass(frozen=True)
class Transfer:
    """Device ``src`` sends ``region`` of a tensor to device ``dst``."""

    src: int
    dst: int
    region: Region
    nbytes: int


@dataclass(frozen=True)
class Resharding:
    """Messages that turn a producer's distribution into the one a consumer needs.

    ``phases`` run one after the other; ``staging_bytes[d]`` is the size of the
    buffer device d assembles for the consumer (0 when it reads its stored
    part as is). ``tx_s[d]`` / ``rx_s[d]``: seconds device d's network
    interface spends sending / receiving these messages
    (:meth:`~iopopt.model.network.NetworkModel.radio_s`, summed over phases);
    None when compiled without a network or the network model does not say.
    """

    src: Dist
    dst: Dist
    phases: tuple[tuple[Transfer, ...], ...]
    staging_bytes: tuple[int, ...]
    time_s: float
    tx_s: tuple[float, ...] | None = None
    rx_s: tuple[float, ...] | None = None

    @property
    def identity(self) -> bool:
        return not self.phases and not any(self.staging_bytes)

    @property
    def transfers(self) -> tuple[Transfer, ...]:
        return tuple(t for p in self.phases for t in p)

    @property
    def n_messages(self) -> int:
        return sum(len(p) for p in self.phases)

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for p in self.phases for t in p)


def blocks(counts: Sequence[int]) -> ChannelBlocks:
    """Consecutive intervals of the given sizes, one per device (empty for a zero count)."""
    out: list[Intervals] = []
    start = 0
    for c in counts:
        out.append(((start, start + c),) if c else ())
        start += c
    return tuple(out)


def reshard(
    src: Dist,
    dst: Dist,
    dtype_bytes: int,
    network: NetworkModel | None = None,
    channel_blocks: ChannelBlocks | None = None,
) -> Resharding | None:
    """Compile the messages turning ``src`` into ``dst`` (None when impossible).

    Direct algorithms, no relays: a device that lacks part of its target
    region receives each missing piece from the device that holds it; a
    partial sum is reduced by every holder sending its copy of the target
    region; ``P → R`` is a reduce-scatter over ``channel_blocks`` (per-device channel
    intervals; an even split when None) followed by an all-gather.
    """
    k = len(src.parts)
    shape = src.shape
    if dst.kind == Layout.PARTIAL:
        if src.kind != Layout.PARTIAL:
            return None
        idle = (0.0,) * k if network is not None else None
        return Resharding(src, src, (), (0,) * k, 0.0, idle, idle)
    phases: list[tuple[Transfer, ...]] = []
    staging = [0] * k
    if src.kind == Layout.PARTIAL:
        holders = src.holders()
        if dst.kind == Layout.REPLICATED:
            if channel_blocks is None:
                channel_blocks = blocks(split_counts(shape[1], [1.0] * k))
            rows = (0, shape[2]) if len(shape) == 4 else None
            regions = [Region(b, rows) if b else None for b in channel_blocks]
            p1: list[Transfer] = []
            p2: list[Transfer] = []
            for d, r in enumerate(regions):
                if r is None:
                    continue
                nb = r.elems(shape) * dtype_bytes
                p1.extend(Transfer(e, d, r, nb) for e in holders if e != d)
                p2.extend(Transfer(d, f, r, nb) for f in range(k) if f != d)
            phases = [tuple(p1), tuple(p2)]
        else:
            p1 = []
            for d, r in enumerate(dst.parts):
                if r is None or r.is_empty():
                    continue
                nb = r.elems(shape) * dtype_bytes
                p1.extend(Transfer(e, d, r, nb) for e in holders if e != d)
            phases = [tuple(p1)]
        for d, r in enumerate(dst.parts):
            if r is not None:
                staging[d] = r.elems(shape) * dtype_bytes
    else:
        p1 = []
        whole = full_region(shape)
        for d, r in enumerate(dst.parts):
            if r is None:
                continue
            own = src.parts[d]
            if own == r:
                continue
            staging[d] = r.elems(shape) * dtype_bytes
            if own is not None and own.contains(r):
                continue  # local slicing
            everything = r == whole  # then each holder sends what it holds
            for e, held in enumerate(src.parts):
                if e == d or held is None:
                    continue
                piece = (None if held.is_empty() else held) if everything else held.intersect(r)
                if piece is not None:
                    p1.append(Transfer(e, d, piece, piece.elems(shape) * dtype_bytes))
        phases = [tuple(p1)]
    phases_t = tuple(p for p in phases if p)
    time_s = 0.0
    tx: tuple[float, ...] | None = None
    rx: tuple[float, ...] | None = None
    if network is not None:
        messages = [[Message(t.src, t.dst, t.nbytes) for t in p] for p in phases_t]
        time_s = network.time(messages)
        tx, rx = _radio_s(network, messages, k)
    return Resharding(src, dst, phases_t, tuple(staging), time_s, tx, rx)


def _radio_s(
    network: NetworkModel, phases: list[list[Message]], k: int
) -> tuple[tuple[float, ...], tuple[float, ...]] | tuple[None, None]:
    """Per-device (transmit, receive) seconds over ``phases``, or (None, None) when the network does not say."""
    tx, rx = [0.0] * k, [0.0] * k
    for p in phases:
        got = network.radio_s(p, k)
        if got is None:
            return None, None
        for d in range(k):
            tx[d] += got[0][d]
            rx[d] += got[1][d]
    return tuple(tx), tuple(rx)
