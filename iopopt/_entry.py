"""Console-script entry points that catch an interrupt while their modules are still being imported.

``iopopt-report`` imports pandas and matplotlib before its ``main`` can install
its handlers (about a third of a second); Ctrl-C then is the same one line as
later, not a traceback from inside an import. This module imports nothing
heavy itself.
"""

from __future__ import annotations

import sys

__all__ = ["report", "REPORT_INTERRUPTED"]

#: What ``iopopt-report`` prints when SIGINT or SIGTERM ends it (``{name}``: the signal).
REPORT_INTERRUPTED = ("iopopt-report: interrupted by {name}; no file is half-written (each is its old or its whole "
                      "new version): run it again for a complete report")


def report() -> int:
    """The ``iopopt-report`` console script: :func:`iopopt.report.cli.main`, Ctrl-C during its imports included."""
    try:
        from .report.cli import main
    except KeyboardInterrupt:
        print(REPORT_INTERRUPTED.format(name="SIGINT"), file=sys.stderr)
        return 130
    return main()
