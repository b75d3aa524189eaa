"""Console-script entry points that catch an interrupt while their modules are still being imported.

``iopopt`` imports Hydra and ``iopopt-report`` pandas and matplotlib before
their ``main`` can install its handlers (about a third of a second each);
Ctrl-C then is the same one line as later, not a traceback from inside an
import. The package's own import (``iopopt/__init__``, about 0.15 s, with
networkx) comes before this module's and is not covered.
"""

from __future__ import annotations

import sys

from ._interrupts import APP_INTERRUPTED, REPORT_INTERRUPTED

__all__ = ["app", "report"]


def report() -> int:
    """The ``iopopt-report`` console script: :func:`iopopt.report.cli.main`, Ctrl-C during its imports included."""
    try:
        from .report.cli import main
    except KeyboardInterrupt:
        print(REPORT_INTERRUPTED.format(name="SIGINT"), file=sys.stderr)
        return 130
    return main()


def app() -> object:
    """The ``iopopt`` console script: :func:`iopopt.app.main`, Ctrl-C during its imports included."""
    try:
        from .app import main
    except KeyboardInterrupt:
        print(APP_INTERRUPTED.format(prog="iopopt", name="SIGINT"), file=sys.stderr)
        return 130
    return main()
