"""Turn the Hydra configuration into library objects.

This is the only module besides :mod:`iopopt.app` that reads configuration
trees. It accepts an OmegaConf ``DictConfig`` or a plain mapping and returns
real objects: an ``nn.Module`` with its input shape, a :class:`~iopopt.Cluster`,
a :class:`~iopopt.network.NetworkModel` and a :class:`~iopopt.Solver`.

Every problem with the configuration (an unknown or misspelt key, a
non-positive bandwidth, a model target that does not import or returns no
``nn.Module``) raises :class:`ConfigError` with one line naming the bad value
and the valid options; the CLI prints that line and exits with status 2.

Group schemas (the keys each config may have):

- ``model``: ``source`` selects the schema (:data:`MODEL_KEYS`): ``zoo``
  (``name``, ``input_shape``, ``seed``, ``num_classes``), ``custom``
  (``target`` = ``pkg.module.fn`` returning an ``nn.Module``, ``kwargs``,
  ``input_shape``), ``synthetic`` (:func:`iopopt.synthetic.random_cnn`
  arguments) or ``torchvision`` (``name``, ``input_shape``, ``seed``,
  ``kwargs``; needs a torchvision that imports).
- ``cluster``: ``name``, ``host``, ``split``, ``devices`` (each
  :data:`DEVICE_KEYS`); or ``profile`` (and ``count``): the cluster an
  ``iopopt profile`` wrote (:mod:`iopopt.app.profiled`). A ``network`` with
  ``profile`` likewise reads the profile's network.
- ``network`` and ``solver``: ``_target_`` names a class; the other keys are
  its constructor's keyword arguments.
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..model.cluster import DEVICE_KEYS as CONFIG_DEVICE_KEYS
from ..model.ranges import range_error

__all__ = [
    "ConfigError",
    "TOP_LEVEL_KEYS",
    "MODEL_KEYS",
    "CLUSTER_KEYS",
    "DEVICE_KEYS",
    "ModelSpec",
    "to_plain",
    "check_top_level",
    "model_spec",
    "build_model",
    "build_cluster",
]


class ConfigError(ValueError):
    """A configuration value is invalid; the message names it and the valid options."""


#: Keys allowed at the top level of the composed config (groups and run settings).
TOP_LEVEL_KEYS = frozenset(
    {
        "model",
        "cluster",
        "network",
        "solver",
        "study",
        "verify",
        "threads",
        "dtype_bytes",
        "save_per_op",
        "grid",
        "gap",
        "fidelity",
        "plan_from",
        "resume",
        "pareto",
        "robustness",
        "executor",
        "testbed",
    }
)
STUDIES = ("single", "grid", "gap", "fidelity", "pareto", "robustness", "paper_measured")
#: Allowed keys of a model config, per ``source``.
MODEL_KEYS = {
    "zoo": frozenset({"source", "name", "input_shape", "seed", "num_classes"}),
    "custom": frozenset({"source", "name", "target", "kwargs", "input_shape"}),
    "synthetic": frozenset({"source", "name", "seed", "n_layers", "kind", "channels", "input_hw", "batch"}),
    "torchvision": frozenset({"source", "name", "input_shape", "seed", "kwargs"}),
}
CLUSTER_KEYS = frozenset({"name", "host", "split", "devices", "subsets", "fused_depth"})
DEVICE_KEYS = frozenset(CONFIG_DEVICE_KEYS)


def to_plain(cfg) -> Any:
    """A resolved plain-python copy of a DictConfig/ListConfig (or the value itself)."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
        from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException
    except ImportError:  # pragma: no cover - omegaconf comes with hydra-core
        return cfg
    if not isinstance(cfg, (DictConfig, ListConfig)):
        return cfg
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as exc:
        key = getattr(exc, "full_key", None) or "a key"
        raise ConfigError(
            f"{key} is required (it is ??? in its config); set it on the command line: {key}=..."
        ) from None
    except OmegaConfBaseException as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None


