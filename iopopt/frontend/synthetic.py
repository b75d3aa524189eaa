"""Seeded random CNN generator (chains and DAGs) for stress-testing partitioners.

A generated network is a :class:`SyntheticCNN`: an ``nn.ModuleList`` of layers
plus a static *program* (a list of python tuples) interpreted in ``forward``.
Because the program is static, ``torch.fx.symbolic_trace`` unrolls it into a
plain graph.

Program instructions (``slot`` is an int naming an intermediate value, slot 0
is the network input):

* ``("mod", layer_index, src_slot, dst_slot)`` -- apply ``layers[layer_index]``
* ``("add", a_slot, b_slot, dst_slot)`` -- elementwise residual add
* ``("cat", (slot, ...), dst_slot)`` -- channel concatenation (dim 1)
* ``("flatten", src_slot, dst_slot)`` -- ``torch.flatten(x, 1)``

Examples
--------
>>> from iopopt.synthetic import random_cnn
>>> model, shape = random_cnn(0, n_layers=12, kind="dag")
>>> shape
(1, 3, 16, 16)
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
from torch import nn

from .zoo.weights import init_weights

__all__ = ["SyntheticCNN", "random_cnn", "KINDS"]

#: Accepted values of the ``kind`` argument of :func:`random_cnn`.
KINDS: tuple[str, ...] = ("chain", "dag")

Instr = tuple


class SyntheticCNN(nn.Module):
    """Module interpreting a static program over a list of layers.

    Parameters
    ----------
    layers : sequence of nn.Module
        Layers referenced by index from the program.
    program : list of tuple
        Static instruction list, see the module docstring.
    output_slot : int
        Slot holding the network output after the program has run.
    """

    def __init__(self, layers: Sequence[nn.Module], program: list[Instr], output_slot: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.program: list[Instr] = list(program)
        self.output_slot = int(output_slot)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        vals: dict[int, torch.Tensor] = {0: x}
        for ins in self.program:
            op = ins[0]
            if op == "mod":
                vals[ins[3]] = self.layers[ins[1]](vals[ins[2]])
            elif op == "add":
                vals[ins[3]] = vals[ins[1]] + vals[ins[2]]
            elif op == "cat":
                vals[ins[2]] = torch.cat([vals[s] for s in ins[1]], 1)
            elif op == "flatten":
                vals[ins[2]] = torch.flatten(vals[ins[1]], 1)
            else:  # pragma: no cover - programs are built internally
                raise RuntimeError(f"bad instruction {ins!r}")
        return vals[self.output_slot]

    def describe(self) -> list[str]:
        """Human-readable program listing.

        Returns
        -------
        list of str
            One line per instruction.
        """
        out = []
        for ins in self.program:
            if ins[0] == "mod":
                out.append(f"v{ins[3]} = {self.layers[ins[1]]!r}(v{ins[2]})")
            elif ins[0] == "add":
                out.append(f"v{ins[3]} = v{ins[1]} + v{ins[2]}")
            elif ins[0] == "cat":
                out.append(f"v{ins[2]} = cat({', '.join(f'v{s}' for s in ins[1])})")
            else:
                out.append(f"v{ins[2]} = flatten(v{ins[1]})")
        return out


class _Builder:
    """Incremental program builder tracking tensor shapes per slot."""

    def __init__(self, rng: random.Random, ch_lo: int, ch_hi: int) -> None:
        self.rng = rng
        self.lo, self.hi = ch_lo, ch_hi
        self.layers: list[nn.Module] = []
        self.program: list[Instr] = []
        self.shapes: dict[int, tuple[int, ...]] = {}
        self.n_weighted = 0
        self._next = 1

    # -- primitives -------------------------------------------------------
    def _slot(self, shape: tuple[int, ...]) -> int:
        s = self._next
        self._next += 1
        self.shapes[s] = shape
        return s

    def apply(self, mod: nn.Module, src: int, shape: tuple[int, ...]) -> int:
        self.layers.append(mod)
        dst = self._slot(shape)
        self.program.append(("mod", len(self.layers) - 1, src, dst))
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            self.n_weighted += 1
        return dst

    def add(self, a: int, b: int) -> int:
        assert self.shapes[a] == self.shapes[b], (self.shapes[a], self.shapes[b])
        dst = self._slot(self.shapes[a])
        self.program.append(("add", a, b, dst))
        return dst

    def cat(self, srcs: Sequence[int]) -> int:
        c = sum(self.shapes[s][0] for s in srcs)
        h, w = self.shapes[srcs[0]][1:]
        assert all(self.shapes[s][1:] == (h, w) for s in srcs)
        dst = self._slot((c, h, w))
        self.program.append(("cat", tuple(srcs), dst))
        return dst

    def flatten(self, src: int) -> int:
        c, h, w = self.shapes[src]
        dst = self._slot((c * h * w,))
        self.program.append(("flatten", src, dst))
        return dst

    # -- random choices ---------------------------------------------------
    def channels(self) -> int:
        return self.rng.randint(self.lo, self.hi)

    def can_stride(self, src: int) -> bool:
        _, h, w = self.shapes[src]
        return (h + 1) // 2 >= 2 and (w + 1) // 2 >= 2

    def conv(
        self,
        src: int,
        cout: int | None = None,
        stride: int | None = None,
        k: int | None = None,
        depthwise: bool = False,
        bn: bool | None = None,
        relu: bool | None = None,
    ) -> int:
        """Random conv (+ optional BN, ReLU); 'same' padding, stride 1 or 2."""
        rng = self.rng
        cin, h, w = self.shapes[src]
        if depthwise:
            cout, k = cin, 3
        if cout is None:
            cout = self.channels()
        if k is None:
            k = rng.choice((1, 3, 3, 5))
        if stride is None:
            stride = 2 if (self.can_stride(src) and rng.random() < 0.2) else 1
        dil = 2 if (k > 1 and rng.random() < 0.12) else 1
        pad = dil * (k - 1) // 2
        ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
        groups = cin if depthwise else 1
        use_bn = rng.random() < 0.5 if bn is None else bn
        mod = nn.Conv2d(cin, cout, k, stride=stride, padding=pad, dilation=dil, groups=groups, bias=not use_bn)
        s = self.apply(mod, src, (cout, ho, wo))
        if use_bn:
            s = self.apply(nn.BatchNorm2d(cout), s, (cout, ho, wo))
        if relu if relu is not None else rng.random() < 0.8:
            s = self.apply(nn.ReLU(inplace=False), s, (cout, ho, wo))
        return s

    def maybe_pool(self, src: int) -> int:
        c, h, w = self.shapes[src]
        if h >= 4 and w >= 4 and self.rng.random() < 0.1:
            if self.rng.random() < 0.5:
                return self.apply(nn.MaxPool2d(2, 2), src, (c, h // 2, w // 2))
            return self.apply(nn.AvgPool2d(2, 2), src, (c, h // 2, w // 2))
        return src

    def chain_step(self, src: int) -> int:
        if self.rng.random() < 0.15:
            s = self.conv(src, depthwise=True)
        else:
            s = self.conv(src)
        return self.maybe_pool(s)

    # -- DAG motifs ---------------------------------------------------------
    def residual(self, src: int) -> int:
        """Two branches of equal shape added: conv stack vs identity/projection."""
        rng = self.rng
        cin = self.shapes[src][0]
        stride = 2 if (self.can_stride(src) and rng.random() < 0.25) else 1
        cout = cin if rng.random() < 0.6 else self.channels()
        a = self.conv(src, cout=cout, stride=stride)
        for _ in range(rng.randint(0, 1)):
            a = self.conv(a, cout=cout, stride=1, relu=False)
        if stride == 1 and cout == cin:
            b = src
        else:
            b = self.conv(src, cout=cout, stride=stride, k=1, relu=False)
        s = self.add(a, b)
        if rng.random() < 0.7:
            s = self.apply(nn.ReLU(inplace=False), s, self.shapes[s])
        return s

    def concat(self, src: int) -> int:
        """2-3 branches with differing channel counts joined by channel concat."""
        rng = self.rng
        n_br = rng.randint(2, 3)
        stride = 2 if (self.can_stride(src) and rng.random() < 0.2) else 1
        # Split a total width inside [lo, hi] into distinct per-branch widths
        # when possible; otherwise fall back to lo-wide branches and reduce.
        budget = self.hi
        widths: list[int] = []
        for i in range(n_br):
            remaining = n_br - i - 1
            max_w = budget - remaining * self.lo
            if max_w < self.lo:
                break
            w = rng.randint(self.lo, max_w)
            if widths and w == widths[-1] and w + 1 <= max_w:
                w += 1
            widths.append(w)
            budget -= w
        if len(widths) < 2:  # hi < 2 * lo: cannot fit; reduced by a 1x1 below
            widths = [self.lo, min(self.lo + 1, self.hi)]
        outs = []
        for w in widths:
            b = src
            if rng.random() < 0.25 and stride == 1:
                c, h, ww = self.shapes[b]
                b = self.apply(nn.MaxPool2d(3, 1, 1), b, (c, h, ww))
                b = self.conv(b, cout=w, stride=1, k=1)
            else:
                b = self.conv(b, cout=w, stride=stride)
                if rng.random() < 0.3:
                    b = self.conv(b, cout=w, stride=1)
            outs.append(b)
        s = self.cat(outs)
        if self.shapes[s][0] > self.hi:  # bring channels back into range
            s = self.conv(s, cout=self.channels(), stride=1, k=1)
        return s


def random_cnn(
    seed: int,
    n_layers: int = 8,
    kind: str = "chain",
    channels: tuple[int, int] = (2, 16),
    input_hw: tuple[int, int] = (16, 16),
    batch: int = 1,
) -> tuple[nn.Module, tuple[int, ...]]:
    """Generate a seeded random CNN.

    Parameters
    ----------
    seed : int
        Seed for the architecture (``random.Random(seed)``) and the weights
        (a local ``torch.Generator``); the global RNGs are not used.
    n_layers : int, optional
        Approximate number of Conv2d/Linear layers, by default 8 (up to a few
        hundred is supported; keep `input_hw` and `channels` small then).
    kind : {"chain", "dag"}, optional
        ``"chain"``: a single path of convs (kernels 1/3/5, stride 1/2,
        occasional dilation 2 and depthwise convs), BN/ReLU, occasional
        max/avg pooling and optionally a final flatten + linear.
        ``"dag"``: additionally residual adds and channel concats.
    channels : tuple of int, optional
        Inclusive ``(low, high)`` range of conv output channels, by default
        ``(2, 16)``.  The first conv is fed 3 input channels.
    input_hw : tuple of int, optional
        Input height and width (need not be square), by default ``(16, 16)``.
    batch : int, optional
        Batch size of the returned input shape, by default 1.

    Returns
    -------
    model : SyntheticCNN
        The network, in ``eval()`` mode.
    input_shape : tuple of int
        ``(batch, 3, H, W)``.

    Raises
    ------
    ValueError
        If `kind` is unknown or an argument is out of range.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    lo, hi = int(channels[0]), int(channels[1])
    if lo < 1 or hi < lo:
        raise ValueError(f"channels must satisfy 1 <= low <= high, got {channels!r}")
    h, w = int(input_hw[0]), int(input_hw[1])
    if h < 1 or w < 1 or batch < 1 or n_layers < 1:
        raise ValueError(
            f"input_hw, batch and n_layers must be positive, got {input_hw!r}, {batch!r}, {n_layers!r}"
        )

    rng = random.Random(seed)
    b = _Builder(rng, lo, hi)
    b.shapes[0] = (3, h, w)
    with_linear = rng.random() < 0.5
    n_conv = max(1, n_layers - (1 if with_linear else 0))

    # Layers are created on the meta device (no default init, no global RNG
    # use) and materialised below; init_weights fills every tensor.
    with torch.device("meta"):
        s = b.conv(0)  # stem conv, so the net always starts with a weighted layer
        while b.n_weighted < n_conv:
            if kind == "dag":
                r = rng.random()
                if r < 0.3:
                    s = b.residual(s)
                    continue
                if r < 0.5:
                    s = b.concat(s)
                    continue
            s = b.chain_step(s)
        if with_linear:
            s = b.flatten(s)
            n_out = b.channels()
            s = b.apply(nn.Linear(b.shapes[s][0], n_out), s, (n_out,))
        model = SyntheticCNN(b.layers, b.program, s)
    model.to_empty(device="cpu")

    shape = (int(batch), 3, h, w)
    # Weight seed derived from the architecture RNG stream: fully determined by `seed`.
    init_weights(model, seed=rng.getrandbits(63), input_shape=shape)
    return model.eval(), shape
