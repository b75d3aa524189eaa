"""``iopopt show RESULT``: a stored plan, layer by layer (and, with ``--plot``, its diagram).

``RESULT`` is a job's ``result.json`` (or its folder), or one record of a
study job, ``DIR/instances.jsonl:N`` (N counts from 1, as in the report's
``source`` column). Bad paths exit with status 2 and one line; a record
without a plan exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..results.records import INSTANCES_FILE, RESULT_FILE
from .plan import plan_table

__all__ = ["main", "load_record", "RecordNotFound"]


class RecordNotFound(ValueError):
    """The path names no readable record (the message says which and what would be)."""


def load_record(spec: str) -> dict:
    """The record ``spec`` names: ``result.json``, its folder, or ``instances.jsonl:N``."""
    path_text, _, line = spec.rpartition(":") if spec.rpartition(":")[2].isdigit() else (spec, "", "")
    path = Path(path_text)
    if path.is_dir():
        path = path / RESULT_FILE
    if not path.is_file():
        raise RecordNotFound(f"{spec}: no such file (give a {RESULT_FILE}, its folder, or {INSTANCES_FILE}:N)")
    if line:
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        n = int(line)
        if not 1 <= n <= len(lines):
            raise RecordNotFound(f"{spec}: {path} has {len(lines)} records; N must be in 1..{len(lines)}")
        text = lines[n - 1]
    else:
        text = path.read_text()
    try:
        rec = json.loads(text)
    except ValueError as exc:
        raise RecordNotFound(f"{spec}: not a JSON record ({exc})") from None
    if not isinstance(rec, dict):
        raise RecordNotFound(f"{spec}: not a result record")
    if rec.get("instances_file") and not line:
        jsonl = path.parent / rec["instances_file"]
        n = rec.get("n_instances") or "N"
        raise RecordNotFound(f"{spec} summarises a study job of {n} records; show one of them: "
                             f"{jsonl}:1 … {jsonl}:{n}")
    return rec


def main(argv: list[str] | None = None) -> int:
    """``iopopt show RESULT [--plot FILE]``: print a stored plan as a table, one row per layer."""
    parser = argparse.ArgumentParser(prog="iopopt show", description=main.__doc__)
    parser.add_argument("result", help=f"a {RESULT_FILE}, its folder, or DIR/{INSTANCES_FILE}:N")
    parser.add_argument("--plot", type=Path, default=None, help="also draw the plan diagram into this PNG file")
    args = parser.parse_args(argv)
    try:
        rec = load_record(args.result)
    except RecordNotFound as exc:
        print(f"iopopt show: error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(plan_table(rec))
    if rec.get("latency_s") is None:
        reason = f": {rec['error']}" if rec.get("error") else ""
        print(f"iopopt show: no plan in {args.result} (termination {rec.get('termination')}){reason}",
              file=sys.stderr)
        return 1
    if args.plot is not None:
        if not rec.get("per_op"):
            print(f"iopopt show: error: {args.result} has no per-layer breakdown to draw "
                  "(written with save_per_op=false)", file=sys.stderr)
            return 2
        from .plan_plot import plot_plans

        plot_plans([rec], args.plot, title=f"{rec.get('model')} on {rec.get('cluster')} / {rec.get('network')} — "
                   f"{rec.get('solver')}: the plan layer by layer")
        print(f"plan diagram: {args.plot}")
    return 0
