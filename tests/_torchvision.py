"""Test-only: import torchvision's model definitions beside the CPU torch wheel.

Why: the registry's torchvision wheel (``torchvision==0.28.0``, in the
``dev`` extra) is a CUDA build. Its compiled ops (``torchvision/_C.so``) link
against CUDA libraries the CPU torch wheel lacks, so they do not load, and
``import torchvision`` then fails at ``torchvision/_meta_registrations.py``,
which registers fake kernels for two operators whose schemas only ``_C.so``
defines: ``RuntimeError: operator torchvision::nms does not exist``. The model
definitions are pure Python and never call those operators.

The workaround: when (and only when) the import fails for exactly that
reason, define the two schemas (``torchvision::nms`` and
``torchvision::qnms``, as ``_C.so`` would) and import again. Where torchvision
imports normally nothing is done. The schemas have no kernel: calling
``torchvision.ops.nms`` still fails, loudly. Never used by the library: a user
with a working torchvision gets ``model=torchvision`` without it.

The alternative, torch 2.14.1 with torchvision 0.29.1, imports as is but is a
5.5 GB CUDA download, and moves every result off the pinned torch 2.13.0.
"""

from __future__ import annotations

import contextlib
import sys
import warnings

import pytest
import torch

__all__ = ["torchvision", "require", "classification_models", "family", "FAMILIES", "meta_model", "weights_of"]

_SCHEMA = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"


def _import():
    try:
        import torchvision
    except RuntimeError as exc:
        if "torchvision::nms does not exist" not in str(exc) and "torchvision::qnms" not in str(exc):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        for op in ("nms", "qnms"):
            with contextlib.suppress(RuntimeError):  # defined by an earlier attempt
                torch.library.define(f"torchvision::{op}", _SCHEMA)
        import torchvision
    import torchvision.models
    return torchvision


try:
    torchvision = _import()
except ImportError:  # not installed: the tests that need it skip
    torchvision = None


def require():
    """torchvision, or skip the calling test."""
    if torchvision is None:
        pytest.skip("torchvision is not installed (pip install -e '.[dev]')")
    return torchvision


#: Out of scope for iopopt's CNN op kinds (attention): ViT, Swin, MaxViT.
_EXCLUDED = ("vit_", "swin_", "maxvit_")


def classification_models() -> list[str]:
    """torchvision's classification CNNs (every classification model but the transformers)."""
    tv = require()
    return [m for m in tv.models.list_models(module=tv.models) if not m.startswith(_EXCLUDED)]


#: Families by name prefix (longest first where one prefix contains another).
_PREFIXES = (
    "alexnet", "convnext", "densenet", "efficientnet_v2", "efficientnet", "googlenet", "inception", "mnasnet",
    "mobilenet_v2", "mobilenet_v3", "regnet_x", "regnet_y", "resnext", "wide_resnet", "resnet", "shufflenet",
    "squeezenet", "vgg",
)


def family(name: str) -> str:
    """The family of a torchvision model (``vgg16_bn`` → ``vgg``, ``resnext50_32x4d`` → ``resnext``)."""
    return next(p for p in _PREFIXES if name.startswith(p))


#: One small model per family, the input it runs at in the default suite (small where the family
#: allows), and the family name.
FAMILIES = {
    "alexnet": ("alexnet", (1, 3, 64, 64)),
    "convnext": ("convnext_tiny", (1, 3, 64, 64)),
    "densenet": ("densenet121", (1, 3, 64, 64)),
    "efficientnet": ("efficientnet_b0", (1, 3, 64, 64)),
    "efficientnet_v2": ("efficientnet_v2_s", (1, 3, 64, 64)),
    "googlenet": ("googlenet", (1, 3, 64, 64)),
    "inception": ("inception_v3", (1, 3, 80, 80)),
    "mnasnet": ("mnasnet0_5", (1, 3, 64, 64)),
    "mobilenet_v2": ("mobilenet_v2", (1, 3, 64, 64)),
    "mobilenet_v3": ("mobilenet_v3_small", (1, 3, 64, 64)),
    "regnet_x": ("regnet_x_400mf", (1, 3, 64, 64)),
    "regnet_y": ("regnet_y_400mf", (1, 3, 64, 64)),
    "resnet": ("resnet18", (1, 3, 64, 64)),
    "resnext": ("resnext50_32x4d", (1, 3, 64, 64)),
    "shufflenet": ("shufflenet_v2_x0_5", (1, 3, 64, 64)),
    "squeezenet": ("squeezenet1_1", (1, 3, 64, 64)),
    "vgg": ("vgg11", (1, 3, 32, 32)),
    "wide_resnet": ("wide_resnet50_2", (1, 3, 64, 64)),
}


def meta_model(name: str):
    """``name`` without weights (on the meta device) where the family allows, for counting MACs and parameters.

    RegNet computes its stage widths with torch ops and ``.tolist()`` and cannot be built on the meta
    device; it is built on the CPU. GoogLeNet without its auxiliary heads, as its published figures.
    """
    tv = require()
    kwargs = {"aux_logits": False} if name == "googlenet" else {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The default weight initialization", FutureWarning)
        if name.startswith("regnet"):
            with torch.random.fork_rng(devices=[]):
                return tv.models.get_model(name, **kwargs).eval()
        with torch.device("meta"):
            return tv.models.get_model(name, **kwargs).eval()


def weights_of(name: str) -> list:
    """The published weights entries of ``name`` (metadata only, nothing is downloaded)."""
    tv = require()
    return list(tv.models.get_model_weights(name))
