"""Tracing: published model figures, node attributes and unsupported operators."""

import pytest
import torch
from torch import nn

import iopopt
from iopopt import UnsupportedOperator, zoo

torch.set_num_threads(1)

# Published figures of the classic architectures at 224x224 (MACs of conv + linear, parameters).
PUBLISHED = {
    "alexnet": (0.71e9, 61.10e6),
    "vgg16": (15.47e9, 138.36e6),
    "resnet18": (1.81e9, 11.69e6),
    "resnet50": (4.09e9, 25.56e6),
    "mobilenet_v2": (0.30e9, 3.50e6),
}


@pytest.fixture(scope="module")
def traced():
    out = {}
    for name in PUBLISHED:
        module, shape = zoo.build(name)
        out[name] = (module, iopopt.trace(module, shape))
    return out


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_macs_and_params(traced, name):
    module, g = traced[name]
    macs, params = PUBLISHED[name]
    assert g.macs() == pytest.approx(macs, rel=0.01)
    assert g.parameter_count() == pytest.approx(params, rel=0.01)
    assert g.parameter_count() == sum(p.numel() for p in module.parameters())


def test_flops_are_twice_the_macs_of_a_conv():
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False))
    g = iopopt.trace(m, (2, 3, 10, 12))
    op = g["_0"]
    assert op.kind == "conv"
    assert op.flops == 2 * (2 * 8 * 10 * 12) * 3 * 9
    assert op.out_shape == (2, 8, 10, 12)
    assert op.weight_elems == 8 * 3 * 9


def test_node_kinds_and_order():
    module, shape = zoo.build("tiny_residual")
    g = iopopt.trace(module, shape)
    kinds = {op.kind for op in g}
    assert {"input", "output", "conv", "add", "cat"} <= kinds
    for src, dst, _ in g.edges():
        assert g.position[src] < g.position[dst]
    assert g.order[0] == g.input_name and g.order[-1] == g.output_name


class Matmul(nn.Module):
    def forward(self, x):
        return torch.matmul(x, x)


class LSTMish(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(8, 4)

    def forward(self, x):
        return self.lstm(x.flatten(2)[0])[0].unsqueeze(0).unsqueeze(0)


class GroupNormed(nn.Module):
    def __init__(self):
        super().__init__()
        self.gn = nn.GroupNorm(2, 4)

    def forward(self, x):
        return self.gn(x)


@pytest.mark.parametrize(
    "module,shape,needle",
    [
        (Matmul(), (1, 4, 8, 8), "matmul"),
        (LSTMish(), (1, 4, 2, 4), "LSTM"),
        (GroupNormed(), (1, 4, 8, 8), "group_norm"),
    ],
)
def test_unsupported_operator_names_node_and_target(module, shape, needle):
    with pytest.raises(UnsupportedOperator) as err:
        iopopt.trace(module, shape)
    msg = str(err.value)
    assert needle in msg
    assert "node" in msg


def test_unsupported_operator_names_source_line():
    with pytest.raises(UnsupportedOperator, match=r"test_trace.py:\d+: return torch.matmul\(x, x\)"):
        iopopt.trace(Matmul(), (1, 4, 8, 8))


def test_bad_input_shape():
    with pytest.raises(ValueError, match="input_shape"):
        iopopt.trace(nn.Sequential(nn.ReLU()), (3, 224, 224))


def test_a_model_that_fails_on_its_input_is_not_an_unsupported_operator():
    with pytest.raises(iopopt.frontend.InputShapeError, match="its first conv \\(0\\) takes 3 input channels") as err:
        iopopt.trace(nn.Sequential(nn.Conv2d(3, 4, 3)), (1, 5, 8, 8))
    assert not isinstance(err.value, UnsupportedOperator) and err.value.expected == (None, 3, None, None)


@pytest.mark.parametrize("name", ["alexnet", "resnet18", "mobilenet_v2", "inception_mini", "tiny_residual"])
def test_a_model_without_weights_traces_to_the_same_graph(name):
    """zoo.build(weights=False) leaves the model on the meta device; its graph is the one with weights."""
    bare, shape = zoo.build(name, weights=False)
    assert all(p.device.type == "meta" for p in bare.parameters())
    real, _ = zoo.build(name)

    def fields(graph):
        return [(n.name, n.kind, n.target, n.module, n.inputs, n.in_shapes, n.out_shape, n.weight_shape,
                 n.bias_shape, n.flops, n.weight_elems, n.params, n.source) for n in graph]

    assert fields(iopopt.trace(bare, shape)) == fields(iopopt.trace(real, shape))


@pytest.mark.parametrize("name", ["tiny_residual", "resnet18", "inception_mini"])
def test_source_lines_are_the_models_own(name):
    """OpNode.source: ``file:line: code`` of the model's line that made each node (read back from the file)."""
    import linecache
    import re
    from pathlib import Path

    module, shape = zoo.build(name, weights=False)
    root = Path(iopopt.__file__).resolve().parent.parent
    for node in iopopt.trace(module, shape):
        if node.kind in ("input", "output"):
            continue
        m = re.fullmatch(r"(iopopt/frontend/zoo/\w+\.py):(\d+): (.+)", node.source)
        assert m, (node.name, node.source)
        assert linecache.getline(str(root / m[1]), int(m[2])).strip() == m[3], node.name
