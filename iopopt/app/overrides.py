"""Command-line overrides checked before Hydra composes them: one line naming a bad option or key.

Hydra reports an unknown group option or key in many lines; this module
checks the overrides first against the config groups as Hydra will see them:
the package's ``conf/``, any ``hydra.searchpath`` entries and search-path
plugins, and solvers registered by other packages' entry points.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping, Sequence
from typing import Any

from .configs import CLUSTER_KEYS, MODEL_KEYS, ConfigError
from .plugins import config_search_path, register_entry_point_solvers, searchpath_overrides
from .targets import _constructor_keys

__all__ = ["GROUPS", "group_options", "check_overrides"]


#: Config groups of the application (``conf/<group>/*.yaml``).
GROUPS = ("model", "cluster", "network", "solver", "experiment")


def _yaml(path) -> Any:
    """A YAML file as plain python (cached; only keys matter here, so YAML 1.1 number quirks do not)."""
    return _yaml_cached(str(path))


@functools.lru_cache(maxsize=128)
def _yaml_cached(path: str) -> Any:
    import yaml

    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def group_options(conf_dir, group: str, searchpath: Sequence[str] = ()) -> list[str]:
    """The options of a config group as Hydra sees them, sorted.

    ``conf/<group>/**/*.yaml`` of the package, of search-path plugins and of
    the ``searchpath`` entries, and the solvers other packages register
    (:func:`~iopopt.app.plugins.register_entry_point_solvers`).
    """
    from hydra._internal.config_repository import ConfigRepository

    if group == "solver":
        register_entry_point_solvers()
    repo = ConfigRepository(config_search_path=config_search_path(conf_dir, searchpath))
    return repo.get_group_options(group)


def _chosen_options(o, group: str, available: list[str]) -> list[str] | None:
    """The options a group override selects (each checked), or None when it is not a plain choice."""
    from hydra.core.override_parser.types import Glob

    value = o.value()
    if isinstance(value, Glob):
        chosen = value.filter(available)
        if not chosen:
            raise ConfigError(
                f"{group}={o.get_value_string()} matches no option; valid options: {', '.join(available)}"
            )
        return chosen
    if o.is_choice_sweep():
        chosen = list(o.sweep_string_iterator())
    elif o.is_sweep_override() or not isinstance(value, str):
        return None  # e.g. model=null or a range sweep: Hydra decides
    else:
        chosen = [value]
    for option in chosen:
        if "${" in option:
            return None
        if option not in available:
            raise ConfigError(f"unknown option {group}={option}; valid options: {', '.join(available)}")
    return chosen


def _schema_keys(group: str, tree: Mapping) -> frozenset:
    """Keys a group's config may have beyond its YAML (added with ``+``), per :func:`build_model` & co."""
    if group == "model":
        return MODEL_KEYS.get(tree.get("source", "zoo"), frozenset())
    if group == "cluster":
        return CLUSTER_KEYS
    if group in ("network", "solver"):
        target = tree.get("_target_")
        try:
            mod_name, _, attr = str(target).rpartition(".")
            keys = _constructor_keys(getattr(importlib.import_module(mod_name), attr))
        except Exception:  # the real build reports a bad _target_
            return frozenset()
        return frozenset() if keys is None else keys | {"_target_"}
    return frozenset()


def _walk(parts: list[str], tree, group: str | None, option: str | None, value: str) -> None:
    """Check that the dotted key ``parts`` exists in ``tree`` (the YAML it would override)."""
    prefix = [group] if group else []
    node = tree
    for i, part in enumerate(parts):
        path = ".".join(prefix + parts[: i + 1])
        where = f" for {group}={option}" if group else ""
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                parent = ".".join(prefix + parts[:i])
                raise ConfigError(
                    f"{path}: {parent} has {len(node)} entries{where}; use an index 0..{len(node) - 1}"
                )
            node = node[int(part)]
            continue
        if not isinstance(node, Mapping):
            return  # a value (or null) being overridden by a deeper key: Hydra decides
        if part in node:
            node = node[part]
            continue
        file = f"conf/{group}/{option}.yaml" if group else "conf/config.yaml"
        schema = _schema_keys(group, tree) if group and i == 0 else frozenset()
        if part in schema or (i > 0 and not node):
            raise ConfigError(f"{path} is not set in {file}{where}; add it with +{path}={value}")
        valid = sorted(set(node) | set(schema))
        if group is None and i == 0:
            valid = sorted(set(valid) - set(GROUPS))
            groups = f"; config groups: {', '.join(GROUPS)}"
        else:
            groups = ""
        raise ConfigError(f"unknown key {path} (value {value}){where}; valid keys: {', '.join(valid)}{groups}")


