"""The one line a job (or a solve of a study job) logs: what ran, its outcome, where the result went."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..results.io import display_path
from .overrides import GROUPS

__all__ = ["log_record", "ms_text", "secs_text", "what_text", "problem_of"]

log = logging.getLogger("iopopt")


def ms_text(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.1f} ms" if 10 <= ms < 1e5 else f"{ms:.3g} ms"  # never hundreds of digits


def secs_text(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds >= 10 else f"{seconds:.2g} s"


def what_text(rec: Mapping[str, Any], overrides: Sequence[str] = (), with_model: bool = False) -> str:
    """``model cluster network solver`` plus the other overrides (e.g. ``cluster.split=equal``)."""
    names = [rec.get(k) or "" for k in (("model",) if with_model else ()) + ("cluster", "network", "solver")]
    extra = [o for o in overrides if o.partition("=")[0].lstrip("+~") not in GROUPS]
    return " ".join(str(x) for x in names + extra if x)


def problem_of(rec: Mapping[str, Any]) -> str | None:
    """What went wrong with a record, in a few words (None when nothing did)."""
    if rec["termination"] == "error":
        return f"error: {rec['error']}"
    ver = rec.get("verify")
    if ver is not None and not ver["passed"] and ver.get("reference_finite") is False:
        return ("verification FAILED: the unsplit model's own output is not finite on this input "
                "(nothing to compare with)")
    if ver is not None and not ver["passed"]:
        err = ver["max_abs_err"] if ver["max_abs_err"] is not None else math.inf  # None: not finite
        return (f"verification FAILED (max abs error {err:.3g}, messages_match "
                f"{ver['messages_match']}, memory_match {ver['memory_match']})")
    return None


def log_record(rec: dict, path: Path | None, overrides: Sequence[str] = (), prefix: str = "", suffix: str = "",
               details: bool = True) -> None:
    """One INFO line per record (ERROR when it failed): ``prefix`` what: outcome ``suffix``; the rest at DEBUG.

    ``path`` (the result file) is named in the line when ``details`` is set
    (a single run), with the peak memory and message count.
    """
    what = prefix + what_text(rec, overrides, with_model=True)
    where = f"; result: {display_path(path)}" if details and path is not None else ""
    problem = problem_of(rec)
    if rec["latency_s"] is None:
        reason = (rec.get("solver_extra") or {}).get("reason")
        outcome = problem or f"no plan ({rec['termination']}){': ' + reason if reason else ''}"
    else:
        outcome = f"{ms_text(rec['latency_s'])} ({rec['termination']})"
        if details:
            outcome += f", peak memory {rec['peak_memory_bytes'] / 1e6:.1f} MB, {rec['messages']} messages"
            if rec.get("energy_j") is not None:
                outcome += f", {rec['energy_j']:.3g} J"
        if problem:
            outcome += f"; {problem}"
        elif rec["verify"] is not None:
            outcome += ", verified"
    level = log.error if problem else log.warning if rec["latency_s"] is None else log.info
    level("%s: %s%s%s", what, outcome, suffix, where)
    if rec["latency_s"] is not None:
        log.debug(
            "%s: latency %.3f ms (compute %.3f, comm %.3f; lower bound %.3f), %d messages, peak memory %.1f MB",
            rec["instance"], rec["latency_s"] * 1e3, rec["compute_s"] * 1e3, rec["comm_s"] * 1e3,
            (rec["lower_bound_s"] or 0) * 1e3, rec["messages"], rec["peak_memory_bytes"] / 1e6,
        )
    if path is not None:
        log.debug("result written to %s (job took %.2f s, solver %.3f s)", path, rec.get("job_time_s") or 0.0,
                  rec.get("solver_time_s") or 0.0)
