"""Loading the records of a sweep: every ``result.json`` and the per-instance lines of study jobs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..results.records import INSTANCES_FILE, RESULT_FILE
from .validate import record_problem

log = logging.getLogger("iopopt")


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("skipping unreadable %s: %s", path, exc)
        return None


def _usable(rec: object, where: str) -> bool:
    """True when ``rec`` is a well-formed record; else one warning naming the file and the bad field."""
    problem = record_problem(rec)
    if problem is not None:
        log.warning("skipping %s: %s", where, problem)
    return problem is None


def _content_key(rec: dict) -> str:
    return json.dumps({k: v for k, v in rec.items() if k != "source"}, sort_keys=True, default=str)


def _natural(path: Path) -> tuple:
    """Sort key putting job 10 after job 9."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in path.parts)


def load_records(root: str | Path) -> list[dict]:
    """Every record below ``root``: each job's ``result.json``, or its ``instances.jsonl`` lines for study jobs.

    Each record gets ``source``: its file relative to ``root`` (plus ``:line`` for JSON lines).
    A malformed record (:func:`~iopopt.report.validate.record_problem`) and
    an exact copy of a record already loaded (a copied job folder) are
    skipped, each with one warning naming the file.
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
            if not _usable(rec, f"{path}:{i}"):
                continue
            rec["source"] = f"{path.relative_to(root)}:{i}"
            records.append(rec)
    for path in sorted(root.rglob(RESULT_FILE), key=_natural):
        rec = _read_json(path)
        if rec is None or path.parent in study_dirs or (isinstance(rec, dict) and rec.get("instances_file")):
            continue  # a study job's result.json only summarises its instances.jsonl
        if not _usable(rec, str(path)):
            continue
        assert isinstance(rec, dict)
        rec["source"] = str(path.relative_to(root))
        records.append(rec)
    seen: dict[str, str] = {}
    unique = []
    for rec in records:
        key = _content_key(rec)
        if key in seen:
            log.warning("skipping %s: the same record as %s (a copied job folder?)", root / rec["source"], seen[key])
            continue
        seen[key] = rec["source"]
        unique.append(rec)
    return unique


def job_folders(records: list[dict]) -> set[str]:
    """The job folders (relative to the report's root) the records come from."""
    def file_of(source: str) -> str:
        head, sep, line = source.rpartition(":")  # JSON lines: file:line
        return head if sep and line.isdigit() else source

    return {str(Path(file_of(rec["source"])).parent) for rec in records}
