"""The one-line error of a model that cannot run on its configured input shape."""

from __future__ import annotations

from .configs import ConfigError, ModelSpec

__all__ = ["input_shape_error", "shape_text"]


def shape_text(shape) -> str:
    """A shape as a command-line value: ``[1,3,224,224]``."""
    return "[" + ",".join(str(v) for v in shape) + "]"


def input_shape_error(spec: ModelSpec, shape, exc) -> ConfigError:
    """The one-line error of a model that cannot run on ``shape`` (an :class:`~iopopt.frontend.InputShapeError`).

    It names the shape the model expects where that can be told: the zoo's own
    input shape, or the given one with the channel count of the first conv.
    """
    shape = tuple(shape)
    suggestion = None
    if spec.source == "zoo":
        from ..frontend import zoo

        suggestion = zoo.input_shape(spec.name)
    expected = getattr(exc, "expected", None)
    if expected is not None and len(expected) == 4 and expected[1] != shape[1]:
        zoo_fits = suggestion is not None and suggestion[1] == expected[1]
        suggestion = suggestion if zoo_fits else (shape[0], expected[1], *shape[2:])
    if suggestion == shape:
        suggestion = None
    hint = f"; try model.input_shape={shape_text(suggestion)}" if suggestion else ""
    return ConfigError(f"model.input_shape={shape_text(shape)} does not fit model {spec.name}: {exc}{hint}")
