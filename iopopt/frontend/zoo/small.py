"""Small nets: an Inception-style net with four-branch concats, and two tiny test nets."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["InceptionBlock", "InceptionMini", "TinyChain", "TinyResidual"]


def _conv_bn_relu(cin: int, cout: int, k: int, stride: int = 1, padding: int = 0) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=padding, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=False),
    )



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
