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

from collections.abc import Callable

import torch
from torch import nn

from .classic import VGG, VGG16_CFG, AlexNet
from .mobilenet import MobileNetV2
from .resnet import BasicBlock, Bottleneck, ResNet
from .small import InceptionMini, TinyChain, TinyResidual
from .weights import init_weights

__all__ = [
    "build",
    "names",
    "input_shape",
    "init_weights",
    "AlexNet",
    "VGG",
    "VGG16_CFG",
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "MobileNetV2",
    "InceptionMini",
    "TinyChain",
    "TinyResidual",
]


_REGISTRY: dict[str, tuple[Callable[[int], nn.Module], tuple[int, ...]]] = {
    "alexnet": (lambda nc: AlexNet(nc), (1, 3, 224, 224)),
    "vgg16": (lambda nc: VGG(VGG16_CFG, nc), (1, 3, 224, 224)),
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


def input_shape(name: str) -> tuple[int, ...]:
    """The input shape a zoo model is built for, e.g. ``(1, 3, 224, 224)`` (without building it).

    >>> input_shape("tiny_chain")
    (1, 3, 32, 32)
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown model name {name!r}; valid names: {', '.join(names())}")
    return _REGISTRY[name][1]


def build(name: str, num_classes: int = 1000, seed: int = 0, weights: bool = True) -> tuple[nn.Module, tuple[int, ...]]:
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
    weights : bool, optional
        False: leave the model on the meta device, without weights (enough
        to trace it, not to run it; much faster for large models).

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
    if not weights:
        return model.eval(), shape
    model.to_empty(device="cpu")
    init_weights(model, seed=seed, input_shape=shape)
    return model.eval(), shape
