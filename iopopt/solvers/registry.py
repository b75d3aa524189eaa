"""Finding solvers by name: the package's ``conf/solver/*.yaml`` and other packages' entry points.

A solver is registered in one of two ways:

- a YAML file ``conf/solver/NAME.yaml`` whose ``_target_`` names the class and
  whose other keys are its settings (the solvers shipped with iopopt; a Hydra
  search path can add more YAML files for the app);
- an entry point in the group ``iopopt.solvers`` of an installed package,
  ``NAME = "pkg.module:Class"`` (the settings are the class's defaults), e.g.
  in that package's ``pyproject.toml``::

      [project.entry-points."iopopt.solvers"]
      my_solver = "my_pkg.solvers:MySolver"

:func:`make_solver` builds either by name; the app, the contract tests and
``glob(*)`` sweeps see both.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from .base import Solver, SolverError

__all__ = ["CONF_DIR", "ENTRY_POINT_GROUP", "SolverSpec", "registered_solvers", "solver_configs", "make_solver"]

#: The package's Hydra configuration (shipped inside the package).
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
#: Entry-point group through which other packages register solvers.
ENTRY_POINT_GROUP = "iopopt.solvers"


@dataclass(frozen=True)
class SolverSpec:
    """How to build a registered solver: its class (``pkg.module.Class``) and default settings."""

    name: str
    target: str
    settings: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def solver_class(self) -> type[Solver]:
        """The class ``target`` names (a :class:`SolverError` when it does not import or is no Solver)."""
        module, _, attr = self.target.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise SolverError(f"cannot import solver class {self.target!r} ({self.source}): {exc}") from exc
        if not (isinstance(cls, type) and issubclass(cls, Solver)):
            raise SolverError(f"{self.target} ({self.source}) is not a Solver subclass")
        return cls


def solver_configs(conf_dir: Path | None = None) -> dict[str, Path]:
    """Solver name → its YAML config, from ``conf/solver/*.yaml``."""
    root = Path(conf_dir) if conf_dir is not None else CONF_DIR
    return {p.stem: p for p in sorted((root / "solver").glob("*.yaml"))}


def _entry_point_specs() -> dict[str, SolverSpec]:
    specs = {}
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        module, _, attr = ep.value.partition(":")
        target = f"{module.strip()}.{attr.strip()}" if attr else module.strip()
        dist = getattr(ep, "dist", None)
        origin = f"entry point {ep.name!r} of {dist.name if dist is not None else 'an installed package'}"
        specs[ep.name] = SolverSpec(ep.name, target, {}, origin)
    return specs


def registered_solvers(conf_dir: Path | None = None) -> dict[str, SolverSpec]:
    """Every solver by name: the YAML configs first, then entry points of other packages (a YAML name wins)."""
    import yaml

    specs: dict[str, SolverSpec] = {}
    for name, path in solver_configs(conf_dir).items():
        cfg = yaml.safe_load(path.read_text()) or {}
        target = cfg.pop("_target_", None)
        if not target:
            raise SolverError(f"{path} has no _target_")
        specs[name] = SolverSpec(name, str(target), cfg, str(path))
    for name, spec in _entry_point_specs().items():
        specs.setdefault(name, spec)
    return specs


def make_solver(name: str, conf_dir: Path | None = None, **overrides: Any) -> Solver:
    """Instantiate the solver registered as ``name`` with its default settings updated by ``overrides``."""
    specs = registered_solvers(conf_dir)
    if name not in specs:
        raise ValueError(f"unknown solver {name!r}; valid: {sorted(specs)}")
    spec = specs[name]
    cfg = dict(spec.settings)
    cfg.update(overrides)
    cls = spec.solver_class()
    params = inspect.signature(cls.__init__).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        valid = [n for n in params if n != "self"]
        unknown = sorted(set(cfg) - set(valid))
        if unknown:
            raise SolverError(f"unknown setting {unknown[0]!r} of solver {name!r}; valid settings: {valid}")
    return cls(**cfg)
