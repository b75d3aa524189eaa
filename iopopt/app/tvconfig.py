"""``model=torchvision``: validate the config and build the model (configs.py stays near 400 lines)."""

from __future__ import annotations

from collections.abc import Mapping

from .configs import ConfigError, ModelSpec, _one_line, _shape

__all__ = ["torchvision_spec", "build_torchvision"]


def torchvision_spec(m: Mapping, settings: dict) -> ModelSpec:
    """The spec of a ``source: torchvision`` model config; one-line :class:`ConfigError` when torchvision
    does not import or does not know the name."""
    from ..frontend import tvmodels

    try:
        valid = tvmodels.names()
    except tvmodels.TorchvisionUnavailable as exc:
        raise ConfigError(f"model=torchvision needs torchvision: {exc}") from None
    name = m.get("name")
    if name not in valid:
        raise ConfigError(f"model.name {name!r} is not a torchvision model; valid: {', '.join(valid)}")
    shape = settings.get("input_shape")
    settings["input_shape"] = _shape("model.input_shape", shape, 4) if shape is not None else None
    kwargs = settings.get("kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise ConfigError(f"model.kwargs must be a mapping, got {kwargs!r}")
    settings["kwargs"] = dict(kwargs)
    return ModelSpec(name, "torchvision", settings)


def build_torchvision(spec: ModelSpec, weights: bool = True):
    """``(nn.Module, input_shape)`` of a torchvision spec (``weights=False``: on the meta device where it can)."""
    from ..frontend import tvmodels

    s = dict(spec.settings)
    shape = tuple(s.get("input_shape") or tvmodels.default_input_shape(spec.name))
    try:
        module = tvmodels.build(spec.name, seed=s.get("seed", 0), input_shape=shape if weights else None,
                                weights=weights, **s["kwargs"])
    except Exception as exc:  # e.g. a keyword get_model does not take
        raise ConfigError(
            f"torchvision model {spec.name} could not be built (kwargs={s['kwargs']!r}): "
            f"{type(exc).__name__}: {_one_line(exc)}"
        ) from None
    return module, shape
