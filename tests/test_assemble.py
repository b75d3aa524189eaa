"""The shared resharding assembler, on hand-built distributions: one case per row of DESIGN.md's table.

The oracle is plain slicing of the full tensor (for partial sums: of the sum of
the partials), written here from scratch. Each case runs the assembler as the
simulated executor does (every device in one call) and as the distributed one
does (one call per device, the transport serving the other devices' pieces
from the oracle and checking what the device sends), and checks the buffers,
the staging bytes against the compiler's, and that no buffer aliases a stored
part or changes it.
"""

from __future__ import annotations

import math

import pytest
import torch

from iopopt.compile import reshard
from iopopt.exec.assemble import assemble
from iopopt.model.layouts import Dist, Region

K = 3
B = 4  # bytes per element the compiler counts
SHAPE = (1, 6, 7, 3)
FULL = Region(((0, 6),), (0, 7))


def dense(x: torch.Tensor, region: Region) -> torch.Tensor:
    """The dense part of ``region``: its channel intervals concatenated in order, its rows."""
    t = torch.cat([x[:, a:b] for a, b in region.ch], 1) if region.ch else x[:, :0]
    if x.dim() == 4:
        t = t[:, :, region.rows[0] : region.rows[1]]
    return t.clone()


def whole(kind, devices):
    return Dist(kind, tuple(FULL if d in devices else None for d in range(K)), SHAPE)


def chans(*ivs):
    return Dist("C", tuple(Region(iv, (0, 7)) if iv else None for iv in ivs), SHAPE)


def rows(*rs):
    return Dist("S", tuple(Region(((0, 6),), r) if r else None for r in rs), SHAPE)


H, R, D1, D2 = whole("H", (0,)), whole("R", range(K)), whole("H", (1,)), whole("H", (2,))
C = chans(((0, 3),), ((3, 4),), ((4, 6),))
C_GAPS = chans(((0, 1), (3, 5)), ((1, 3),), ((5, 6),))  # a device holding two channel intervals
C_ZERO = chans(((0, 4),), None, ((4, 6),))  # a device with a zero share
S = rows((0, 3), (3, 5), (5, 7))
S_HALO = rows((0, 4), (2, 6), (4, 7))
S_EMPTY = rows((0, 4), (4, 7), (7, 7))  # a window wholly in the padding: no real row
P, P_SUB = whole("P", range(K)), whole("P", (0, 2))

CASES = {
    "H->R broadcast": (H, R),
    "H->C scatter": (H, C),
    "H->S scatter": (H, S_HALO),
    "D(1)->D(2)": (D1, D2),
    "D(1)->C": (D1, C_GAPS),
    "R->C local": (R, C),
    "R->S local": (R, S_HALO),
    "R->H local": (R, H),
    "C->R all-gather": (C, R),
    "S->R all-gather": (S, R),
    "C->H gather": (C_GAPS, H),
    "S->H gather": (S, H),
    "C->S all-to-all": (C_GAPS, S),
    "S->C all-to-all": (S, C_GAPS),
    "C->C resplit": (C, C_GAPS),
    "C zero share->R": (C_ZERO, R),
    "S->S halo": (S, S_HALO),
    "S->S empty window": (S, S_EMPTY),
    "C->C identity": (C, C),
    "P->H reduce": (P, H),
    "P->R all-reduce": (P, R),
    "P->C reduce-scatter": (P, C_GAPS),
    "P->S reduce-scatter": (P, S),
    "P(0,2)->R": (P_SUB, R),
    "P(0,2)->C": (P_SUB, C),
    "P->P": (P, P),
}


def setup(src: Dist, seed: int = 0):
    """(full tensor, stored part per device, partial per holder or None)."""
    g = torch.Generator().manual_seed(seed)
    if src.kind == "P":
        partials = {d: torch.randn(SHAPE, generator=g, dtype=torch.float64) for d in src.holders()}
        full = sum(partials.values())
        return full, dict(partials), partials
    full = torch.randn(SHAPE, generator=g, dtype=torch.float64)
    return full, {d: dense(full, r) for d, r in enumerate(src.parts) if r is not None}, None


class Local:
    """Every device in this process: pieces handed over as the sender reads them; ``drop`` loses one transfer."""

    def __init__(self, drop=None):
        self.drop, self.n = drop, 0

    def exchange(self, phase, transfers, read):
        got = {}
        for j, t in enumerate(transfers):
            got[j] = None if self.n == self.drop else read(t)
            self.n += 1
        return got


