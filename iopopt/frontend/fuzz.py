"""Random small CNNs with awkward geometry, for fuzzing capture, solvers and executors.

Unlike :func:`iopopt.frontend.synthetic.random_cnn` (plausible networks with
"same" padding), :func:`fuzz_cnn` draws the corner cases a partitioner must
survive: odd input sizes, strides up to 3, dilation, padding beyond the
kernel's reach (output rows whose window is wholly in the padding), grouped
and depthwise convs, ceil-mode and padded pools, residual adds, channel
concatenations, a flatten + linear head and batches above 1.

Every choice goes through a :class:`Draw`, so the same generator serves a
seeded ``random.Random`` (:class:`RandomDraw`, for long runs) and hypothesis'
``data.draw`` (shrinkable property tests; see ``tests/test_fuzz.py``).

Examples
--------
>>> import random
>>> from iopopt.frontend.fuzz import RandomDraw, fuzz_cnn
>>> model, shape = fuzz_cnn(RandomDraw(random.Random(3)))
>>> len(shape)
4
"""

from __future__ import annotations

import random
from typing import Protocol

import torch
from torch import nn

from .synthetic import SyntheticCNN
from .zoo.weights import init_weights

__all__ = ["Draw", "RandomDraw", "fuzz_cnn", "describe"]


class Draw(Protocol):
    """The source of every random choice of :func:`fuzz_cnn`."""

    def integer(self, lo: int, hi: int) -> int:
        """An integer in ``[lo, hi]`` (inclusive); the simplest value is ``lo``."""
        ...


