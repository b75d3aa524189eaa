"""The one line a job logs: what ran, its outcome, where the result went."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..results.io import display_path
from .context import SWEEP_JOBS_ENV, JobContext
from .overrides import GROUPS

__all__ = ["log_record"]

log = logging.getLogger("iopopt")


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.1f} ms" if ms >= 10 else f"{ms:.3g} ms"


def _secs(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds >= 10 else f"{seconds:.2g} s"


def _job_prefix(ctx: JobContext) -> str:
    """``[12/108] `` for job 12 of a 108-job sweep (``[12] `` when the total is unknown), ``""`` for a single run."""
    if ctx.job is None:
        return ""
    total = os.environ.get(SWEEP_JOBS_ENV, "")
    return f"[{ctx.job + 1}/{total}] " if total.isdigit() else f"[{ctx.job + 1}] "


def _what(rec: Mapping[str, Any], ctx: JobContext, with_model: bool = False) -> str:
    """``model cluster network solver`` plus the job's other overrides (e.g. ``cluster.split=equal``)."""
    names = [rec.get(k) or "" for k in (("model",) if with_model else ()) + ("cluster", "network", "solver")]
    extra = [o for o in ctx.overrides if o.partition("=")[0].lstrip("+~") not in GROUPS]
    return " ".join(str(x) for x in names + extra if x)


def _problem_of(rec: Mapping[str, Any]) -> str | None:
    """What went wrong with a record, in a few words (None when nothing did)."""
    if rec["termination"] == "error":
        return f"error: {rec['error']}"
    ver = rec.get("verify")
    if ver is not None and not ver["passed"]:
        return (f"verification FAILED (max abs error {ver['max_abs_err']:.3g}, messages_match "
                f"{ver['messages_match']}, memory_match {ver['memory_match']})")
    return None


def log_record(rec: dict, path: Path, ctx: JobContext) -> None:
    """One INFO line per job (ERROR when it failed); the details at DEBUG."""
    what = _job_prefix(ctx) + _what(rec, ctx, with_model=True)
    where = "" if ctx.multirun else f"; result: {display_path(path)}"
    problem = _problem_of(rec)
    if rec["latency_s"] is None:
        outcome = problem or f"no plan ({rec['termination']})"
    else:
        outcome = f"{_ms(rec['latency_s'])} ({rec['termination']})"
        if not ctx.multirun:
            outcome += f", peak memory {rec['peak_memory_bytes'] / 1e6:.1f} MB, {rec['messages']} messages"
        if problem:
            outcome += f"; {problem}"
        elif rec["verify"] is not None:
            outcome += ", verified"
    (log.error if problem else log.info)("%s: %s%s", what, outcome, where)
    if rec["latency_s"] is not None:
        log.debug(
            "%s: latency %.3f ms (compute %.3f, comm %.3f; lower bound %.3f), %d messages, peak memory %.1f MB",
            rec["instance"], rec["latency_s"] * 1e3, rec["compute_s"] * 1e3, rec["comm_s"] * 1e3,
            (rec["lower_bound_s"] or 0) * 1e3, rec["messages"], rec["peak_memory_bytes"] / 1e6,
        )
    log.debug("result written to %s (job took %.2f s, solver %.3f s)", path, rec.get("job_time_s") or 0.0,
              rec.get("solver_time_s") or 0.0)