def _merge(base, extra):
    """``extra`` merged into ``base`` (mappings recursively; anything else replaced)."""
    if isinstance(base, Mapping) and isinstance(extra, Mapping):
        out = dict(base)
        for k, v in extra.items():
            out[k] = _merge(base.get(k), v)
        return out
    return extra


def check_overrides(overrides: list[str], conf_dir) -> None:
    """Check command-line overrides before Hydra composes them; raise :class:`ConfigError` (one line).

    Catches what Hydra would otherwise report in several lines: an unknown
    option of a config group (``model=nosuch``, sweeps and ``glob(...)``
    included) and, for ``key=value`` without ``+``, a key that is in none of
    the YAML files it would override (the chosen option of its group, the
    chosen experiments, or ``config.yaml``). ``hydra.*`` and ``hydra/...``
    overrides and ``+``/``++``/``~`` ones are left alone (the first to Hydra,
    the others are checked against each group's schema when the job runs);
    so is anything that does not parse.
    """
    from pathlib import Path

    from hydra.core.override_parser.overrides_parser import OverridesParser

    conf_dir = Path(conf_dir)
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception:  # a syntax error: Hydra reports it
        return
    searchpath = searchpath_overrides(overrides)
    choices: dict[str, list[str]] = {}
    unsure: set[str] = set()
    keyed = []
    for o in parsed:
        key = o.key_or_group
        if o.is_hydra_override() or o.package is not None or o.is_add() or o.is_force_add() or o.is_delete():
            continue
        if "/" in key:
            continue
        if key in GROUPS:
            chosen = _chosen_options(o, key, group_options(conf_dir, key, searchpath))
            if chosen is None and key == "experiment" and not o.is_sweep_override() and o.value() is None:
                chosen = []  # experiment=null: no experiment
            if chosen is None:
                unsure.add(key)  # e.g. model=null: leave the keys of that group to Hydra
            choices[key] = chosen or []
        else:
            keyed.append(o)
    if not keyed or "experiment" in unsure:
        return
    primary = _yaml(conf_dir / "config.yaml")
    defaults = {}
    for entry in primary.get("defaults") or ():
        if isinstance(entry, Mapping):
            defaults.update(entry)
    experiments = [e for e in choices.get("experiment", [defaults.get("experiment")]) if e]
    exp_trees = [_yaml(conf_dir / "experiment" / f"{e}.yaml") for e in experiments]
    top = {k: v for k, v in primary.items() if k not in ("defaults", "hydra")}
    for tree in exp_trees:
        top = _merge(top, {k: v for k, v in tree.items() if k not in ("defaults", "hydra")})
    for group in GROUPS[:-1]:
        if group in choices:
            continue
        picked = []
        for tree in exp_trees or [{}]:
            option = defaults.get(group)
            for entry in tree.get("defaults") or ():
                if isinstance(entry, Mapping) and f"override /{group}" in entry:
                    option = entry[f"override /{group}"]
            picked.append(option)
        choices[group] = [p for p in dict.fromkeys(picked) if p]
    for o in keyed:
        parts = o.key_or_group.split(".")
        value = o.get_value_string()
        if parts[0] in GROUPS[:-1]:
            group = parts[0]
            if group in unsure:
                continue
            options = choices.get(group) or []
            for option in options:
                path = conf_dir / group / f"{option}.yaml"
                if not path.is_file():
                    break
                tree = _yaml(path)
                for exp in exp_trees:  # an experiment may set keys of a group (e.g. scaling's model.channels)
                    if isinstance(exp.get(group), Mapping):
                        tree = _merge(tree, exp[group])
                _walk(parts[1:], tree, group, option, value)
        else:
            _walk(parts, top, None, None, value)
