"""Hydra callbacks of the application (registered in ``conf/config.yaml`` under ``hydra.callbacks``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

__all__ = ["ReportCallback", "sweep_size"]

log = logging.getLogger("iopopt")


class _ConfOptions:
    """The one method of Hydra's config loader that ``glob(...)`` sweeps need: a group's options."""

    def __init__(self, searchpath=()):
        self.searchpath = list(searchpath or ())

    def get_group_options(self, group: str, results_filter: Any = None, config_name: Any = None,
                          overrides: Any = None) -> list[str]:
        from ..solvers.registry import CONF_DIR
        from .overrides import group_options

        return group_options(CONF_DIR, group, self.searchpath)


def sweep_size(config: DictConfig) -> int | None:
    """How many jobs Hydra's basic sweeper makes of ``config`` (None for another sweeper or when unsure)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    target = str(OmegaConf.select(config, "hydra.sweeper._target_", default="") or "")
    if not target.endswith("BasicSweeper"):
        return None
    try:  # the sweeper's own arithmetic: its params, then the command line (the later one wins)
        params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
        args = [f"{k}={v}" for k, v in params.items()]
        args += list(OmegaConf.select(config, "hydra.overrides.task", default=None) or [])
        searchpath = OmegaConf.select(config, "hydra.searchpath", default=None) or []
        overrides = OverridesParser.create(config_loader=_ConfOptions(searchpath)).parse_overrides(args)
        return sum(len(batch) for batch in BasicSweeper.split_arguments(overrides, None))
    except Exception:
        return None


class ReportCallback(Callback):
    """Writes ``summary.csv``, ``summary.md`` and plots next to ``multirun.yaml`` when a sweep ends.

    When the sweep starts it logs the number of jobs and where they go, and
    sets up the progress count (each finished job logs ``[done/N] …, ETA m:ss``).

    Parameters
    ----------
    plots : bool
        Also write the PNG plots.
    max_timelines : int
        At most this many per-plan timeline plots.
    max_plans : int
        At most this many plan diagrams (one per instance, the plans of every solver on it).

    ``iopopt-report DIR`` reads these settings back from the sweep's
    ``multirun.yaml``, so that it rebuilds the same report.
    """

    def __init__(self, plots: bool = True, max_timelines: int = 24, max_plans: int = 24) -> None:
        self.plots = plots
        self.max_timelines = max_timelines
        self.max_plans = max_plans

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from ..report.validate import SWEEP_FILE
        from ..results.io import display_path, write_json_atomic
        from .progress import start_sweep

        n = sweep_size(config)
        start_sweep(config.hydra.sweep.dir, n)  # the jobs count themselves done: [12/108] ..., ETA 0:14
        if n is not None:  # so that the report can say how many jobs are missing
            write_json_atomic(Path(config.hydra.sweep.dir) / SWEEP_FILE, {"jobs": n})
        launcher = str(OmegaConf.select(config, "hydra.launcher._target_", default="") or "").rpartition(".")[2]
        log.info("sweep: %s job%s (%s) writing to %s/", "?" if n is None else n, "" if n == 1 else "s",
                 launcher or "launcher", display_path(config.hydra.sweep.dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from .progress import clock, end_sweep

        seconds = end_sweep()
        if seconds is not None:
            log.info("sweep done in %s", clock(seconds))
        self._report(Path(config.hydra.sweep.dir))

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        """A study job run on its own (``iopopt experiment=paper`` without ``-m``) gets its report too."""
        if str(OmegaConf.select(config, "study", default="single")) in ("grid", "gap"):
            self._report(Path(config.hydra.runtime.output_dir))

    def _report(self, root: Path) -> None:
        from ..report.build import build_report, written_line

        if not any(root.glob("**/result.json")):
            return  # e.g. every job failed its configuration
        try:
            written = build_report(root, plots=self.plots, max_timelines=self.max_timelines,
                                   max_plans=self.max_plans, echo=True)
        except Exception:  # a broken report must not hide the results the jobs wrote
            log.exception("building the report in %s failed; rebuild it with `iopopt-report %s`", root, root)
            return
        log.info("%s", written_line(root, written))  # the same line as `iopopt-report DIR`
