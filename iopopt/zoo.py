"""Model zoo of classic CNNs written in plain torch (no torchvision).

The architectures replicate torchvision's classic definitions (AlexNet,
VGG-16, ResNet-18/50 v1.5, MobileNetV2) plus a small Inception-style net and
two tiny test nets.  Every model is symbolically traceable with ``torch.fx``
and is returned in ``eval()`` mode with deterministic random weights.

Examples
--------
>>> from iopopt import zoo
>>> model, shape = zoo.build("resnet18")
>>> shape
(1, 3, 224, 224)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = ["build", "names", "init_weights"]


# --------------------------------------------------------------------------
# Weight initialisation
# --------------------------------------------------------------------------


def init_weights(
    model: nn.Module,
    seed: int = 0,
    input_shape: Sequence[int] | None = None,
) -> nn.Module:
    """Deterministically re-initialise all parameters and BN buffers.

    Conv/Linear weights get Kaiming-normal (fan-in, ReLU gain) values, biases
    small normal values; BatchNorm layers get ``weight ~ U(0.8, 1.2)``,
    ``bias ~ N(0, 0.05)``, ``running_mean ~ N(0, 0.05)`` and
    ``running_var ~ U(0.8, 1.2)`` (``num_batches_tracked`` is zeroed, so
    modules materialised from the meta device are fully defined).  All draws come from a local
    ``torch.Generator`` seeded with `seed`; the global RNG is untouched.

    If `input_shape` is given, a single calibration pass is then run on a
    generator-drawn ``N(0, 1)`` input: each Conv2d/Linear layer, in execution
    order, has its weight and bias divided by the standard deviation of its
    output (a one-pass LSUV-style rescaling), so activations stay O(1) even
    through deep residual stacks.

    Parameters
    ----------
    model : nn.Module
        Module to initialise in place.
    seed : int, optional
        Seed of the local generator, by default 0.
    input_shape : sequence of int, optional
        Input shape used for the calibration pass; no calibration if None.

    Returns
    -------
    nn.Module
        The same `model`, for chaining.
    """
    gen = torch.Generator().manual_seed(int(seed))

    def randn(shape: torch.Size) -> torch.Tensor:
        return torch.randn(shape, generator=gen)

    def uniform(shape: torch.Size, lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(shape, generator=gen)

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(randn(m.weight.shape) * math.sqrt(2.0 / fan_in))
                if m.bias is not None:
                    m.bias.copy_(randn(m.bias.shape) * 0.01)
            elif isinstance(m, nn.BatchNorm2d):
                if m.weight is not None:
                    m.weight.copy_(uniform(m.weight.shape, 0.8, 1.2))
                    m.bias.copy_(randn(m.bias.shape) * 0.05)
                if m.running_mean is not None:
                    m.running_mean.copy_(randn(m.running_mean.shape) * 0.05)
                    m.running_var.copy_(uniform(m.running_var.shape, 0.8, 1.2))
                if m.num_batches_tracked is not None:
                    m.num_batches_tracked.zero_()

        if input_shape is not None:
            _calibrate(model, tuple(input_shape), gen)
    return model


def _calibrate(model: nn.Module, input_shape: tuple[int, ...], gen: torch.Generator) -> None:
    """Rescale Conv2d/Linear layers so each output has unit std (one pass)."""

    def hook(mod: nn.Module, _inp: tuple, out: torch.Tensor) -> torch.Tensor:
        std = float(out.float().std()) if out.numel() > 1 else float(out.abs().mean())
        if not math.isfinite(std) or std < 1e-12:
            return out
        mod.weight.div_(std)
        if mod.bias is not None:
            mod.bias.div_(std)
        return out / std

    was_training = model.training
    model.eval()
    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    try:
        with torch.no_grad():
            model(torch.randn(input_shape, generator=gen))
    finally:
        for h in handles:
            h.remove()
    model.train(was_training)


# --------------------------------------------------------------------------
# Shared building blocks
# --------------------------------------------------------------------------


def _conv_bn_relu(cin: int, cout: int, k: int, stride: int = 1, padding: int = 0) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=padding, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=False),
    )


# --------------------------------------------------------------------------
# AlexNet
# --------------------------------------------------------------------------


class AlexNet(nn.Module):
    """AlexNet as defined by torchvision (single-GPU variant).

    Parameters
    ----------
    num_classes : int
        Number of output logits.
    dropout : float
        Dropout probability of the classifier.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=False),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=False),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=False),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=False),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


