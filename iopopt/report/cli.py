"""``iopopt-report DIR``: rebuild a sweep's summary and plots, exactly as the sweep wrote them.

The report settings (``plots``, ``max_timelines``, ``max_plans``) are read
back from the sweep's own ``multirun.yaml`` (or a study run's
``.hydra/hydra.yaml``); options given on the command line win. A folder that
holds several sweeps (several ``multirun.yaml``, e.g. ``outputs/multirun``) is
refused unless ``--all`` (one report per sweep) or ``--merge`` (one report
over all their records) says what to do.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from .._interrupts import REPORT_INTERRUPTED
from ..results.io import display_path
from .build import build_report, written_line
from .constants import BASELINE, REFERENCE

__all__ = ["main", "report_settings", "sweeps_below"]

log = logging.getLogger("iopopt")

#: The report callback's settings and their defaults (conf/config.yaml, hydra.callbacks.report).
DEFAULTS = {"plots": True, "max_timelines": 24, "max_plans": 24}


def sweeps_below(directory: Path) -> list[Path]:
    """The sweep folders at or below ``directory`` (each holds a ``multirun.yaml``)."""
    return sorted(p.parent for p in directory.rglob("multirun.yaml"))


def report_settings(directory: Path) -> dict[str, Any]:
    """The report settings the sweep (or study run) in ``directory`` was made with; the defaults otherwise."""
    import yaml

    out = dict(DEFAULTS)
    for name in ("multirun.yaml", ".hydra/hydra.yaml"):
        path = directory / name
        if not path.is_file():
            continue
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            log.warning("could not read the report settings in %s: %s", path, exc)
            break
        node = ((tree.get("hydra") or {}).get("callbacks") or {}).get("report") or {}
        out.update({k: node[k] for k in DEFAULTS if isinstance(node.get(k), (bool, int))})
        break
    return out


def _build(directory: Path, args, quiet: bool) -> list[Path]:
    settings = report_settings(directory)
    for key in DEFAULTS:
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    return build_report(directory, plots=settings["plots"], max_timelines=settings["max_timelines"],
                        max_plans=settings["max_plans"], reference=args.reference, baseline=args.baseline,
                        echo=not quiet)


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="iopopt-report", description=(main.__doc__ or "").splitlines()[0])
    parser.add_argument("directory", type=Path, help="a sweep directory (holding multirun.yaml) or a study run")
    parser.add_argument("--no-plots", dest="plots", action="store_false", default=None,
                        help="write only summary.csv and summary.md")
    parser.add_argument("--max-timelines", type=int, default=None,
                        help="at most this many per-plan timeline plots (default: the sweep's own setting)")
    parser.add_argument("--max-plans", type=int, default=None,
                        help="at most this many plan diagrams (default: the sweep's own setting)")
    parser.add_argument("--reference", default=REFERENCE, help="solver the others are compared to (default: ilp)")
    parser.add_argument("--baseline", default=BASELINE, help="baseline for speedup and memory (default: coedge)")
    several = parser.add_mutually_exclusive_group()
    several.add_argument("--all", action="store_true", help="DIR holds several sweeps: report each in its folder")
    several.add_argument("--merge", action="store_true",
                         help="DIR holds several sweeps: one report over all their records, written in DIR")
    parser.add_argument("-q", "--quiet", action="store_true", help="do not print the tables")
    args = parser.parse_args(argv)
    directory = args.directory
    if not directory.is_dir():
        print(f"iopopt-report: error: {directory} is not a directory", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    sweeps = sweeps_below(directory)
    if len(sweeps) > 1 and not (args.all or args.merge):
        names = ", ".join(str(s.relative_to(directory)) if s != directory else "." for s in sweeps[:4])
        more = f", … ({len(sweeps)} in all)" if len(sweeps) > 4 else ""
        print(f"iopopt-report: error: {display_path(directory)} holds {len(sweeps)} sweeps ({names}{more}); "
              "give one of them, or --all to report each in its own folder, or --merge to pool their records "
              "in one report", file=sys.stderr)
        return 2
    targets = sweeps if args.all and sweeps else [directory]
    try:
        for target in targets:
            written = _build(target, args, quiet=args.quiet)
            print(written_line(target, written))
    except FileNotFoundError as exc:
        print(f"iopopt-report: error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """``iopopt-report DIR``: rebuild the summary and plots of a sweep (or any directory of results).

    SIGINT (Ctrl-C) or SIGTERM end it with one line and status 130 or 143;
    every file is written atomically, so each is its old or its whole new
    version, never a part.
    """
    import signal
    import threading

    from .._lifecycle import Terminated, terminate_as_exception

    previous = signal.getsignal(signal.SIGTERM)
    terminate_as_exception()
    try:
        return _main(argv)
    except (KeyboardInterrupt, Terminated) as exc:
        name, status = ("SIGINT", 130) if isinstance(exc, KeyboardInterrupt) else ("SIGTERM", 143)
        print(REPORT_INTERRUPTED.format(name=name), file=sys.stderr)
        return status
    finally:
        if previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
