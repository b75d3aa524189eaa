"""Hydra callbacks of the application (registered in ``conf/config.yaml`` under ``hydra.callbacks``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

__all__ = ["ReportCallback"]

log = logging.getLogger("iopopt")


class ReportCallback(Callback):
    """Writes ``summary.csv``, ``summary.md`` and plots next to ``multirun.yaml`` when a sweep ends.

    Parameters
    ----------
    plots : bool
        Also write the PNG plots.
    max_timelines : int
        At most this many per-plan timeline plots.
    """

    def __init__(self, plots: bool = True, max_timelines: int = 24) -> None:
        self.plots = plots
        self.max_timelines = max_timelines

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from .report import build_report

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            written = build_report(sweep_dir, plots=self.plots, max_timelines=self.max_timelines, echo=True)
        except Exception:  # a broken report must not hide the results the jobs wrote
            log.exception("building the report in %s failed; rebuild it with `iopopt-report %s`", sweep_dir, sweep_dir)
            return
        log.info("sweep results: %s (report: %s)", sweep_dir, ", ".join(p.name for p in written[:3]))
