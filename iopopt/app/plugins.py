"""Solvers and configs from other packages, made visible to Hydra.

A solver registered through the ``iopopt.solvers`` entry-point group
(:mod:`iopopt.solvers.registry`) becomes an option of the ``solver`` config
group (Hydra's ConfigStore, with the class's default settings), so
``solver=NAME``, ``solver.SETTING=...`` and ``'solver=glob(*)'`` see it like a
shipped YAML. :func:`config_search_path` is the search path Hydra will use:
the package's ``conf/``, search-path plugins, ``hydra.searchpath`` entries
given on the command line, and the ConfigStore.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["register_entry_point_solvers", "config_search_path", "searchpath_overrides"]

_REGISTERED: set[str] = set()


def _defaults(cls: type) -> dict[str, Any]:
    """The constructor's keyword defaults that YAML can hold (None, bool, numbers, strings, lists)."""
    out = {}
    for p in inspect.signature(cls).parameters.values():
        if p.default is inspect.Parameter.empty or p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            continue
        if p.default is None or isinstance(p.default, (bool, int, float, str, list, tuple)):
            out[p.name] = list(p.default) if isinstance(p.default, tuple) else p.default
    return out


def register_entry_point_solvers() -> list[str]:
    """Store every entry-point solver (not shadowed by a shipped YAML) in Hydra's ConfigStore; their names."""
    from hydra.core.config_store import ConfigStore

    from ..solvers.registry import registered_solvers

    names = []
    for name, spec in registered_solvers().items():
        if spec.source.endswith(".yaml"):
            continue
        names.append(name)
        if name in _REGISTERED:
            continue
        node = {"_target_": spec.target}
        # a broken plugin still gets its option: the job that selects it reports the import error
        with contextlib.suppress(Exception):
            node.update(_defaults(spec.solver_class()))
        ConfigStore.instance().store(group="solver", name=name, node=node, provider=spec.source)
        _REGISTERED.add(name)
    return names


def searchpath_overrides(overrides: Sequence[str]) -> list[str]:
    """The entries of a ``hydra.searchpath=[...]`` command-line override (empty when there is none)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception:  # a syntax error: Hydra reports it
        return []
    out: list[str] = []
    for o in parsed:
        if o.key_or_group == "hydra.searchpath" and not o.is_delete():
            value = o.value()
            out.extend(str(v) for v in (value if isinstance(value, list) else [value]))
    return out


def config_search_path(conf_dir: str | Path, searchpath: Sequence[str] = ()):
    """Hydra's config search path for the app: its ``conf/``, plugins, ``searchpath`` and the ConfigStore."""
    from hydra._internal.utils import create_config_search_path

    csp = create_config_search_path(f"file://{Path(conf_dir).resolve()}")
    for entry in searchpath:
        csp.append("command-line", entry if "://" in entry else f"file://{Path(entry).resolve()}")
    return csp
