"""``iopopt-report DIR``: rebuild a sweep's summary and plots."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .build import build_report, written_line
from .constants import BASELINE, REFERENCE

log = logging.getLogger("iopopt")


def main(argv: list[str] | None = None) -> int:
    """``iopopt-report DIR``: rebuild the summary and plots of a sweep (or any directory of results)."""
    parser = argparse.ArgumentParser(prog="iopopt-report", description=main.__doc__)
    parser.add_argument("directory", type=Path, help="a sweep directory (holding multirun.yaml) or any results tree")
    parser.add_argument("--no-plots", action="store_true", help="write only summary.csv and summary.md")
    parser.add_argument("--max-timelines", type=int, default=24, help="at most this many per-plan timeline plots")
    parser.add_argument("--reference", default=REFERENCE, help="solver the others are compared to (default: ilp)")
    parser.add_argument("--baseline", default=BASELINE, help="baseline for speedup and memory (default: coedge)")
    parser.add_argument("-q", "--quiet", action="store_true", help="do not print the tables")
    args = parser.parse_args(argv)
    if not args.directory.is_dir():
        print(f"iopopt-report: error: {args.directory} is not a directory", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        written = build_report(
            args.directory, plots=not args.no_plots, max_timelines=args.max_timelines,
            reference=args.reference, baseline=args.baseline, echo=not args.quiet,
        )
    except FileNotFoundError as exc:
        print(f"iopopt-report: error: {exc}", file=sys.stderr)
        return 2
    print(written_line(args.directory, written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
