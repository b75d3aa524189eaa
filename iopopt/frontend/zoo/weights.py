"""Deterministic random weights for zoo models, calibrated so activations keep a sane scale."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["init_weights"]


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