# --------------------------------------------------------------------------
# VGG-16
# --------------------------------------------------------------------------

_VGG16_CFG: list[int | str] = [
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
    512, 512, 512, "M", 512, 512, 512, "M",
]


class VGG(nn.Module):
    """VGG without batch norm, as defined by torchvision.

    Parameters
    ----------
    cfg : list of int or "M"
        Conv output widths, ``"M"`` for a 2x2 max-pool.
    num_classes : int
        Number of output logits.
    dropout : float
        Dropout probability of the classifier.
    """

    def __init__(self, cfg: Sequence[int | str], num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(cin, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=False)]
                cin = int(v)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(inplace=False),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=False),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


# --------------------------------------------------------------------------
# ResNet (v1.5)
# --------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=False)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=False)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + identity
        return self.relu2(out)


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck block (stride on the 3x3 conv)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        width = planes
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu1 = nn.ReLU(inplace=False)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu2 = nn.ReLU(inplace=False)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu3 = nn.ReLU(inplace=False)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = out + identity
        return self.relu3(out)


class ResNet(nn.Module):
    """ResNet as defined by torchvision (v1.5).

    Parameters
    ----------
    block : type
        ``BasicBlock`` or ``Bottleneck``.
    layers : sequence of int
        Number of blocks per stage.
    num_classes : int
        Number of output logits.
    """

    def __init__(self, block: type, layers: Sequence[int], num_classes: int = 1000) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=False)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block: type, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


# --------------------------------------------------------------------------
# MobileNetV2
# --------------------------------------------------------------------------


def _make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round `v` to the nearest multiple of `divisor` (not below 90 % of v)."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _conv_bn_relu6(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + ReLU6 with 'same' padding."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=(k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=False),
    )


class InvertedResidual(nn.Module):
    """MobileNetV2 inverted residual block with linear bottleneck."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_conv_bn_relu6(inp, hidden, k=1))
        layers += [
            _conv_bn_relu6(hidden, hidden, k=3, stride=stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:  # static python bool, fx-safe
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 (width 1.0) as defined by torchvision.

    Parameters
    ----------
    num_classes : int
        Number of output logits.
    width_mult : float
        Channel width multiplier.
    dropout : float
        Dropout probability of the classifier.
    """

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2) -> None:
        super().__init__()
        setting = [
            # t, c, n, s
            [1, 16, 1, 1],
            [6, 24, 2, 2],
            [6, 32, 3, 2],
            [6, 64, 4, 2],
            [6, 96, 3, 1],
            [6, 160, 3, 2],
            [6, 320, 1, 1],
        ]
        input_channel = _make_divisible(32 * width_mult)
        self.last_channel = _make_divisible(1280 * max(1.0, width_mult))
        features: list[nn.Module] = [_conv_bn_relu6(3, input_channel, stride=2)]
        for t, c, n, s in setting:
            out_channel = _make_divisible(c * width_mult)
            for i in range(n):
                features.append(InvertedResidual(input_channel, out_channel, s if i == 0 else 1, t))
                input_channel = out_channel
        features.append(_conv_bn_relu6(input_channel, self.last_channel, k=1))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


# --------------------------------------------------------------------------
# Inception-mini
# --------------------------------------------------------------------------


