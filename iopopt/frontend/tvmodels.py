"""torchvision's classification models as iopopt inputs, for users whose torchvision imports.

iopopt does not depend on torchvision: :func:`build` imports it when called
and says so in one line when that fails (:class:`TorchvisionUnavailable`).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from .zoo.weights import init_weights

__all__ = ["TorchvisionUnavailable", "names", "build", "default_input_shape"]


class TorchvisionUnavailable(ImportError):
    """``import torchvision`` failed; the message says why, in one line."""


def _torchvision():
    try:
        import torchvision
        import torchvision.models
    except Exception as exc:  # a broken build raises RuntimeError, a missing one ImportError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TorchvisionUnavailable(f"torchvision does not import here ({type(exc).__name__}: {first})") from exc
    return torchvision


def names() -> list[str]:
    """Every classification model of ``torchvision.models`` (``list_models(module=torchvision.models)``)."""
    tv = _torchvision()
    return list(tv.models.list_models(module=tv.models))


def default_input_shape(name: str) -> tuple[int, int, int, int]:
    """(1, 3, 299, 299) for Inception-v3, (1, 3, 224, 224) for the others."""
    return (1, 3, 299, 299) if name == "inception_v3" else (1, 3, 224, 224)


def build(name: str, seed: int = 0, input_shape=None, weights: bool = True, **kwargs: Any) -> nn.Module:
    """``torchvision.models.get_model(name, weights=None, **kwargs)`` with seeded random weights, in eval mode.

    torchvision's own initialisation runs with ``torch.manual_seed(seed)``
    inside :func:`torch.random.fork_rng` (the caller's global RNG state is
    untouched). With ``input_shape``, the convolutions, linear layers and
    batch norms are then re-drawn and calibrated on that input like the zoo's
    (:func:`iopopt.zoo.init_weights`), so activations keep a sane scale and a
    comparison with the unsplit model means something (torchvision's own
    initialisation shrinks e.g. MobileNetV3's logits to about 1e-9).
    GoogLeNet is built without its auxiliary heads (they only run in
    training) unless ``aux_logits`` is given. ``weights=False`` builds the
    model on the meta device, without weights (enough to trace it), where
    the family allows (RegNet computes its widths with tensors: on the CPU).

    Raises
    ------
    TorchvisionUnavailable
        When torchvision does not import.
    ValueError
        When ``name`` is not a torchvision classification model (the message lists them).
    """
    tv = _torchvision()
    valid = names()
    if name not in valid:
        raise ValueError(f"unknown torchvision model {name!r}; valid: {', '.join(valid)}")
    if name == "googlenet":
        kwargs.setdefault("aux_logits", False)
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # GoogLeNet and Inception-v3 warn that their default initialisation will change: irrelevant here
        warnings.filterwarnings("ignore", "The default weight initialization", FutureWarning)
        torch.manual_seed(seed)
        if weights or name.startswith("regnet"):
            model = tv.models.get_model(name, weights=None, **kwargs)
        else:
            with torch.device("meta"):
                model = tv.models.get_model(name, weights=None, **kwargs)
    if input_shape is not None and weights:
        init_weights(model, seed=seed, input_shape=tuple(input_shape))
    return model.eval()
