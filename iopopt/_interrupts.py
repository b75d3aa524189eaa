"""The one line each command prints when SIGINT or SIGTERM ends it (standard library only: every layer and the
console-script entry points (:mod:`iopopt._entry`) may import it)."""

from __future__ import annotations

__all__ = ["APP_INTERRUPTED", "REPORT_INTERRUPTED"]

#: ``iopopt`` and its subcommands (``{prog}``: the command, ``{name}``: the signal).
APP_INTERRUPTED = "{prog}: interrupted by {name}; finished results are kept"
#: ``iopopt-report`` (``{name}``: the signal).
REPORT_INTERRUPTED = ("iopopt-report: interrupted by {name}; no file is half-written (each is its old or its whole "
                      "new version): run it again for a complete report")
