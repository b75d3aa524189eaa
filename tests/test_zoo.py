"""Tests for iopopt.zoo and iopopt.synthetic."""

from __future__ import annotations

import pytest
import torch
import torch.fx
from torch import nn

from iopopt import synthetic, zoo

torch.set_num_threads(1)

ALL_NAMES = [
    "alexnet",
    "inception_mini",
    "mobilenet_v2",
    "resnet18",
    "resnet50",
    "tiny_chain",
    "tiny_residual",
    "vgg16",
]

# Published figures (torchvision model cards / literature): MACs of conv+linear
# in G, parameters in M, at 224x224.
PUBLISHED = {
    "alexnet": (0.71, 61.10),
    "vgg16": (15.47, 138.36),
    "resnet18": (1.81, 11.69),
    "resnet50": (4.09, 25.56),
    "mobilenet_v2": (0.30, 3.50),
}


def _macs_and_output(model: nn.Module, x: torch.Tensor) -> tuple[int, torch.Tensor]:
    """MACs of Conv2d/Linear layers counted by forward hooks, plus the output."""
    total = [0]

    def hook(m: nn.Module, _inp: tuple, out: torch.Tensor) -> None:
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            total[0] += out.numel() * (m.in_channels // m.groups) * kh * kw
        else:
            total[0] += m.in_features * m.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            y = model(x)
    finally:
        for h in handles:
            h.remove()
    return total[0], y


@pytest.fixture(scope="module")
def built() -> dict[str, tuple[nn.Module, tuple[int, ...], int, torch.Tensor, torch.Tensor]]:
    """Build every zoo model once and run one hooked forward pass."""
    gen = torch.Generator().manual_seed(123)
    out = {}
    for name in zoo.names():
        model, shape = zoo.build(name)
        x = torch.randn(shape, generator=gen)
        macs, y = _macs_and_output(model, x)
        out[name] = (model, shape, macs, x, y)
    return out


# ---------------------------------------------------------------- zoo ------


def test_names() -> None:
    assert zoo.names() == ALL_NAMES == sorted(ALL_NAMES)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_build_forward(built, name: str) -> None:
    model, shape, _macs, _x, y = built[name]
    assert not model.training
    assert shape[0] == 1 and len(shape) == 4
    assert y.shape == (1, 1000)
    assert torch.isfinite(y).all()
    assert 1e-3 < float(y.std()) < 1e3


@pytest.mark.parametrize("name", ALL_NAMES)
def test_only_dense_or_depthwise_convs(built, name: str) -> None:
    for m in built[name][0].modules():
        if isinstance(m, nn.Conv2d):
            assert m.groups == 1 or m.groups == m.in_channels == m.out_channels


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_macs_params(built, name: str) -> None:
    model, shape, macs, _x, _y = built[name]
    assert shape == (1, 3, 224, 224)
    exp_gmacs, exp_mparams = PUBLISHED[name]
    params = sum(p.numel() for p in model.parameters())
    assert macs / 1e9 == pytest.approx(exp_gmacs, rel=0.01)
    assert params / 1e6 == pytest.approx(exp_mparams, rel=0.01)


def test_inception_mini_size(built) -> None:
    model, shape, _macs, _x, _y = built["inception_mini"]
    assert shape == (1, 3, 64, 64)
    assert sum(p.numel() for p in model.parameters()) < 5_000_000


@pytest.mark.parametrize("name", ALL_NAMES)
def test_zoo_fx_traceable(built, name: str) -> None:
    model, _shape, _macs, x, y = built[name]
    gm = torch.fx.symbolic_trace(model)
    if name in ("vgg16", "alexnet", "resnet50"):
        return  # tracing suffices; skip the extra heavy forward
    with torch.no_grad():
        torch.testing.assert_close(gm(x), y)


def test_num_classes_and_seed() -> None:
    m, shape = zoo.build("tiny_residual", num_classes=10)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = m(x)
        assert y.shape == (1, 10)
        assert torch.equal(zoo.build("tiny_residual", num_classes=10)[0](x), y)
        assert not torch.allclose(zoo.build("tiny_residual", num_classes=10, seed=1)[0](x), y)


def test_build_leaves_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    zoo.build("tiny_chain")
    synthetic.random_cnn(0, 10, "dag")
    assert torch.equal(state, torch.random.get_rng_state())


def test_unknown_name() -> None:
    with pytest.raises(ValueError) as exc:
        zoo.build("resnet1000")
    msg = str(exc.value)
    assert "resnet1000" in msg
    for name in ALL_NAMES:
        assert name in msg


# ---------------------------------------------------------- synthetic ------


def _run(model: nn.Module, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model(x)


def _arch(model: nn.Module) -> list[str]:
    return model.describe()


@pytest.mark.parametrize("kind", ["chain", "dag"])
def test_synthetic_deterministic(kind: str) -> None:
    m1, s1 = synthetic.random_cnn(7, n_layers=12, kind=kind)
    m2, s2 = synthetic.random_cnn(7, n_layers=12, kind=kind)
    assert s1 == s2 == (1, 3, 16, 16)
    assert not m1.training
    assert _arch(m1) == _arch(m2)
    for p1, p2 in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(p1, p2)
    assert torch.equal(_run(m1, s1), _run(m2, s2))


@pytest.mark.parametrize("kind", ["chain", "dag"])
def test_synthetic_seeds_differ(kind: str) -> None:
    archs = {tuple(_arch(synthetic.random_cnn(seed, n_layers=12, kind=kind)[0])) for seed in range(5)}
    assert len(archs) == 5


@pytest.mark.parametrize("kind", ["chain", "dag"])
@pytest.mark.parametrize("seed", range(6))
def test_synthetic_fx_matches(kind: str, seed: int) -> None:
    model, shape = synthetic.random_cnn(seed, n_layers=15, kind=kind, channels=(2, 8))
    gm = torch.fx.symbolic_trace(model)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        y = model(x)
        torch.testing.assert_close(gm(x), y)
    assert torch.isfinite(y).all()
    assert 1e-3 < float(y.std()) < 1e3
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            assert 2 <= m.out_channels <= 8
            assert m.groups == 1 or m.groups == m.in_channels == m.out_channels
    n_weighted = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())
    assert 15 <= n_weighted <= 20


def test_synthetic_dag_has_add_and_cat() -> None:
    ops = set()
    for seed in range(5):
        model, _ = synthetic.random_cnn(seed, n_layers=20, kind="dag")
        gm = torch.fx.symbolic_trace(model)
        for node in gm.graph.nodes:
            if node.op == "call_function":
                ops.add(getattr(node.target, "__name__", str(node.target)))
    assert "add" in ops and "cat" in ops


def test_synthetic_chain_is_a_chain() -> None:
    for seed in range(5):
        model, _ = synthetic.random_cnn(seed, n_layers=20, kind="chain")
        gm = torch.fx.symbolic_trace(model)
        for node in gm.graph.nodes:
            assert len(node.users) <= 1


@pytest.mark.parametrize("kind", ["chain", "dag"])
def test_synthetic_non_square_and_batch(kind: str) -> None:
    model, shape = synthetic.random_cnn(3, n_layers=10, kind=kind, input_hw=(12, 20), batch=2)
    assert shape == (2, 3, 12, 20)
    y = _run(model, shape)
    assert y.shape[0] == 2 and torch.isfinite(y).all()
    gm = torch.fx.symbolic_trace(model)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(gm(x), model(x))


def test_synthetic_large() -> None:
    model, shape = synthetic.random_cnn(1, n_layers=400, kind="dag", channels=(2, 4), input_hw=(8, 8))
    n_weighted = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())
    assert 400 <= n_weighted <= 410
    y = _run(model, shape)
    assert torch.isfinite(y).all()
    assert len(torch.fx.symbolic_trace(model).graph.nodes) > 400


def test_synthetic_bad_kind() -> None:
    with pytest.raises(ValueError) as exc:
        synthetic.random_cnn(0, kind="tree")
    msg = str(exc.value)
    assert "tree" in msg and "chain" in msg and "dag" in msg
