"""The resharding assembler both executors share: each device's input buffer for a consumer.

A :class:`~iopopt.compile.reshard.Resharding` says which pieces of a tensor
travel (its ``phases`` of :class:`~iopopt.compile.reshard.Transfer` s) to turn
the producer's distribution ``src`` into the one the consumer needs, ``dst``.
:func:`assemble` carries it out for the devices one process runs -- all k in
the simulated executor, its own rank in the distributed one -- from their own
stored parts only, and a *transport* that moves the pieces:

* the simulated executor's hands each piece over from the sender's store
  to the receiver and records every message
  (:class:`iopopt.exec.simulated.SimulatedExecutor`);
* the distributed executor's posts ``dist.isend`` / ``dist.irecv`` and waits
  (:mod:`iopopt.exec.distributed.rank`).

Buffers, per layout pair (DESIGN §3):

* **identity** -- a device whose stored part is exactly the region it needs
  reads its stored part as is (no buffer);
* **non-partial → non-partial** -- a staging buffer holding the needed
  region, written by local slicing of the device's own part and by the pieces
  it receives, in transfer order (a device that holds nothing of the tensor
  and receives its whole region in one piece uses that piece as its buffer);
  a window wholly in the padding gets an empty buffer;
* **P → P** -- every holder reads its stored partial;
* **P → H / C / S** (reduce, reduce-scatter) -- the device's own partial of
  its region plus the received partials, added in transfer order;
* **P → R** -- reduce-scatter (phase 1: each device sums its block), then
  all-gather (phase 2: each device sends its reduced block, read from its
  staging buffer, to every other).

A staging buffer region that nothing writes stays NaN, so a missing message
shows up as a wrong number. The NaN fill is skipped only where it is proven
useless: when the regions planned to be written (own slice plus every piece
addressed to the device) are pairwise disjoint, inside the buffer and as large
as it, every element is written -- and a piece the transport then fails to
deliver has its region set to NaN instead. Sums start from the device's own
partial (or zeros when it holds none), so a missing partial leaves its term
out.

Aliasing: pieces are read as views of the sender's stored part (or, for the
all-gather, of its reduced block). The buffers returned are a device's own
stored part (identity, P → P), a fresh tensor allocated here, or a piece used
whole -- in the simulated executor a view of the sender's stored part, in the
distributed one the receive buffer. Writes go only into buffers allocated
here, while they are assembled; nothing writes into a stored part, and the
executors never write into a buffer or a stored part in place afterwards (the
kernels build new tensors), so the views are safe.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

import torch
from torch import Tensor

from ..compile.reshard import Resharding, Transfer
from ..model.layouts import Region
from .regions import dense_shape, read_region, write_region

__all__ = ["Assembly", "Transport", "assemble"]


class Transport(Protocol):
    """Moves the pieces of one phase between the devices of the Program."""

    def exchange(
        self, phase: int, transfers: Sequence[Transfer], read: Callable[[Transfer], Tensor]
    ) -> dict[int, Tensor | None]:
        """Deliver phase ``phase`` (index in ``Resharding.phases``) of the current resharding.

        For each transfer this process sends (its ``src`` is a local device),
        ``read(t)`` gives the piece to send (a view: copy it before keeping
        it). Returns, by index in ``transfers``, the piece of every transfer
        this process receives (its ``dst`` is local): a dense tensor of
        ``t.region``, or None when it was not delivered.
        """
        ...


@dataclass
class Assembly:
    """What :func:`assemble` built for the local devices.

    ``buffers[d]``: device d's buffer of the consumer's region (None where it
    needs nothing); ``allocated[d]``: the staging buffers d holds for it
    beyond its store -- allocated here, or a received piece used whole (what
    the memory accounting counts).
    """

    buffers: dict[int, Tensor | None]
    allocated: dict[int, list[Tensor]] = field(default_factory=dict)


def assemble(
    res: Resharding,
    devices: Sequence[int],
    stored: Mapping[int, Tensor | None],
    transport: Transport,
    dtype: torch.dtype,
    step: str = "",
    tensor: str = "",
) -> Assembly:
    """Each local device's buffer of ``res.dst`` for the consumer.

    Parameters
    ----------
    res : Resharding
        The consumer's input edge.
    devices : sequence of int
        The devices this process runs.
    stored : mapping
        Device → its stored part of the source tensor (None or absent where it
        holds nothing).
    transport : Transport
        Moves the pieces (see :class:`Transport`).
    dtype : torch.dtype
        dtype of the buffers allocated.
    step, tensor : str
        Consumer and source tensor names, for error messages.
    """
    src, dst = res.src, res.dst
    for d in devices:
        if src.parts[d] is not None and stored.get(d) is None:
            raise RuntimeError(f"device {d} lost its part of {tensor!r} before step {step!r}")
    if dst.kind == "P":
        if src.kind != "P":
            raise RuntimeError(f"step {step!r}: a partial input cannot come from layout {src.kind}")
        return Assembly({d: stored.get(d) for d in devices})
    ctx = _Context(res, tuple(devices), stored, transport, dtype, step, tensor)
    if src.kind != "P":
        return ctx.regather()
    if dst.kind == "R":
        return ctx.all_reduce()
    return ctx.reduce()


@lru_cache(maxsize=4096)
def _covers(need: Region, regions: tuple[Region, ...], shape: tuple[int, ...]) -> bool:
    """True when ``regions`` are pairwise disjoint, inside ``need`` and fill it (a sufficient proof of coverage)."""
    if sum(r.elems(shape) for r in regions) != need.elems(shape):
        return False
    for i, r in enumerate(regions):
        if not need.contains(r) or any(r.intersect(q) is not None for q in regions[:i]):
            return False
    return True


@dataclass
class _Context:
    res: Resharding
    devices: tuple[int, ...]
    stored: Mapping[int, Tensor | None]
    transport: Transport
    dtype: torch.dtype
    step: str
    tensor: str

    # -- helpers ----------------------------------------------------------------------------------
    def _read_stored(self, t: Transfer) -> Tensor:
        held, part = self.res.src.parts[t.src], self.stored.get(t.src)
        if held is None or part is None:
            raise RuntimeError(
                f"step {self.step!r}: device {t.src} must send {t.region} of {self.tensor!r} but holds nothing"
            )
        return read_region(part, held, t.region)

    def _receive(self, phase: int, read) -> list[tuple[Transfer, Tensor | None]]:
        """Exchange one phase; the local receptions in transfer order."""
        transfers = self.res.phases[phase]
        got = self.transport.exchange(phase, transfers, read)
        local = set(self.devices)
        return [(t, got.get(j)) for j, t in enumerate(transfers) if t.dst in local]

    def _empty(self, region: Region) -> Tensor:
        return torch.empty(dense_shape(self.res.src.shape, region), dtype=self.dtype)

    def _nan(self, region: Region) -> Tensor:
        return torch.full(dense_shape(self.res.src.shape, region), math.nan, dtype=self.dtype)

    def _staging(self, need: Region, planned: Sequence[Region]) -> tuple[Tensor, bool]:
        """A buffer for ``need``; NaN-filled unless ``planned`` provably covers it (second value: covered)."""
        if _covers(need, tuple(planned), tuple(self.res.src.shape)):
            return self._empty(need), True
        return self._nan(need), False

    def _slice(self, d: int, region: Region) -> Tensor:
        """A fresh buffer holding ``region`` of device d's stored part (never a view of it)."""
        buf = self._empty(region)
        if not region.is_empty():
            buf.copy_(read_region(self.stored[d], self.res.src.parts[d], region))
        return buf

    # -- non-partial → non-partial -------------------------------------------------------------------
    def regather(self) -> Assembly:
        src, dst = self.res.src, self.res.dst
        pieces: dict[int, list] = {d: [] for d in self.devices}
        for ph in range(len(self.res.phases)):
            for t, piece in self._receive(ph, self._read_stored):
                if dst.parts[t.dst] is None:
                    raise RuntimeError(f"step {self.step!r}: device {t.dst} receives {t.region} it does not need")
                pieces[t.dst].append((t.region, piece))
        out = Assembly({})
        for d in self.devices:
            need, own = dst.parts[d], src.parts[d]
            if need is None:
                out.buffers[d] = None
                continue
            if not pieces[d]:
                if own == need:  # identity: the stored part as is
                    out.buffers[d] = self.stored[d]
                    continue
                if not need.is_empty() and (own is None or not own.contains(need)):
                    raise RuntimeError(
                        f"step {self.step!r}: device {d} needs {need} of {self.tensor!r} and receives nothing"
                    )
                buf = self._slice(d, need)  # local slicing (or an empty window wholly in the padding)
            elif own is None and len(pieces[d]) == 1 and pieces[d][0][0] == need and pieces[d][0][1] is not None:
                buf = pieces[d][0][1]  # one piece is the whole buffer: used as received, not copied
            else:
                inter = own.intersect(need) if own is not None else None
                mine = [inter] if inter is not None else []
                buf, covered = self._staging(need, mine + [r for r, _ in pieces[d]])
                if inter is not None:
                    write_region(buf, need, inter, read_region(self.stored[d], own, inter))
                for r, piece in pieces[d]:
                    if piece is not None:
                        write_region(buf, need, r, piece)
                    elif covered:  # not delivered: its region must stay unfilled
                        write_region(buf, need, r, self._nan(r))
            out.buffers[d] = buf
            out.allocated[d] = [buf]
        return out

    # -- P → R: reduce-scatter, then all-gather of the reduced blocks --------------------------------
    def all_reduce(self) -> Assembly:
        src, dst = self.res.src, self.res.dst
        phases = self.res.phases
        n_phases = len(phases)
        gather = phases[-1] if phases else ()
        reduce = phases[0] if n_phases == 2 else ()
        blocks: dict[int, Region] = {}  # device → the block it reduces
        for t in reduce:
            blocks[t.dst] = t.region
        for t in gather:
            blocks[t.src] = t.region
        if not phases:  # a single device: its partial is the whole sum
            for d, r in enumerate(dst.parts):
                if r is not None and src.parts[d] is not None:
                    blocks[d] = r
        out = Assembly({})
        covered: dict[int, bool] = {}
        for d in self.devices:
            need = dst.parts[d]
            if need is None:
                out.buffers[d] = None
                continue
            planned = ([blocks[d]] if d in blocks else []) + [t.region for t in gather if t.dst == d]
            buf, covered[d] = self._staging(need, planned)
            if d in blocks:  # phase 1 starts from the device's own partial of its block
                block = blocks[d]
                if src.parts[d] is not None:
                    write_region(buf, need, block, read_region(self.stored[d], src.parts[d], block))
                else:
                    write_region(buf, need, block, torch.zeros(dense_shape(src.shape, block), dtype=self.dtype))
            out.buffers[d] = buf
            out.allocated[d] = [buf]
        if reduce:
            for t, piece in self._receive(0, self._read_stored):
                if piece is not None:
                    write_region(out.buffers[t.dst], dst.parts[t.dst], t.region, piece, accumulate=True)
        if gather:

            def read_reduced(t: Transfer) -> Tensor:
                # a sender reads its own block only, which no reception of this phase writes: reading it live is exact
                if t.src not in blocks or not blocks[t.src].contains(t.region):
                    raise RuntimeError(f"step {self.step!r}: device {t.src} sends {t.region} it has not reduced")
                return read_region(out.buffers[t.src], dst.parts[t.src], t.region)

            for t, piece in self._receive(n_phases - 1, read_reduced):
                buf = out.buffers[t.dst]
                if piece is not None:
                    write_region(buf, dst.parts[t.dst], t.region, piece)
                elif covered[t.dst]:
                    write_region(buf, dst.parts[t.dst], t.region, self._nan(t.region))
        return out

    # -- P → H / C / S: reduce (or reduce-scatter) in transfer order -------------------------------
    def reduce(self) -> Assembly:
        src, dst = self.res.src, self.res.dst
        terms: dict[int, list[tuple[Region, Tensor]]] = {}
        for d in self.devices:
            need = dst.parts[d]
            if need is not None and src.parts[d] is not None:
                terms[d] = [(need, read_region(self.stored[d], src.parts[d], need))]
            elif need is not None:
                terms[d] = []
        for ph in range(len(self.res.phases)):
            for t, piece in self._receive(ph, self._read_stored):
                if t.dst not in terms:
                    raise RuntimeError(f"step {self.step!r}: device {t.dst} receives a partial it does not need")
                if piece is not None:
                    terms[t.dst].append((t.region, piece))
        out = Assembly({d: None for d in self.devices})
        for d, ts in terms.items():
            need = dst.parts[d]
            whole = [p for r, p in ts if r == need]
            if len(whole) == len(ts) >= 2:  # the first two terms added into the new buffer, the others onto it
                buf = torch.add(whole[0], whole[1])
                for p in whole[2:]:
                    buf.add_(p)
            else:
                buf = torch.zeros(dense_shape(src.shape, need), dtype=self.dtype)
                for r, p in ts:
                    write_region(buf, need, r, p, accumulate=True)
            out.buffers[d] = buf
            out.allocated[d] = [buf]
        return out