class Remote:
    """Device ``me`` alone: checks what it sends against the oracle, serves what it receives from the oracle."""

    def __init__(self, me, res, full, partials):
        self.me, self.res, self.full, self.partials = me, res, full, partials

    def expected(self, phase, t):
        gather = self.res.dst.kind == "R" and phase == len(self.res.phases) - 1
        if self.partials is None or gather:
            return dense(self.full, t.region)
        return dense(self.partials[t.src], t.region)

    def exchange(self, phase, transfers, read):
        got = {}
        for j, t in enumerate(transfers):
            want = self.expected(phase, t)
            if t.src == self.me:
                torch.testing.assert_close(read(t), want, rtol=0, atol=1e-12)
            if t.dst == self.me:
                got[j] = want
        return got


def check(res, stored, bufs, allocated, full, devices):
    dst = res.dst
    for d in devices:
        buf, need = bufs[d], dst.parts[d]
        if need is None:
            assert buf is None
            continue
        want = stored[d] if dst.kind == "P" else dense(full, need)
        assert tuple(buf.shape) == tuple(want.shape)
        torch.testing.assert_close(buf, want, rtol=0, atol=1e-12)  # no NaN left anywhere
        assert sum(t.numel() for t in allocated.get(d, [])) * B == res.staging_bytes[d]
        if res.staging_bytes[d] == 0 and not need.is_empty():
            assert buf is stored[d]  # identity: the stored part as is
        whole = res.src.parts[d] is None and [t.region for t in res.transfers if t.dst == d] == [need]
        for t in allocated.get(d, []):
            # a staging buffer never shares memory with a stored part, unless it is a piece received whole
            shared = [e for e, s in stored.items() if t.untyped_storage().data_ptr() == s.untyped_storage().data_ptr()]
            assert not shared or (whole and d not in shared), (d, shared)


@pytest.mark.parametrize("case", CASES)
def test_every_row_in_one_process(case):
    src, dst = CASES[case]
    res = reshard(src, dst, B)
    full, stored, _ = setup(src)
    before = {d: t.clone() for d, t in stored.items()}
    got = assemble(res, range(K), stored, Local(), torch.float64, "consumer", "x")
    check(res, stored, got.buffers, got.allocated, full, range(K))
    assert all(torch.equal(stored[d], before[d]) for d in stored)  # nothing written into a store


@pytest.mark.parametrize("case", CASES)
def test_every_row_one_device_per_process(case):
    src, dst = CASES[case]
    res = reshard(src, dst, B)
    full, stored, partials = setup(src, seed=1)
    for d in range(K):
        mine = {d: stored[d]} if d in stored else {}
        got = assemble(res, (d,), mine, Remote(d, res, full, partials), torch.float64, "consumer", "x")
        assert set(got.buffers) == {d}
        check(res, stored, got.buffers, got.allocated, full, (d,))


@pytest.mark.parametrize("case", [c for c, (s, d) in CASES.items() if reshard(s, d, B).n_messages])
def test_a_lost_message_is_a_wrong_number(case):
    """Every transfer dropped in turn: its region stays NaN, or (a partial sum) its term is missing."""
    src, dst = CASES[case]
    res = reshard(src, dst, B)
    full, stored, partials = setup(src, seed=2)
    transfers = [t for ph in res.phases for t in ph]
    for i, t in enumerate(transfers):
        bufs = assemble(res, range(K), stored, Local(drop=i), torch.float64, "consumer", "x").buffers
        hit = bufs[t.dst]
        want = dense(full, dst.parts[t.dst])
        if src.kind != "P":
            assert torch.isnan(dense(hit, _relative(dst.parts[t.dst], t.region))).all()
            assert int(torch.isnan(hit).sum()) == t.region.elems(SHAPE)
        elif dst.kind == "R" and i >= len(res.phases[0]) and len(res.phases) == 2:
            assert torch.isnan(hit).any()  # an all-gathered block never arrived
        else:
            assert not torch.allclose(hit, want) and not torch.isnan(hit).any()  # a term of the sum is missing


def _relative(region: Region, sub: Region) -> Region:
    """``sub`` in the coordinates of the dense part of ``region``."""
    ch, offset = [], 0
    for a, b in region.ch:
        for c0, c1 in sub.ch:
            lo, hi = max(a, c0), min(b, c1)
            if lo < hi:
                ch.append((offset + lo - a, offset + hi - a))
        offset += b - a
    r = (sub.rows[0] - region.rows[0], sub.rows[1] - region.rows[0])
    return Region(tuple(ch), r)


def test_two_d_tensors():
    shape = (2, 10)
    full_r = Region(((0, 10),))
    src = Dist("C", (Region(((0, 3), (7, 10))), Region(((3, 7),)), None), shape)
    dst = Dist("R", (full_r,) * K, shape)
    res = reshard(src, dst, B)
    x = torch.randn(shape, dtype=torch.float64)
    stored = {d: torch.cat([x[:, a:b] for a, b in r.ch], 1) for d, r in enumerate(src.parts) if r is not None}
    bufs = assemble(res, range(K), stored, Local(), torch.float64).buffers
    assert all(torch.equal(bufs[d], x) for d in range(K))
    assert not math.isnan(float(bufs[2].sum()))
