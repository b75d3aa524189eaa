"""Capture with torch.export: shape specialisation, subclasses, weights read in forward, the unsupported report."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import iopopt
from iopopt import UnsupportedOperator, zoo
from iopopt.model import Cluster, SwitchedNetwork
from iopopt.plans import build_plan

torch.set_num_threads(1)


def _problem(module, shape, k=3):
    g = iopopt.trace(module, shape)
    return iopopt.Problem(g, Cluster.homogeneous(k, 1e9), SwitchedNetwork(1e8, 1e-4))


def _init(module, shape, seed=0):
    return zoo.init_weights(module, seed=seed, input_shape=shape).eval()


def _verified(module, shape, kinds=("all_oc", "coedge", "alternating", "random")):
    problem = _problem(module, shape)
    for kind in kinds:
        rep = iopopt.verify(problem, build_plan(problem, kind, seed=1), module)
        assert rep.passed, (kind, rep.diff)
    return problem.graph


class ShapeDependent(nn.Module):
    """Shape queries, an assert and a branch on the input size: export specialises them away."""

    def __init__(self):
        super().__init__()
        self.big = nn.Conv2d(3, 8, 3, padding=1)
        self.small = nn.Conv2d(3, 8, 1)

    def forward(self, x):
        torch._assert(x.shape[1] == 3, "an RGB image")
        n, _, h, _ = x.size()
        y = self.big(x) if h >= 16 else self.small(x)
        return y.view(n, -1) if x.ndim == 4 else y


@pytest.mark.parametrize("hw,conv", [(16, "big"), (8, "small")])
def test_shape_queries_asserts_and_branches_specialise(hw, conv):
    g = _verified(_init(ShapeDependent(), (2, 3, hw, hw)), (2, 3, hw, hw))
    assert [op.name for op in g if op.kind == "conv"] == [conv]
    assert [op.kind for op in g] == ["input", "conv", "flatten", "output"]


class BatchNormAct2d(nn.BatchNorm2d):
    """A library-style BatchNorm subclass with a fused activation (as timm's)."""

    def forward(self, x):
        return F.relu(super().forward(x))


class PaddedConv(nn.Conv2d):
    """A user Conv2d subclass calling the functional conv itself."""

    def forward(self, x):
        return F.conv2d(F.relu(x), self.weight, self.bias, self.stride, (1, 1))


def test_subclasses_are_recognised_by_isinstance():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), BatchNormAct2d(8), PaddedConv(8, 6, 3))
    shape = (1, 3, 12, 11)
    g = _verified(_init(model, shape), shape)
    by_name = {op.name: op for op in g}
    assert by_name["_1"].kind == "bn" and by_name["_1"].module == "1"  # named after the module, as fx does
    assert by_name["_1_1"].kind == "act" and by_name["_1_1"].module == "1"
    assert by_name["_2"].kind == "act" and by_name["_2_1"].kind == "conv"
    assert by_name["_2_1"].params["tensors"] == {"weight": "2.weight", "bias": "2.bias"}
    assert g.parameter_count() == sum(p.numel() for p in model.parameters())


class LayerScaled(nn.Module):
    """Parameters read in forward: a layer scale (C, 1, 1), a per-channel shift, a scalar gain."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.gamma = nn.Parameter(torch.linspace(0.5, 1.5, 6).reshape(6, 1, 1))
        self.shift = nn.Parameter(torch.linspace(-1, 1, 6).reshape(1, 6, 1, 1))
        self.gain = nn.Parameter(torch.tensor([1.25]))
        self.register_buffer("offset", torch.tensor(0.5))

    def forward(self, x):
        y = self.gamma * self.conv(x)
        y = (y + self.shift) * self.gain
        return y - self.offset


def test_parameters_read_in_forward_are_weights_of_their_op():
    model = LayerScaled()
    g = _verified(model, (1, 3, 9, 7))
    ew = [op for op in g if op.kind == "eltwise"]
    assert [op.params["tensors"]["operand"] for op in ew] == ["gamma", "shift", "gain", "offset"]
    assert [op.weight_shape for op in ew] == [(6, 1, 1), (6, 1, 1), (1, 1, 1), (1, 1, 1)]
    assert [op.params["weight_broadcast"] for op in ew] == [False, False, True, True]
    assert g.parameter_count() == sum(p.numel() for p in model.parameters())  # the buffer is not a parameter


class Blockers(nn.Module):
    """Three kinds of unsupported operators, one of them twice, with supported ops after each."""

    def __init__(self):
        super().__init__()
        self.gn1 = nn.GroupNorm(2, 4)
        self.gn2 = nn.GroupNorm(2, 4)
        self.conv = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        x = self.conv(self.gn1(x))
        x = torch.relu(self.gn2(x))
        y = x.sum(dim=1, keepdim=True)
        return torch.sigmoid(x * y.exp())


def test_every_unsupported_operator_is_listed_at_once_grouped_with_module_and_source():
    with pytest.raises(UnsupportedOperator) as err:
        iopopt.trace(Blockers(), (1, 4, 6, 6))
    exc = err.value
    ops = [f.op for f in exc.failures]
    assert sorted(set(ops)) == ["aten.exp.default", "aten.group_norm.default", "aten.sum.dim_IntList"]
    assert ops.count("aten.group_norm.default") == 2
    assert {f.module for f in exc.failures if "group_norm" in f.op} == {"gn1", "gn2"}
    assert all(re.search(r"test_capture\.py:\d+: ", f.source) for f in exc.failures)
    msg = str(exc)
    # grouped: one header per operator, the nodes under it; the supported ops in between are not blamed
    assert msg.count("aten.group_norm.default (2 nodes)") == 1
    assert "Blockers: 4 operator(s)" in msg and "3 kind(s)" in msg
    for word in ("relu", "sigmoid", "conv2d", "mul"):
        assert f"aten.{word}" not in msg


class ChannelSlice(nn.Module):
    def forward(self, x):
        return x.mean((2, 3)).view(1, -1)[:, :2]


def test_a_strided_or_batch_slice_is_unsupported_but_a_channel_slice_is_a_split():
    g = iopopt.trace(ChannelSlice(), (1, 4, 5, 5))
    assert [op.kind for op in g] == ["input", "mean", "split", "output"]
    assert g["split"].params == {"start": 0, "stop": 2}


def test_trace_on_the_meta_device_needs_no_weights():
    with torch.device("meta"):
        model = nn.Sequential(nn.Conv2d(3, 512, 3), nn.BatchNorm2d(512), nn.Flatten(), nn.LazyLinear(10))
        model(torch.zeros(1, 3, 8, 8, device="meta"))
    g = iopopt.trace(model, (1, 3, 8, 8))
    assert g.parameter_count() == sum(p.numel() for p in model.parameters())
