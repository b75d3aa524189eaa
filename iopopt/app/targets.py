"""Network models and solvers from their configs: a ``_target_`` class and its constructor's settings.

Unknown settings are refused before the class is called (one line naming the
key and the valid ones); a solver's settings are checked with its own
``check_settings``.
"""

from __future__ import annotations

import inspect

from .configs import ConfigError, _check_keys, _import_target, _mapping, _positive_number

__all__ = ["build_network", "build_solver"]


def _import_class(where: str, target, base: type) -> type:
    if not isinstance(target, str) or "." not in target:
        raise ConfigError(f"{where}._target_ must name a class as 'pkg.module.Class', got {target!r}")
    cls = _import_target(f"{where}._target_", target)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(f"{where}._target_ {target!r} is not a {base.__name__} subclass")
    return cls


def _constructor_keys(cls: type) -> frozenset | None:
    """Keyword arguments ``cls`` accepts (None when it takes ``**kwargs``)."""
    params = inspect.signature(cls).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def _instantiate(where: str, cfg, base: type):
    c = _mapping(where, cfg)
    cls = _import_class(where, c.pop("_target_", None), base)
    allowed = _constructor_keys(cls)
    if allowed is not None:
        _check_keys(where, c, allowed | {"_target_"})
    return cls, c


def build_network(cfg):
    """A :class:`~iopopt.network.NetworkModel` from a network config (``_target_`` + settings)."""
    from ..model.network import NetworkModel

    plain = _mapping("network", cfg)
    if "profile" in plain:  # network=profiled: this machine's loopback as `iopopt profile` measured it
        from .profiled import from_profile

        cfg = from_profile("network", plain)
    cls, settings = _instantiate("network", cfg, NetworkModel)
    for key, value in settings.items():
        if "bandwidth" in key and key != "device_bandwidths":
            _positive_number(f"network.{key}", value)
    for i, b in enumerate(settings.get("device_bandwidths") or ()):
        _positive_number(f"network.device_bandwidths[{i}]", b)
    for key in ("latency_s", "message_overhead_s"):
        if key in settings:
            _positive_number(f"network.{key}", settings[key], allow_zero=True)
    try:
        return cls(**settings)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"network: {exc}") from None


def build_solver(cfg):
    """A :class:`~iopopt.Solver` from a solver config (``_target_`` + constructor settings)."""
    from ..solvers.base import Solver, SolverError

    cls, settings = _instantiate("solver", cfg, Solver)
    try:
        solver = cls(**settings)
    except TypeError as exc:
        raise ConfigError(f"solver {cls.__name__}: {exc}") from None
    try:
        solver.check_settings()
    except SolverError as exc:
        raise ConfigError(f"solver settings: {exc}") from None
    return solver
