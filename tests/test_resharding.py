"""Hand-computed resharding cases: one per row of DESIGN.md's resharding table.

Tensor (1, 4, 6, 2) in float32 over 3 devices, host 0. One (channel, row)
slice is 2 elements = 8 bytes. Channel split 2/1/1, row split 2/2/2.
"""

from collections import Counter

import pytest

from iopopt.compile import reshard
from iopopt.model.layouts import Dist, Region
from iopopt.network import SharedNetwork, SwitchedNetwork

SHAPE = (1, 4, 6, 2)
FULL = Region(((0, 4),), (0, 6))
K = 3
B = 4  # bytes per element


def H():
    return Dist("H", (FULL, None, None), SHAPE)


def R():
    return Dist("R", (FULL,) * K, SHAPE)


def C():
    return Dist("C", tuple(Region((iv,), (0, 6)) for iv in [(0, 2), (2, 3), (3, 4)]), SHAPE)


def S(rows=((0, 2), (2, 4), (4, 6))):
    return Dist("S", tuple(Region(((0, 4),), r) for r in rows), SHAPE)


def P(holders=(0, 1, 2)):
    return Dist("P", tuple(FULL if d in holders else None for d in range(K)), SHAPE)


def msgs(res):
    return Counter((t.src, t.dst, t.nbytes) for t in res.transfers)


def test_h_to_r_broadcast():
    res = reshard(H(), R(), B)
    assert msgs(res) == Counter({(0, 1, 192): 1, (0, 2, 192): 1})
    assert res.staging_bytes == (0, 192, 192)


def test_h_to_c_scatter():
    res = reshard(H(), C(), B)
    assert msgs(res) == Counter({(0, 1, 48): 1, (0, 2, 48): 1})
    # the host slices its own channels locally: a copy, no message
    assert res.staging_bytes == (96, 48, 48)
    assert {t.dst: t.region for t in res.transfers} == {1: Region(((2, 3),), (0, 6)), 2: Region(((3, 4),), (0, 6))}


def test_h_to_s_scatter_with_halo():
    res = reshard(H(), S(((0, 3), (1, 5), (3, 6))), B)
    assert msgs(res) == Counter({(0, 1, 4 * 4 * 2 * B): 1, (0, 2, 3 * 4 * 2 * B): 1})


@pytest.mark.parametrize("target", [C, S, H])
def test_r_to_anything_is_local(target):
    res = reshard(R(), target(), B)
    assert res.n_messages == 0
    assert res.time_s == 0


def test_c_to_r_all_gather():
    res = reshard(C(), R(), B)
    want = {(0, 1, 96): 1, (0, 2, 96): 1, (1, 0, 48): 1, (1, 2, 48): 1, (2, 0, 48): 1, (2, 1, 48): 1}
    assert msgs(res) == Counter(want)
    assert res.staging_bytes == (192, 192, 192)


def test_s_to_r_all_gather():
    res = reshard(S(), R(), B)
    assert msgs(res) == Counter({(s, d, 64): 1 for s in range(3) for d in range(3) if s != d})


def test_c_to_h_gather():
    res = reshard(C(), H(), B)
    assert msgs(res) == Counter({(1, 0, 48): 1, (2, 0, 48): 1})
    assert res.staging_bytes == (192, 0, 0)


def test_s_to_h_gather():
    res = reshard(S(), H(), B)
    assert msgs(res) == Counter({(1, 0, 64): 1, (2, 0, 64): 1})


def test_c_to_s_all_to_all():
    res = reshard(C(), S(), B)
    # device d needs rows of its row block from every channel owner
    expected = Counter()
    ch = [2, 1, 1]
    for dst in range(3):
        for src in range(3):
            if src != dst:
                expected[(src, dst, ch[src] * 2 * 2 * B)] += 1
    assert msgs(res) == expected
    region = {(t.src, t.dst): t.region for t in res.transfers}
    assert region[(0, 1)] == Region(((0, 2),), (2, 4))


