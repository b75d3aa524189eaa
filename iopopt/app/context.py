"""What a job knows of Hydra: where it writes and what was chosen (no Hydra objects, so tests can build one)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from .progress import SWEEP_JOBS_ENV

__all__ = ["JobContext", "SWEEP_JOBS_ENV"]


@dataclass
class JobContext:
    """Where a job writes and what Hydra chose for it (no Hydra objects, so tests can build one)."""

    output_dir: Path
    choices: Mapping[str, str] = field(default_factory=dict)
    multirun: bool = False
    parallel: bool = False
    job: int | None = None
    overrides: tuple[str, ...] = ()

    @classmethod
    def from_hydra(cls) -> JobContext:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        multirun = hc.mode == RunMode.MULTIRUN
        launcher = str(OmegaConf.select(hc, "launcher._target_", default="") or "")
        return cls(
            output_dir=Path(hc.runtime.output_dir),
            choices={k: v for k, v in hc.runtime.choices.items() if v is not None},
            multirun=multirun,
            parallel=multirun and not launcher.endswith("BasicLauncher"),
            job=OmegaConf.select(hc, "job.num", default=None) if multirun else None,
            overrides=tuple(hc.overrides.task),
        )
