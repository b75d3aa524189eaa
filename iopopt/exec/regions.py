"""A device's part of a tensor as a dense tensor, and copying regions in and out of it.

A device's *part* of a tensor holds its :class:`~iopopt.model.layouts.Region`:
the region's channel intervals concatenated in interval order along dim 1,
and its row interval along dim 2 (full width). For 2-D tensors (after a
flatten) dim 1 is the feature axis.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..model.layouts import Region

__all__ = ["region_index", "dense_shape", "read_region", "write_region"]


def region_index(region: Region, sub: Region, ndim: int) -> tuple:
    """Index of ``sub`` inside a dense part holding ``region``."""
    pos, offset = [], 0
    for a, b in region.ch:
        for c0, c1 in sub.ch:
            lo, hi = max(a, c0), min(b, c1)
            if lo < hi:
                pos.extend(range(offset + lo - a, offset + hi - a))
        offset += b - a
    if len(pos) != sub.n_ch:
        raise RuntimeError(f"region {sub} is not inside {region}")
    ch = slice(pos[0], pos[-1] + 1) if pos == list(range(pos[0], pos[-1] + 1)) else torch.tensor(pos)
    if ndim == 4:
        r0 = sub.rows[0] - region.rows[0]
        r1 = sub.rows[1] - region.rows[0]
        if r0 < 0 or r1 > region.rows[1] - region.rows[0]:
            raise RuntimeError(f"rows of {sub} are not inside {region}")
        return (slice(None), ch, slice(r0, r1))
    return (slice(None), ch)


def dense_shape(shape: tuple[int, ...], region: Region) -> tuple[int, ...]:
    if len(shape) == 4:
        return (shape[0], region.n_ch, region.n_rows, shape[3])
    return (shape[0], region.n_ch) + tuple(shape[2:])


def read_region(part: Tensor, held: Region, sub: Region) -> Tensor:
    """Copy ``sub`` out of a dense part holding ``held``."""
    if not held.contains(sub):
        raise RuntimeError(f"a device asked to send {sub} holds only {held}")
    idx = region_index(held, sub, part.dim())
    if isinstance(idx[1], Tensor):
        out = part.index_select(1, idx[1])
        return out[(slice(None), slice(None)) + idx[2:]].clone()
    return part[idx].clone()


def write_region(buf: Tensor, region: Region, sub: Region, piece: Tensor, accumulate: bool = False) -> None:
    idx = region_index(region, sub, buf.dim())
    if isinstance(idx[1], Tensor):
        for j, c in enumerate(idx[1].tolist()):
            tgt = buf[(slice(None), c) + idx[2:]]
            if accumulate:
                tgt += piece[:, j]
            else:
                tgt.copy_(piece[:, j])
        return
    if accumulate:
        buf[idx] += piece
    else:
        buf[idx] = piece
