"""Halo rows: checked against torch's own convolution and pooling on the full tensor."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from iopopt.model.graph import OpNode
from iopopt.model.layouts import halo_rows

torch.set_num_threads(1)


def conv_node(h, k, s, p, d):
    h_out = (h + 2 * p - d * (k - 1) - 1) // s + 1
    params = {"kernel": (k, k), "stride": (s, s), "padding": (p, p), "dilation": (d, d), "groups": 1}
    return OpNode("c", "conv", "Conv2d", "c", ("x",), ((1, 2, h, 12),), (1, 3, h_out, 12), params=params), h_out


@pytest.mark.parametrize(
    "k,s,p,d,rows,expected",
    [
        (3, 2, 1, 1, (0, 2), (0, 4, 1, 0)),  # H=7 → 4 output rows; top needs one virtual row
        (3, 2, 1, 1, (2, 4), (3, 7, 0, 1)),  # bottom needs one virtual row
        (3, 1, 2, 2, (0, 4), (0, 6, 2, 0)),  # dilation 2 on H=8
        (3, 1, 2, 2, (4, 8), (2, 8, 0, 2)),
        (1, 1, 0, 1, (3, 5), (3, 5, 0, 0)),  # 1x1: no halo
    ],
)
def test_hand_computed_halo(k, s, p, d, rows, expected):
    h = 7 if s == 2 else 8
    op, _ = conv_node(h, k, s, p, d)
    assert halo_rows(op, *rows) == expected


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(4, 13),
    k=st.sampled_from([1, 2, 3, 5]),
    s=st.integers(1, 3),
    p=st.integers(0, 2),
    d=st.integers(1, 2),
    data=st.data(),
)
def test_halo_reproduces_torch_conv(h, k, s, p, d, data):
    if h + 2 * p < d * (k - 1) + 1:
        return
    op, h_out = conv_node(h, k, s, p, d)
    a = data.draw(st.integers(0, h_out - 1))
    b = data.draw(st.integers(a + 1, h_out))
    g = torch.Generator().manual_seed(h * 1000 + k * 100 + s * 10 + p)
    x = torch.randn(1, 2, h, 12, generator=g, dtype=torch.float64)
    w = torch.randn(3, 2, k, k, generator=g, dtype=torch.float64)
    full = F.conv2d(x, w, stride=s, padding=p, dilation=d)
    lo, hi, top, bottom = halo_rows(op, a, b)
    local = F.pad(x[:, :, lo:hi], (0, 0, top, bottom))
    part = F.conv2d(local, w, stride=(s, s), padding=(0, p), dilation=d)
    torch.testing.assert_close(part, full[:, :, a:b], rtol=0, atol=1e-12)


@pytest.mark.parametrize("h,ho", [(7, 3), (6, 6), (13, 7), (5, 1)])
def test_adaptive_pool_rows(h, ho):
    op = OpNode("a", "adaptive_avgpool", "AdaptiveAvgPool2d", "a", ("x",), ((1, 2, h, 4),), (1, 2, ho, 2),
                params={"output_size": (ho, 2)})
    x = torch.randn(1, 2, h, 4, dtype=torch.float64)
    full = F.adaptive_avg_pool2d(x, (ho, 2))
    for i in range(ho):
        lo, hi, _, _ = halo_rows(op, i, i + 1)
        torch.testing.assert_close(F.adaptive_avg_pool2d(x[:, :, lo:hi], (1, 2)), full[:, :, i : i + 1])


@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("first", ["rows", "ic"])
def test_windows_wholly_in_padding_execute(k, first):
    """A 1x1 conv with padding 2 gives some devices output rows whose window is all padding."""
    import iopopt
    from iopopt.network import SharedNetwork

    m = torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 1, padding=2),
        torch.nn.Conv2d(3, 4, 3, padding=3, dilation=2),
        torch.nn.MaxPool2d(3, stride=1, padding=1),
    ).eval()
    g = iopopt.trace(m, (1, 2, 4, 6))
    problem = iopopt.Problem(g, iopopt.Cluster.homogeneous(k, 1e9), SharedNetwork(1e6))
    convs = [op.name for op in g if op.kind == "conv"]
    plan = problem.plan({convs[0]: first}, default="rows")
    report = iopopt.verify(problem, plan, m)
    assert report.passed, report.diff
    assert all(t.nbytes > 0 for t in iopopt.compile_plan(problem, plan).steps[2].inputs[0].transfers)
