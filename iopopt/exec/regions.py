"""A device's part of a tensor as a dense tensor, and copying regions in and out of it.

A device's *part* of a tensor holds its :class:`~iopopt.model.layouts.Region`:
the region's channel intervals concatenated in interval order along dim 1,
and its row interval along dim 2 (full width). For 2-D tensors (after a
flatten) dim 1 is the feature axis.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

from ..model.layouts import Region

__all__ = ["region_index", "dense_shape", "read_region", "write_region"]


@lru_cache(maxsize=8192)
def region_index(region: Region, sub: Region, ndim: int) -> tuple:
    """Index of ``sub`` inside a dense part holding ``region``.

    The channel index is a slice when ``sub``'s channels sit contiguously in
    the part, else a ``long`` tensor of positions (shared between calls: never
    modify it).
    """
    pos, offset = [], 0
    for a, b in region.ch:
        for c0, c1 in sub.ch:
            lo, hi = max(a, c0), min(b, c1)
            if lo < hi:
                pos.extend(range(offset + lo - a, offset + hi - a))
        offset += b - a
    if len(pos) != sub.n_ch:
        raise RuntimeError(f"region {sub} is not inside {region}")
    if not pos:
        ch = slice(0, 0)
    elif pos == list(range(pos[0], pos[-1] + 1)):
        ch = slice(pos[0], pos[-1] + 1)
    else:
        ch = torch.tensor(pos)
    if ndim == 4:
        r0 = sub.rows[0] - region.rows[0]
        r1 = sub.rows[1] - region.rows[0]
        if r0 < 0 or r1 > region.rows[1] - region.rows[0]:
            raise RuntimeError(f"rows of {sub} are not inside {region}")
        return (slice(None), ch, slice(r0, r1))
    return (slice(None), ch)


def dense_shape(shape: tuple[int, ...], region: Region) -> tuple[int, ...]:
    """Shape of the dense part holding ``region`` of a tensor of ``shape``."""
    if len(shape) == 4:
        return (shape[0], region.n_ch, region.n_rows, shape[3])
    return (shape[0], region.n_ch) + tuple(shape[2:])


def read_region(part: Tensor, held: Region, sub: Region) -> Tensor:
    """``sub`` out of a dense part holding ``held``: a view of ``part`` where the channels are contiguous, else a copy.

    Callers that keep the result beyond the life of ``part``, or write into
    it, must copy it; the executors only ever copy it into a buffer of their
    own (or onto the wire).
    """
    try:
        idx = region_index(held, sub, part.dim())  # checks that ``sub`` lies inside ``held``
    except RuntimeError:
        raise RuntimeError(f"a device asked to send {sub} holds only {held}") from None
    if isinstance(idx[1], Tensor):
        return part.index_select(1, idx[1])[(slice(None), slice(None)) + idx[2:]]
    return part[idx]


def write_region(buf: Tensor, region: Region, sub: Region, piece: Tensor, accumulate: bool = False) -> None:
    """Write (or add, ``accumulate=True``) ``piece``, the dense part of ``sub``, into ``buf`` holding ``region``."""
    idx = region_index(region, sub, buf.dim())
    if isinstance(idx[1], Tensor):
        tgt = buf[(slice(None), slice(None)) + idx[2:]]  # a view: index_copy_/index_add_ write through it
        if accumulate:
            tgt.index_add_(1, idx[1], piece)
        else:
            tgt.index_copy_(1, idx[1], piece)
        return
    if accumulate:
        buf[idx] += piece
    else:
        buf[idx] = piece
