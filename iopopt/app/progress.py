"""One progress display for sweeps and studies: ``[done/total] <what>: <outcome>, ETA m:ss``.

A line per finished unit (a job of a sweep, a solve of a study job), never a
progress bar: parallel jobs (joblib workers) write whole lines, so their
output cannot interleave. ``done`` counts finished units, whichever process
finished them: the jobs of a sweep append to a shared counter file in the
sweep directory (under a lock), set up by the sweep callback through
environment variables the launcher's worker processes inherit.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

__all__ = [
    "SWEEP_JOBS_ENV",
    "SWEEP_START_ENV",
    "SWEEP_COUNTER_ENV",
    "COUNTER_FILE",
    "Progress",
    "eta_text",
    "clock",
    "start_sweep",
    "end_sweep",
    "sweep_tick",
]

#: How many jobs the sweep has (set by the sweep callback; inherited by launcher workers).
SWEEP_JOBS_ENV = "IOPOPT_SWEEP_JOBS"
#: When the sweep started (``time.time()``).
SWEEP_START_ENV = "IOPOPT_SWEEP_START"
#: The file counting finished jobs (one byte per job).
SWEEP_COUNTER_ENV = "IOPOPT_SWEEP_COUNTER"
#: Name of the counter file in the sweep directory (removed when the sweep ends).
COUNTER_FILE = ".iopopt-progress"


def clock(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` from an hour on)."""
    s = max(0, round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def eta_text(done: int, total: int | None, elapsed_s: float) -> str:
    """``, ETA m:ss`` while units remain (the mean time per finished unit so far), else ``""``."""
    if not total or done <= 0 or done >= total:
        return ""
    return f", ETA {clock(elapsed_s / done * (total - done))}"


class Progress:
    """Finished units of one process's loop (the solves of a study job) and the ETA of the rest.

    >>> p = Progress(4, started=0.0)
    >>> p.tick(now=10.0)
    ('[1/4] ', ', ETA 0:30')
    """

    def __init__(self, total: int | None, started: float | None = None):
        self.total = total
        self.started = time.perf_counter() if started is None else started
        self.done = 0

    def tick(self, now: float | None = None) -> tuple[str, str]:
        """Count one finished unit; returns ``("[done/total] ", ", ETA m:ss")``."""
        self.done += 1
        now = time.perf_counter() if now is None else now
        total = f"/{self.total}" if self.total else ""
        return f"[{self.done}{total}] ", eta_text(self.done, self.total, now - self.started)


def start_sweep(sweep_dir: str | os.PathLike, n_jobs: int | None) -> None:
    """Tell the jobs of a starting sweep (and the launcher's workers, through the environment) how to count."""
    counter = Path(sweep_dir) / COUNTER_FILE
    counter.parent.mkdir(parents=True, exist_ok=True)
    counter.write_bytes(b"")
    os.environ[SWEEP_COUNTER_ENV] = str(counter.resolve())
    os.environ[SWEEP_START_ENV] = repr(time.time())
    if n_jobs is not None:
        os.environ[SWEEP_JOBS_ENV] = str(n_jobs)
    else:
        os.environ.pop(SWEEP_JOBS_ENV, None)


def end_sweep() -> float | None:
    """Forget the sweep (remove its counter file); returns its wall time in seconds (None when unknown)."""
    counter = os.environ.pop(SWEEP_COUNTER_ENV, None)
    start = os.environ.pop(SWEEP_START_ENV, None)
    os.environ.pop(SWEEP_JOBS_ENV, None)
    if counter:
        Path(counter).unlink(missing_ok=True)
    return time.time() - float(start) if start else None


def sweep_tick(job: int | None) -> tuple[str, str]:
    """Count a finished job of the current sweep: ``("[done/total] ", ", ETA m:ss")``.

    Outside a sweep ``("", "")``; without the callback's counter (another
    callback set-up, or a job run by hand) the job's own number, ``[job+1/total]``.
    """
    if job is None:
        return "", ""
    total_text = os.environ.get(SWEEP_JOBS_ENV, "")
    total = int(total_text) if total_text.isdigit() else None
    counter, start = os.environ.get(SWEEP_COUNTER_ENV), os.environ.get(SWEEP_START_ENV)
    done = None
    if counter:
        try:
            with open(counter, "ab") as f:  # parallel jobs: one lock, one byte each, the size is the count
                fcntl.flock(f, fcntl.LOCK_EX)
                f.write(b".")
                f.flush()
                done = os.fstat(f.fileno()).st_size
                fcntl.flock(f, fcntl.LOCK_UN)
        except OSError:
            done = None
    if done is None:
        return f"[{job + 1}{f'/{total}' if total else ''}] ", ""
    elapsed = time.time() - float(start) if start else 0.0
    return f"[{done}{f'/{total}' if total else ''}] ", eta_text(done, total, elapsed) if start else ""