class InceptionBlock(nn.Module):
    """Inception block with four parallel branches joined by channel concat.

    Parameters
    ----------
    cin : int
        Input channels.
    c1 : int
        Output channels of the 1x1 branch.
    c3r, c3 : int
        Reduction and output channels of the 1x1 -> 3x3 branch.
    c5r, c5 : int
        Reduction and output channels of the 1x1 -> 3x3 -> 3x3 branch.
    cp : int
        Output channels of the maxpool -> 1x1 branch.
    """

    def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, cp: int) -> None:
        super().__init__()
        self.branch1 = _conv_bn_relu(cin, c1, 1)
        self.branch2 = nn.Sequential(_conv_bn_relu(cin, c3r, 1), _conv_bn_relu(c3r, c3, 3, padding=1))
        self.branch3 = nn.Sequential(
            _conv_bn_relu(cin, c5r, 1),
            _conv_bn_relu(c5r, c5, 3, padding=1),
            _conv_bn_relu(c5, c5, 3, padding=1),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1), _conv_bn_relu(cin, cp, 1)
        )
        self.out_channels = c1 + c3 + c5 + cp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionMini(nn.Module):
    """Small Inception-style network for 64x64 inputs.

    Parameters
    ----------
    num_classes : int
        Number of output logits.
    """

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            _conv_bn_relu(3, 64, 3, stride=2, padding=1),  # 64 -> 32
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),  # 32 -> 16
        )
        self.block1 = InceptionBlock(64, 64, 48, 96, 16, 32, 32)  # -> 224 ch
        self.block2 = InceptionBlock(224, 128, 96, 160, 32, 64, 64)  # -> 416 ch
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.block2.out_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.block1(x)
        x = self.block2(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


# --------------------------------------------------------------------------
# Tiny test nets
# --------------------------------------------------------------------------


class TinyChain(nn.Module):
    """Pure chain: three convs with ReLU, a max-pool, flatten, linear (32x32 input)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu1 = nn.ReLU(inplace=False)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.relu2 = nn.ReLU(inplace=False)
        self.pool = nn.MaxPool2d(2)  # 32 -> 16
        self.conv3 = nn.Conv2d(16, 16, 3, stride=2, padding=1)  # 16 -> 8
        self.relu3 = nn.ReLU(inplace=False)
        self.fc = nn.Linear(16 * 8 * 8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.conv1(x))
        x = self.relu2(self.conv2(x))
        x = self.pool(x)
        x = self.relu3(self.conv3(x))
        x = torch.flatten(x, 1)
        return self.fc(x)


class TinyResidual(nn.Module):
    """Tiny DAG: stem, one residual add block, a two-branch channel concat (32x32 input)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.stem = _conv_bn_relu(3, 16, 3, padding=1)
        self.conv1 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu1 = nn.ReLU(inplace=False)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.relu2 = nn.ReLU(inplace=False)
        self.branch_a = _conv_bn_relu(16, 8, 1)
        self.branch_b = _conv_bn_relu(16, 24, 3, stride=1, padding=1)
        self.pool = nn.MaxPool2d(2)  # 32 -> 16
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + x
        out = self.relu2(out)
        out = torch.cat([self.branch_a(out), self.branch_b(out)], 1)
        out = self.pool(out)
        out = self.avgpool(out)
        out = torch.flatten(out, 1)
        return self.fc(out)


# --------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------

_REGISTRY: dict[str, tuple[Callable[[int], nn.Module], tuple[int, ...]]] = {
    "alexnet": (lambda nc: AlexNet(nc), (1, 3, 224, 224)),
    "vgg16": (lambda nc: VGG(_VGG16_CFG, nc), (1, 3, 224, 224)),
    "resnet18": (lambda nc: ResNet(BasicBlock, [2, 2, 2, 2], nc), (1, 3, 224, 224)),
    "resnet50": (lambda nc: ResNet(Bottleneck, [3, 4, 6, 3], nc), (1, 3, 224, 224)),
    "mobilenet_v2": (lambda nc: MobileNetV2(nc), (1, 3, 224, 224)),
    "inception_mini": (lambda nc: InceptionMini(nc), (1, 3, 64, 64)),
    "tiny_chain": (lambda nc: TinyChain(nc), (1, 3, 32, 32)),
    "tiny_residual": (lambda nc: TinyResidual(nc), (1, 3, 32, 32)),
}


def names() -> list[str]:
    """List the available model names.

    Returns
    -------
    list of str
        Sorted model names accepted by :func:`build`.
    """
    return sorted(_REGISTRY)


def build(name: str, num_classes: int = 1000, seed: int = 0) -> tuple[nn.Module, tuple[int, ...]]:
    """Build a zoo model with deterministic random weights.

    Parameters
    ----------
    name : str
        Model name, one of :func:`names`.
    num_classes : int, optional
        Number of output logits, by default 1000.
    seed : int, optional
        Seed of the local ``torch.Generator`` used for the weights, by
        default 0.  The global torch RNG is not used.

    Returns
    -------
    model : nn.Module
        The model, in ``eval()`` mode.
    input_shape : tuple of int
        Input shape with batch size 1, e.g. ``(1, 3, 224, 224)``.

    Raises
    ------
    ValueError
        If `name` is not a known model name.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown model name {name!r}; valid names: {', '.join(names())}")
    factory, shape = _REGISTRY[name]
    # Build on the meta device: skips torch's default init (slow, and it would
    # draw from the global RNG); init_weights then fills every tensor.
    with torch.device("meta"):
        model = factory(int(num_classes))
    model.to_empty(device="cpu")
    init_weights(model, seed=seed, input_shape=shape)
    return model.eval(), shape