def _one_line(exc: BaseException) -> str:
    """The first line of an exception's message."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _mapping(where: str, cfg) -> dict:
    cfg = to_plain(cfg)
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(cfg).__name__} {cfg!r}")
    return dict(cfg)


def _check_keys(where: str, cfg: Mapping, allowed) -> None:
    unknown = sorted(set(cfg) - set(allowed))
    if unknown:
        raise ConfigError(
            f"unknown key {where}.{unknown[0]} (value {cfg[unknown[0]]!r}); valid keys: {', '.join(sorted(allowed))}"
        )


def _import_target(label: str, target: str):
    """The object ``target`` (``pkg.module.attr``) names; ``label`` (e.g. ``model.target``) heads the error."""
    mod_name, _, attr = target.rpartition(".")
    try:
        return getattr(importlib.import_module(mod_name), attr)
    except ImportError as exc:
        raise ConfigError(f"{label} {target!r} does not import: {exc}") from None
    except AttributeError:
        raise ConfigError(f"{label} {target!r}: module {mod_name!r} has no attribute {attr!r}") from None


def _positive_number(where: str, value, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
    if ok and (value > 0 or (allow_zero and value == 0)):
        # the figure's name: the last key of the path, without an index (cluster.devices[0].flops_per_s)
        field = where.rpartition(".")[2].partition("[")[0]
        if where.rpartition(".")[0].rpartition(".")[2] in ("kind_flops_per_s", "kind_bytes_per_s"):
            field = where.rpartition(".")[0].rpartition(".")[2]  # a per-kind rate: cluster...kind_flops_per_s.linear
        bad = range_error(field, value, where)
        if bad is not None:
            raise ConfigError(bad)
        return value
    need = ">= 0" if allow_zero else "> 0"
    raise ConfigError(f"{where} must be a number {need}, got {value!r}")


def _kind_numbers(where: str, value, valid, hint: str = "") -> dict[str, float]:
    """A mapping op kind -> positive number (per-kind rates or bandwidths of a device)."""
    value = _mapping(where, value or {})
    for kind, number in value.items():
        if kind not in valid:
            raise ConfigError(
                f"unknown op kind {where}.{kind} (value {number!r}); valid kinds: {', '.join(valid)}{hint}"
            )
        _positive_number(f"{where}.{kind}", number)
    return {k: float(v) for k, v in value.items()}


def check_top_level(cfg) -> dict:
    """Check the top-level keys and run settings; return them as a plain dict."""
    plain = _mapping("config", cfg)
    _check_keys("config", {k: v for k, v in plain.items() if k != "hydra"}, TOP_LEVEL_KEYS)
    study = plain.get("study", "single")
    if study not in STUDIES:
        raise ConfigError(f"study must be one of {', '.join(STUDIES)}, got {study!r}")
    if not isinstance(plain.get("verify", False), bool):
        raise ConfigError(f"verify must be true or false, got {plain.get('verify')!r}")
    if not isinstance(plain.get("resume", False), bool):
        raise ConfigError(f"resume must be true or false, got {plain.get('resume')!r}")
    threads = plain.get("threads", "auto")
    if threads != "auto" and threads is not None and not (isinstance(threads, int) and threads >= 1):
        raise ConfigError(f"threads must be 'auto', null or a positive integer, got {threads!r}")
    if plain.get("dtype_bytes", 4) not in (1, 2, 4, 8):
        raise ConfigError(f"dtype_bytes must be one of 1, 2, 4, 8, got {plain.get('dtype_bytes')!r}")
    return plain


# -- models -----------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """A validated model configuration: how to build the module and what to call it."""

    name: str
    source: str
    settings: Mapping[str, Any]

    def key(self) -> str:
        """A stable string identifying the model and its settings."""
        return json.dumps({"source": self.source, "name": self.name, **self.settings}, sort_keys=True, default=str)


def _shape(where: str, value, length: int) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or len(value) != length or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value
    ):
        raise ConfigError(f"{where} must be a list of {length} positive integers, got {value!r}")
    return tuple(value)


def model_spec(cfg) -> ModelSpec:
    """Validate a model config (see the module docstring) without building anything."""
    m = _mapping("model", cfg)
    source = m.get("source", "zoo")
    if source not in MODEL_KEYS:
        raise ConfigError(f"model.source must be one of {', '.join(MODEL_KEYS)}, got {source!r}")
    _check_keys("model", m, MODEL_KEYS[source])
    settings = {k: v for k, v in m.items() if k not in ("source", "name")}
    if source == "zoo":
        from ..frontend import zoo

        name = m.get("name")
        if name not in zoo.names():
            raise ConfigError(f"model.name {name!r} is not a zoo model; valid: {', '.join(zoo.names())}")
        if settings.get("input_shape") is not None:
            settings["input_shape"] = _shape("model.input_shape", settings["input_shape"], 4)
        return ModelSpec(name, source, settings)
    if source == "torchvision":
        from .tvconfig import torchvision_spec

        return torchvision_spec(m, settings)
    if source == "custom":
        target = m.get("target")
        if not isinstance(target, str) or "." not in target:
            raise ConfigError(
                f"model.target must name an importable callable as 'pkg.module.fn', got {target!r}"
            )
        settings["input_shape"] = _shape("model.input_shape", m.get("input_shape"), 4)
        kwargs = m.get("kwargs") or {}
        if not isinstance(kwargs, Mapping):
            raise ConfigError(f"model.kwargs must be a mapping, got {kwargs!r}")
        settings["kwargs"] = dict(kwargs)
        return ModelSpec(m.get("name") or target.rpartition(".")[2], source, settings)
    from ..frontend.synthetic import KINDS

    kind = m.get("kind", "chain")
    if kind not in KINDS:
        raise ConfigError(f"model.kind must be one of {', '.join(KINDS)}, got {kind!r}")
    n_layers = m.get("n_layers", 8)
    if not isinstance(n_layers, int) or isinstance(n_layers, bool) or n_layers < 1:
        raise ConfigError(f"model.n_layers must be a positive integer, got {n_layers!r}")
    seed = m.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"model.seed must be an integer, got {seed!r}")
    for key in ("channels", "input_hw"):
        if key in settings:
            settings[key] = _shape(f"model.{key}", settings[key], 2)
    name = m.get("name") or "synthetic"
    if name == "synthetic":  # the default name carries the instance's identity
        name = f"syn-{kind}-L{n_layers}-s{seed}"
    return ModelSpec(name, source, settings)


def build_model(spec: ModelSpec, weights: bool = True):
    """Build the module of ``spec``; returns ``(nn.Module, input_shape)``.

    ``weights=False`` lets a zoo or torchvision model stay on the meta device
    (enough to trace it; custom and synthetic models are built as they are).
    """
    from torch import nn

    s = dict(spec.settings)
    if spec.source == "zoo":
        from ..frontend import zoo

        try:
            module, shape = zoo.build(spec.name, num_classes=s.get("num_classes", 1000), seed=s.get("seed", 0),
                                      weights=weights)
        except Exception as exc:  # e.g. num_classes=0
            raise ConfigError(
                f"model {spec.name} could not be built (num_classes={s.get('num_classes', 1000)!r}, "
                f"seed={s.get('seed', 0)!r}): {type(exc).__name__}: {_one_line(exc)}"
            ) from None
        return module, tuple(s.get("input_shape") or shape)
    if spec.source == "torchvision":
        from .tvconfig import build_torchvision

        return build_torchvision(spec, weights)
    if spec.source == "synthetic":
        from ..frontend.synthetic import random_cnn

        try:
            return random_cnn(**s)
        except ValueError as exc:
            raise ConfigError(f"model (synthetic): {exc}") from None
    target = s["target"]
    fn = _import_target("model.target", target)
    if not callable(fn):
        raise ConfigError(f"model.target {target!r} is not callable (it is a {type(fn).__name__})")
    try:
        module = fn(**s["kwargs"])
    except TypeError as exc:
        raise ConfigError(f"model.target {target!r} rejected model.kwargs {s['kwargs']!r}: {_one_line(exc)}") from None
    except Exception as exc:  # the user's constructor failed: one line, not its traceback
        raise ConfigError(
            f"model.target {target!r} raised {type(exc).__name__} building the model: {_one_line(exc)}"
        ) from None
    if not isinstance(module, nn.Module):
        raise ConfigError(f"model.target {target!r} returned {type(module).__name__}, not a torch.nn.Module")
    return module.eval(), s["input_shape"]


# -- cluster and network -----------------------------------------------------------


def build_cluster(cfg):
    """A :class:`~iopopt.Cluster` from a cluster config."""
    from ..model.cluster import OPTIONAL_FIGURES, POWER_FIELDS, RATE_KINDS, SPLIT_POLICIES, Cluster, Device

    c = _mapping("cluster", cfg)
    if "profile" in c:  # cluster=profiled: this machine as `iopopt profile` measured it
        from .profiled import from_profile

        c = from_profile("cluster", c)
    _check_keys("cluster", c, CLUSTER_KEYS)
    devices = c.get("devices")
    if not isinstance(devices, list) or not devices:
        raise ConfigError(f"cluster.devices must be a non-empty list of devices, got {devices!r}")
    split = c.get("split", "proportional")
    if split not in SPLIT_POLICIES:
        raise ConfigError(f"cluster.split must be one of {', '.join(SPLIT_POLICIES)}, got {split!r}")
    built = []
    for i, d in enumerate(devices):
        where = f"cluster.devices[{i}]"
        d = _mapping(where, d)
        _check_keys(where, d, DEVICE_KEYS)
        _positive_number(f"{where}.flops_per_s", d.get("flops_per_s"))
        mem = d.get("memory_bytes")
        if mem is not None:
            _positive_number(f"{where}.memory_bytes", mem)
        overhead = d.get("op_overhead_s", 0.0)
        _positive_number(f"{where}.op_overhead_s", overhead, allow_zero=True)
        rates = _kind_numbers(f"{where}.kind_flops_per_s", d.get("kind_flops_per_s"), RATE_KINDS,
                              " (the conv rate is flops_per_s)")
        kind_bw = _kind_numbers(f"{where}.kind_bytes_per_s", d.get("kind_bytes_per_s"), ("conv", *RATE_KINDS))
        working = {key: d.get(key) for key in OPTIONAL_FIGURES}
        for key, value in working.items():
            if value is not None:
                _positive_number(f"{where}.{key}", value)
        power = {key: d.get(key) for key in POWER_FIELDS}
        for key, watts in power.items():
            if watts is not None:
                _positive_number(f"{where}.{key}", watts, allow_zero=True)
        try:
            device = Device(
                name=str(d.get("name") or f"d{i}"),
                flops_per_s=float(d["flops_per_s"]),
                memory_bytes=float("inf") if mem is None else float(mem),
                op_overhead_s=float(overhead),
                kind_flops_per_s=rates,
                kind_bytes_per_s=kind_bw,
                **{key: None if value is None else float(value) for key, value in working.items()},
                **{key: None if watts is None else float(watts) for key, watts in power.items()},
            )
        except ValueError as exc:  # e.g. an infinite rate, or some power figures without the others
            raise ConfigError(f"{where}: {exc}") from None
        built.append(device)
    host = c.get("host", 0)
    names = [d.name for d in built]
    if isinstance(host, str):  # a device name
        if host not in names:
            raise ConfigError(f"cluster.host {host!r} is not a device; valid: {', '.join(names)}")
        host = names.index(host)
    elif isinstance(host, bool) or not isinstance(host, int) or not 0 <= host < len(built):
        raise ConfigError(
            f"cluster.host must be a device index in [0, {len(built) - 1}] or a device name "
            f"({', '.join(names)}), got {host!r}"
        )
    subsets = c.get("subsets", False)
    if not isinstance(subsets, bool):
        raise ConfigError(f"cluster.subsets must be true or false, got {subsets!r}")
    fused = c.get("fused_depth", 0)
    if isinstance(fused, bool) or not isinstance(fused, int) or fused < 0:
        raise ConfigError(f"cluster.fused_depth must be an integer >= 0 (0: no fused stacks), got {fused!r}")
    try:
        return Cluster(tuple(built), host, split, str(c.get("name") or ""), subsets, fused)
    except ValueError as exc:
        raise ConfigError(f"cluster: {exc}") from None
