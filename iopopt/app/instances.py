"""What a study job solves: instance keys, the gap study's instance list, the grid's group options.

A *grid* job (``study: grid``) solves every combination of the options it
lists for the model, cluster, network and solver groups, in one process:
each option's config is composed once with Hydra's compose API (with the
job's own command-line overrides, so ``cluster.split=equal`` applies to every
cluster), instead of once per combination as a multirun would.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence

from .configs import ConfigError, ModelSpec, _check_keys, _mapping, _shape, model_spec, to_plain

__all__ = [
    "FIDELITY_KEYS",
    "GAP_KEYS",
    "GAP_SYNTHETIC_KEYS",
    "GRID_GROUPS",
    "OWN",
    "instance_key",
    "gap_instances",
    "grid_options",
    "group_configs",
]

#: Allowed keys of the ``fidelity`` study settings (conf/experiment/fidelity.yaml).
FIDELITY_KEYS = frozenset({"models", "ranks", "solvers", "hw", "warmup", "repeats", "ilp_time_s", "profile"})
#: Allowed keys of the ``gap`` study settings and of its ``synthetic`` block.
GAP_KEYS = frozenset({"zoo", "synthetic", "save_per_op"})
GAP_SYNTHETIC_KEYS = frozenset({"count", "seed", "kinds", "n_layers", "channels", "input_hw"})
#: The ``grid`` study's keys and the config group each lists options of, in loop order (outer first).
GRID_GROUPS = {"models": "model", "clusters": "cluster", "networks": "network", "solvers": "solver"}


def instance_key(model: ModelSpec, cluster_cfg, network_cfg, dtype_bytes: int) -> str:
    """``model|cluster|network#hash``: names for reading, a hash of every setting for pairing."""
    blob = json.dumps(
        [model.key(), to_plain(cluster_cfg), to_plain(network_cfg), dtype_bytes], sort_keys=True, default=str
    )
    digest = hashlib.sha1(blob.encode()).hexdigest()[:8]
    cluster = _mapping("cluster", cluster_cfg).get("name", "")
    network = _mapping("network", network_cfg).get("name", "")
    return f"{model.name}|{cluster}|{network}#{digest}"


def gap_instances(cfg) -> list[ModelSpec]:
    """The model specs of a gap study: the listed zoo models, then the synthetic ones.

    Synthetic instance i uses seed ``seed + i``, kind ``kinds[i % len(kinds)]``
    and a layer count drawn from ``n_layers = [lo, hi]`` with ``random.Random(seed + i)``,
    so every job of a sweep (one per solver, cluster and network) sees the same graphs.
    """
    g = _mapping("gap", cfg)
    _check_keys("gap", g, GAP_KEYS)
    specs = [model_spec({"source": "zoo", "name": name}) for name in g.get("zoo") or ()]
    syn = _mapping("gap.synthetic", g.get("synthetic") or {})
    _check_keys("gap.synthetic", syn, GAP_SYNTHETIC_KEYS)
    count = syn.get("count", 0)
    if not isinstance(count, int) or count < 0:
        raise ConfigError(f"gap.synthetic.count must be an integer >= 0, got {count!r}")
    seed0 = syn.get("seed", 0)
    kinds = list(syn.get("kinds") or ["chain", "dag"])
    lo, hi = _shape("gap.synthetic.n_layers", list(syn.get("n_layers", [4, 12])), 2)
    for i in range(count):
        seed = seed0 + i
        model = {
            "source": "synthetic",
            "seed": seed,
            "kind": kinds[i % len(kinds)],
            "n_layers": random.Random(seed).randint(lo, hi),
        }
        for key in ("channels", "input_hw"):
            if key in syn:
                model[key] = list(syn[key])
        specs.append(model_spec(model))
    return specs


#: The option name of a group's config as the job has it, when the job was not told its choice (a test, a notebook).
OWN = "(own)"


def grid_options(cfg, choices) -> dict[str, list[str]]:
    """``{group: [options]}`` of a grid study; an empty list means the job's own choice of that group.

    The job's own choice is named by ``choices`` (Hydra's), else :data:`OWN`.
    """
    g = _mapping("grid", cfg)
    _check_keys("grid", g, GRID_GROUPS)
    out = {}
    for key, group in GRID_GROUPS.items():
        value = g.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"grid.{key} must be a list of {group} config names, got {value!r}")
        out[group] = list(dict.fromkeys(value)) or [choices.get(group) or OWN]
    return out


def _compose_overrides(overrides: Sequence[str], group: str, option: str) -> list[str]:
    """The job's overrides with ``group=option`` instead of its own choice (Hydra's own settings left out)."""
    keep = []
    for o in overrides:
        key = o.partition("=")[0].lstrip("+~")
        if key == group or (key.startswith("hydra") and key != "hydra.searchpath"):
            continue
        keep.append(o)
    return keep + [f"{group}={option}"]


def group_configs(group: str, options: Sequence[str], overrides: Sequence[str], cfg=None, own: str | None = None):
    """``{option: config node}``: each option of ``group`` composed as Hydra would for a job that chose it.

    The job's own choice (``own``) is taken from its config ``cfg`` as is.
    Uses Hydra's compose API (inside a running app, or with the package's
    ``conf/`` when called from a test or a notebook).
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    from ..solvers.registry import CONF_DIR
    from .overrides import group_options

    out = {}
    todo = [o for o in options if not (cfg is not None and o == own)]
    if cfg is not None and own in options:
        out[own] = cfg[group]
    if todo:
        valid = group_options(CONF_DIR, group)
        unknown = [o for o in todo if o not in valid]
        if unknown:
            raise ConfigError(f"unknown option {group}={unknown[0]} in grid; valid options: {', '.join(valid)}")
        fresh = not GlobalHydra.instance().is_initialized()
        ctx = initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)) if fresh else None
        try:
            if ctx is not None:
                ctx.__enter__()
            for option in todo:
                try:
                    out[option] = compose(config_name="config", overrides=_compose_overrides(overrides, group, option))[
                        group
                    ]
                except HydraException as exc:
                    raise ConfigError(f"{group}={option}: {str(exc).splitlines()[0]}") from None
        finally:
            if ctx is not None:
                ctx.__exit__(None, None, None)
    return {o: out[o] for o in options}