class RandomDraw:
    """A :class:`Draw` backed by a seeded ``random.Random``."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)


def _chance(draw: Draw, percent: int) -> bool:
    # shrinks towards False (0 is the simplest integer)
    return draw.integer(0, 99) >= 100 - percent


def _shape(mod: nn.Module, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """Output shape of ``mod`` on an input of ``shape`` (None when torch rejects the geometry)."""
    try:
        with torch.no_grad():
            return tuple(mod(torch.zeros(shape)).shape)
    except (RuntimeError, ValueError):
        return None


class _Net:
    def __init__(self, shape: tuple[int, ...]):
        self.layers: list[nn.Module] = []
        self.program: list[tuple] = []
        self.shapes: dict[int, tuple[int, ...]] = {0: shape}

    def apply(self, mod: nn.Module, src: int) -> int | None:
        out = _shape(mod, self.shapes[src])
        if out is None or 0 in out:
            return None
        self.layers.append(mod)
        dst = len(self.shapes)
        self.shapes[dst] = out
        self.program.append(("mod", len(self.layers) - 1, src, dst))
        return dst

    def join(self, op: str, srcs: tuple[int, ...]) -> int:
        dst = len(self.shapes)
        a = self.shapes[srcs[0]]
        if op == "add":
            self.shapes[dst] = a
            self.program.append(("add", srcs[0], srcs[1], dst))
        else:
            self.shapes[dst] = (a[0], sum(self.shapes[s][1] for s in srcs)) + a[2:]
            self.program.append(("cat", srcs, dst))
        return dst


def _conv(draw: Draw, cin: int, cout: int | None = None) -> nn.Module:
    k = draw.integer(1, 4)
    dil = 1 + (_chance(draw, 20) and k > 1)
    reach = dil * (k - 1)
    pad = (draw.integer(0, reach + 2), draw.integer(0, reach + 1))  # beyond the reach on purpose
    groups = 1
    if cout is None:
        cout = draw.integer(1, 7)
        if _chance(draw, 15):
            groups = cin  # depthwise
            cout = cin
        elif cin % 2 == 0 and cout % 2 == 0 and _chance(draw, 10):
            groups = 2
    return nn.Conv2d(cin, cout, k, stride=draw.integer(1, 3), padding=pad, dilation=dil, groups=groups,
                     bias=_chance(draw, 70))


def _pool(draw: Draw, c: int) -> nn.Module:
    kind = draw.integer(0, 3)
    if kind == 3:
        return nn.AdaptiveAvgPool2d((draw.integer(1, 3), draw.integer(1, 3)))
    k = draw.integer(1, 3)
    stride = draw.integer(1, 3)
    pad = draw.integer(0, k // 2)
    ceil = _chance(draw, 50)
    if kind == 0:
        return nn.MaxPool2d(k, stride, pad, dilation=1 + (_chance(draw, 15) and k > 1), ceil_mode=ceil)
    return nn.AvgPool2d(k, stride, pad, ceil_mode=ceil, count_include_pad=_chance(draw, 50))


def _pointwise(draw: Draw, c: int) -> nn.Module:
    return [nn.ReLU(), nn.BatchNorm2d(c), nn.Sigmoid(), nn.Identity()][draw.integer(0, 3)]


def _same_conv(draw: Draw, cin: int, cout: int) -> nn.Module:
    """A conv that keeps the spatial size (odd kernel, stride 1, padding equal to half the reach)."""
    k = 2 * draw.integer(0, 1) + 1
    dil = 1 + _chance(draw, 20)
    return nn.Conv2d(cin, cout, k, padding=dil * (k - 1) // 2, dilation=dil, bias=_chance(draw, 70))


def _branches(draw: Draw, net: _Net, cur: int, op: str) -> int | None:
    c = net.shapes[cur][1]
    outs = []
    for _ in range(2):
        if not outs or _chance(draw, 50):  # the second branch is the identity half of the time
            cout = c if op == "add" else draw.integer(1, 5)
            b = net.apply(_same_conv(draw, c, cout), cur)
            if b is not None and _chance(draw, 30):
                b = net.apply(_pointwise(draw, net.shapes[b][1]), b)
            if b is None:
                return None
            outs.append(b)
        else:
            outs.append(cur)
    return net.join(op, (outs[0], outs[1]))


def fuzz_cnn(draw: Draw, max_ops: int = 6, max_batch: int = 2, max_hw: int = 11) -> tuple[SyntheticCNN, tuple]:
    """A random small CNN and its input shape ``(N, C, H, W)``, weights seeded from the draw.

    Parameters
    ----------
    draw : Draw
        Source of every choice.
    max_ops : int
        Upper bound on the number of modules and joins drawn (at least one conv).
    max_batch, max_hw : int
        Upper bounds on the batch and on the input height and width (drawn from 1 up).
    """
    shape = (draw.integer(1, max_batch), draw.integer(1, 4), draw.integer(1, max_hw), draw.integer(1, max_hw))
    net = _Net(shape)
    cur = net.apply(_conv(draw, shape[1]), 0)
    while cur is None:  # the first conv must fit the input: fall back to a plain 1x1
        cur = net.apply(nn.Conv2d(shape[1], draw.integer(1, 5), 1), 0)
    for _ in range(draw.integer(0, max_ops - 1)):
        c = net.shapes[cur][1]
        what = draw.integer(0, 9)
        new: int | None
        if what <= 3:
            new = net.apply(_conv(draw, c), cur)
        elif what <= 5:
            new = net.apply(_pool(draw, c), cur)
        elif what == 6:
            new = net.apply(_pointwise(draw, c), cur)
        else:  # two branches from cur joined by add (same shape) or cat (same spatial size)
            new = _branches(draw, net, cur, "add" if what <= 7 else "cat")
        if new is not None:
            cur = new
    if _chance(draw, 25):
        n, c, h, w = net.shapes[cur]
        dst = len(net.shapes)
        net.shapes[dst] = (n, c * h * w)
        net.program.append(("flatten", cur, dst))
        cur = net.apply(nn.Linear(c * h * w, draw.integer(1, 5)), dst) or dst
    model = SyntheticCNN(net.layers, net.program, cur)
    init_weights(model, seed=draw.integer(0, 2**31 - 1), input_shape=shape)
    return model.eval(), shape


def describe(model: SyntheticCNN, shape: tuple) -> str:
    """The model as readable lines (for failure reports)."""
    return f"input {tuple(shape)}\n" + "\n".join(model.describe())
