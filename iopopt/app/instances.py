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


def _has_interpolation(node) -> bool:
    if isinstance(node, str):
        return "${" in node
    if isinstance(node, dict):
        return any(_has_interpolation(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_interpolation(v) for v in node)
    return False


def _direct(group: str, option: str, overrides: Sequence[str], repo, experiment: str | None):
    """``group=option`` as Hydra composes it, without composing the whole config; None where unsure.

    The option's YAML, then the values the primary config and the chosen
    experiment set for ``group`` (both come after the group in the defaults
    list), then the command-line overrides of ``group.*`` keys (Hydra's own
    override semantics: ``+``, ``++``, ``~``). Options with a defaults list,
    another package or interpolations are left to :func:`group_configs`'s compose.
    """
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    found = repo.load_config(f"{group}/{option}")
    if found is None or found.defaults_list or (found.header or {}).get("package") is not None:
        return None
    layers = [found.config]
    for name in ("config", f"experiment/{experiment}" if experiment else None):
        extra = repo.load_config(name) if name else None
        if extra is not None and group in extra.config:
            layers.append(extra.config[group])
    node = OmegaConf.merge(*layers)
    if _has_interpolation(OmegaConf.to_container(node)):
        return None
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    mine = [o for o in parsed if not o.is_hydra_override() and o.package is None
            and o.key_or_group.startswith(f"{group}.")]
    root = OmegaConf.create({group: node})
    OmegaConf.set_struct(root, True)  # as in a composed config: a key that is not there needs +
    ConfigLoaderImpl._apply_overrides_to_config(mine, root)
    OmegaConf.set_struct(root, False)
    return root[group]


def group_configs(group: str, options: Sequence[str], overrides: Sequence[str], cfg=None, own: str | None = None):
    """``{option: config node}``: each option of ``group`` as Hydra would compose it for a job that chose it.

    The job's own choice (``own``) is taken from its config ``cfg`` as is;
    the others are built from their YAML and the job's overrides
    (:func:`_direct`), or composed with Hydra's compose API where that is not
    sure to be the same (inside a running app, or with the package's
    ``conf/`` from a test or a notebook).
    """
    from hydra._internal.config_repository import ConfigRepository
    from hydra.errors import HydraException

    from ..solvers.registry import CONF_DIR
    from .overrides import group_options
    from .plugins import config_search_path, searchpath_overrides

    out = {}
    todo = [o for o in options if not (cfg is not None and o == own)]
    if cfg is not None and own in options:
        out[own] = cfg[group]
    if todo:
        searchpath = searchpath_overrides(overrides)
        valid = group_options(CONF_DIR, group, searchpath)
        unknown = [o for o in todo if o not in valid]
        if unknown:
            raise ConfigError(f"unknown option {group}={unknown[0]} in grid; valid options: {', '.join(valid)}")
        repo = ConfigRepository(config_search_path(CONF_DIR, searchpath))
        experiment = next((o.partition("=")[2] for o in overrides if o.partition("=")[0] == "experiment"), None)
        try:
            for option in todo:
                node = _direct(group, option, overrides, repo, experiment)
                out[option] = node if node is not None else _composed(group, option, overrides)
        except HydraException as exc:
            raise ConfigError(f"{group}: {str(exc).splitlines()[0]}") from None
    return {o: out[o] for o in options}


def _composed(group: str, option: str, overrides: Sequence[str]):
    """``group=option`` from a whole config composed by Hydra (the slow, always right way)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from ..solvers.registry import CONF_DIR

    if GlobalHydra.instance().is_initialized():
        return compose(config_name="config", overrides=_compose_overrides(overrides, group, option))[group]
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose(config_name="config", overrides=_compose_overrides(overrides, group, option))[group]
