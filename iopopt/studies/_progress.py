"""A one-line progress counter on stderr for the long study commands (``iopopt profile``, ``iopopt opfit``)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``desc: done/total unit (label), elapsed``; redrawn in place on a terminal, one line per step elsewhere.

    >>> import io
    >>> out = io.StringIO()
    >>> with Progress(2, "demo", "stage", file=out) as p:
    ...     p.step("a")
    ...     p.step("b")
    >>> [line.split(",")[0] for line in out.getvalue().splitlines()]
    ['demo: 1/2 stage (a)', 'demo: 2/2 stage (b)']
    """

    def __init__(self, total: int, desc: str, unit: str, file: TextIO | None = None):
        self.total, self.desc, self.unit = total, desc, unit
        self.file = sys.stderr if file is None else file
        self.done = 0
        self._t0 = time.perf_counter()
        self._tty = bool(getattr(self.file, "isatty", lambda: False)())

    def step(self, label: str = "") -> None:
        self.done += 1
        elapsed = time.perf_counter() - self._t0
        text = f"{self.desc}: {self.done}/{self.total} {self.unit}" + (f" ({label})" if label else "")
        text += f", {elapsed:.0f} s"
        if self._tty:
            self.file.write("\r\033[K" + text)
        else:
            self.file.write(text + "\n")
        self.file.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        if self._tty and self.done:
            self.file.write("\n")
            self.file.flush()
