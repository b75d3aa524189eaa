"""``resume=true``: a sweep run again into its folder keeps the jobs that finished.

A job is kept when its ``result.json`` parses, is a record of this very job
(the same command-line overrides, ``resume=`` aside) with every key of
:data:`~iopopt.results.records.RESULT_KEYS`, and did not end in an error; a
latency, when the record has a plan, is a finite number. Anything else (no
file, a torn or foreign file, an error record) runs again.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from ..results.records import RESULT_FILE, RESULT_KEYS

__all__ = ["finished_record"]


def _own(overrides: Sequence[str]) -> list[str]:
    return sorted(o for o in overrides if o.partition("=")[0].lstrip("+~") != "resume")


def finished_record(output_dir: Path, overrides: Sequence[str]) -> dict | None:
    """The complete, valid record of this job already in ``output_dir``, or None when it must run."""
    path = Path(output_dir) / RESULT_FILE
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or any(k not in rec for k in RESULT_KEYS):
        return None
    if rec.get("termination") in (None, "error") or rec.get("error"):
        return None
    recorded = rec.get("overrides")
    if not isinstance(recorded, list) or _own(map(str, recorded)) != _own(overrides):
        return None
    lat = rec.get("latency_s")
    if lat is not None and (isinstance(lat, bool) or not isinstance(lat, (int, float)) or not math.isfinite(lat)
                            or lat <= 0):
        return None
    return rec