def test_s_to_c_all_to_all():
    res = reshard(S(), C(), B)
    ch = [2, 1, 1]
    expected = Counter()
    for dst in range(3):
        for src in range(3):
            if src != dst:
                expected[(src, dst, ch[dst] * 2 * 2 * B)] += 1
    assert msgs(res) == expected


def test_s_to_s_halo_exchange():
    res = reshard(S(), S(((0, 3), (1, 5), (3, 6))), B)
    row = 4 * 2 * B  # one row of all channels
    assert msgs(res) == Counter({(1, 0, row): 1, (0, 1, row): 1, (2, 1, row): 1, (1, 2, row): 1})
    rows = {(t.src, t.dst): t.region.rows for t in res.transfers}
    assert rows == {(1, 0): (2, 3), (0, 1): (1, 2), (2, 1): (4, 5), (1, 2): (3, 4)}
    assert res.staging_bytes == (3 * row, 4 * row, 3 * row)


def test_identity_needs_nothing():
    for d in (H(), R(), C(), S()):
        res = reshard(d, d, B)
        assert res.identity


def test_p_to_h_reduce():
    res = reshard(P(), H(), B)
    assert msgs(res) == Counter({(1, 0, 192): 1, (2, 0, 192): 1})
    assert res.staging_bytes == (192, 0, 0)


def test_p_to_h_only_holders_send():
    res = reshard(P(holders=(0, 2)), H(), B)
    assert msgs(res) == Counter({(2, 0, 192): 1})


def test_p_to_r_reduce_scatter_then_all_gather():
    blocks = (((0, 2),), ((2, 3),), ((3, 4),))
    res = reshard(P(), R(), B, channel_blocks=blocks)
    assert len(res.phases) == 2
    ch = [2, 1, 1]
    phase1 = Counter((t.src, t.dst, t.nbytes) for t in res.phases[0])
    phase2 = Counter((t.src, t.dst, t.nbytes) for t in res.phases[1])
    assert phase1 == Counter({(s, d, ch[d] * 12 * B): 1 for s in range(3) for d in range(3) if s != d})
    assert phase2 == Counter({(s, d, ch[s] * 12 * B): 1 for s in range(3) for d in range(3) if s != d})


def test_p_to_c_and_s_reduce_scatter():
    res = reshard(P(), C(), B)
    assert msgs(res) == Counter({(s, d, [96, 48, 48][d]): 1 for s in range(3) for d in range(3) if s != d})
    res = reshard(P(), S(), B)
    assert msgs(res) == Counter({(s, d, 64): 1 for s in range(3) for d in range(3) if s != d})


def test_only_partials_feed_partials():
    assert reshard(H(), P(), B) is None
    assert reshard(C(), P(), B) is None
    assert reshard(P(), P(), B).identity


def test_zero_share_devices_send_and_receive_nothing():
    c = Dist("C", (Region(((0, 4),), (0, 6)), None, None), SHAPE)
    res = reshard(c, R(), B)
    assert msgs(res) == Counter({(0, 1, 192): 1, (0, 2, 192): 1})


def test_shared_network_serializes():
    res = reshard(H(), R(), B, network=SharedNetwork(bandwidth_bytes_per_s=1000.0, latency_s=1e-3))
    assert res.time_s == pytest.approx(2 * 1e-3 + 384 / 1000.0, rel=1e-12)


def test_switched_network_full_duplex():
    net = SwitchedNetwork(bandwidth_bytes_per_s=1000.0, latency_s=1e-3)
    res = reshard(C(), R(), B, network=net)
    # each device sends 2 and receives 2 messages; device 0 sends the most bytes (192)
    assert res.time_s == pytest.approx(2 * 1e-3 + 192 / 1000.0, rel=1e-12)


def test_phases_add_up():
    net = SharedNetwork(bandwidth_bytes_per_s=1000.0, latency_s=0.0)
    res = reshard(P(), R(), B, network=net, channel_blocks=(((0, 2),), ((2, 3),), ((3, 4),)))
    assert res.time_s == pytest.approx(res.nbytes / 1000.0, rel=1e-12)
