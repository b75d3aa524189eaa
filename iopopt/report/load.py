"""Loading the records of a sweep: every ``result.json`` and the per-instance lines of study jobs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..results.records import INSTANCES_FILE, RESULT_FILE

log = logging.getLogger("iopopt")


def _read_json(path: Path) -> dict | None:
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("skipping unreadable %s: %s", path, exc)
        return None
    return rec if isinstance(rec, dict) else None


def _natural(path: Path) -> tuple:
    """Sort key putting job 10 after job 9."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in path.parts)


def load_records(root: str | Path) -> list[dict]:
    """Every record below ``root``: each job's ``result.json``, or its ``instances.jsonl`` lines for study jobs.

    Each record gets ``source``: its file relative to ``root`` (plus ``:line`` for JSON lines).
    """
    root = Path(root)
    records: list[dict] = []
    study_dirs = set()
    for path in sorted(root.rglob(INSTANCES_FILE), key=_natural):
        study_dirs.add(path.parent)
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                log.warning("skipping a bad line %s:%d", path, i)
                continue
            rec["source"] = f"{path.relative_to(root)}:{i}"
            records.append(rec)
    for path in sorted(root.rglob(RESULT_FILE), key=_natural):
        rec = _read_json(path)
        if rec is None or path.parent in study_dirs or rec.get("instances_file"):
            continue  # a study job's result.json only summarises its instances.jsonl
        rec["source"] = str(path.relative_to(root))
        records.append(rec)
    return records
