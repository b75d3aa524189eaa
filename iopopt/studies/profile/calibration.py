"""Calibration networks: representative CNN layers whose operators ``iopopt profile`` times in context.

Each operator is timed inside a forward pass of one of these networks (as the
executors run it: its input just written by the previous operator, its output a
fresh tensor, every tensor freed after its last consumer), so caches and the
allocator are in the state they are in during inference. The layers cover the
families of classic image CNNs at 224x224 -- plain conv/ReLU/max-pool stacks
with a large fully-connected head, residual stages with batchnorm and 1x1
downsampling, inverted-residual blocks with depthwise convs, and
multi-branch blocks joined by a channel concat -- at sizes chosen between
those of the zoo models, not equal to them.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CALIBRATION_NETS", "calibration_nets"]


def _init(module: nn.Module, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.01)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.fill_(1.0)
                m.bias.zero_()
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
    return module.eval()


def plain() -> nn.Module:
    """A conv/ReLU/max-pool stack (AlexNet/VGG family) with a large fully-connected head."""
    c = (48, 96, 192, 320, 320)
    layers: list[nn.Module] = [nn.Conv2d(3, 24, 3, padding=1), nn.ReLU(), nn.Conv2d(24, 32, 3, padding=1), nn.ReLU(),
                               nn.MaxPool2d(2, 2), nn.Conv2d(32, c[0], 5, padding=2), nn.ReLU(),
                               nn.MaxPool2d(3, 2, 1)]
    prev = c[0]
    for ch in c[1:]:
        layers += [nn.Conv2d(prev, ch, 3, padding=1), nn.ReLU(), nn.Conv2d(ch, ch, 3, padding=1), nn.ReLU(),
                   nn.MaxPool2d(2, 2)]
        prev = ch
    layers += [nn.AdaptiveAvgPool2d((6, 6)), nn.Flatten(), nn.Dropout(), nn.Linear(prev * 36, 6144), nn.ReLU(),
               nn.Dropout(), nn.Linear(6144, 2048), nn.ReLU(), nn.Linear(2048, 1000)]
    return nn.Sequential(*layers)


class _Basic(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.relu(self.b1(self.c1(x)))
        y = self.b2(self.c2(y))
        return self.relu(y + (x if self.down is None else self.down(x)))


class Residual(nn.Module):
    """Residual stages with batchnorm and 1x1 downsampling (ResNet family)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 48, 7, 2, 3, bias=False), nn.BatchNorm2d(48), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        blocks = []
        prev = 48
        for i, ch in enumerate((48, 96, 160, 384)):
            blocks += [_Basic(prev, ch, 1 if i == 0 else 2), _Basic(ch, ch, 1)]
            prev = ch
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(prev, 768)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


class _Inverted(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hid = cin * expand
        self.body = nn.Sequential(
            nn.Conv2d(cin, hid, 1, bias=False), nn.BatchNorm2d(hid), nn.ReLU6(),
            nn.Conv2d(hid, hid, 3, stride, 1, groups=hid, bias=False), nn.BatchNorm2d(hid), nn.ReLU6(),
            nn.Conv2d(hid, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )
        self.skip = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.skip else y


class Mobile(nn.Module):
    """Inverted-residual blocks with depthwise convs and ReLU6 (MobileNet family)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 24, 3, 2, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU6())
        spec = ((24, 16, 1, 1), (16, 32, 2, 6), (32, 32, 1, 6), (32, 48, 2, 6), (48, 48, 1, 6), (48, 80, 2, 6),
                (80, 80, 1, 6), (80, 112, 1, 6), (112, 192, 2, 6), (192, 192, 1, 6))
        self.blocks = nn.Sequential(*(_Inverted(*s) for s in spec))
        self.head = nn.Sequential(nn.Conv2d(192, 960, 1, bias=False), nn.BatchNorm2d(960), nn.ReLU6())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(960, 1000)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.head(self.blocks(self.stem(x)))), 1))


class _Branches(nn.Module):
    def __init__(self, cin: int, each: int):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(cin, each, 1), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(cin, each, 1), nn.ReLU(), nn.Conv2d(each, each, 3, padding=1), nn.ReLU())
        self.c = nn.Sequential(nn.AvgPool2d(3, 1, 1), nn.Conv2d(cin, each, 1), nn.ReLU())
        self.d = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(cin, each, 1), nn.ReLU())

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x), self.c(x), self.d(x)], 1)


class Branches(nn.Module):
    """Multi-branch blocks joined by a channel concat, with average and max pooling (Inception family)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 48, 5, 2, 2), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        self.b1 = _Branches(48, 32)
        self.p1 = nn.MaxPool2d(3, 2, 1)
        self.b2 = _Branches(128, 64)
        self.p2 = nn.AvgPool2d(2, 2)
        self.b3 = _Branches(256, 96)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(384, 1000)

    def forward(self, x):
        y = self.b3(self.p2(self.b2(self.p1(self.b1(self.stem(x))))))
        return self.fc(torch.flatten(self.pool(y), 1))


#: name -> (builder, input shape)
CALIBRATION_NETS = {
    "plain": (plain, (1, 3, 224, 224)),
    "residual": (Residual, (1, 3, 224, 224)),
    "mobile": (Mobile, (1, 3, 224, 224)),
    "branches": (Branches, (1, 3, 224, 224)),
}


def calibration_nets(names=None):
    """``(name, module, input_shape)`` of every calibration network (seeded weights, eval mode)."""
    out = []
    for i, name in enumerate(names or CALIBRATION_NETS):
        build, shape = CALIBRATION_NETS[name]
        out.append((name, _init(build(), seed=i), shape))
    return out
