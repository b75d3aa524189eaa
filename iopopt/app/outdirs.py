"""Output folders that no two runs share, and that fail with one line when they cannot be written.

A sweep **owns** its folder while it runs: it holds an exclusive
``flock`` on ``<sweep dir>/.iopopt-sweep.lock`` (released by the kernel
when the process ends, however it ends). Then:

* the default folder (``outputs/multirun/<date>_<time>``, stamped to the
  second): a sweep that finds it owned, or used by an earlier sweep, takes
  ``<stamp>-2``, ``<stamp>-3``, ... instead, so two sweeps started in the
  same second both keep all their results;
* a folder given with ``hydra.sweep.dir=DIR``: a sweep refuses to write
  into it while another live sweep owns it (one line, exit status 2);
  after that sweep has ended it may (``resume=true`` keeps the finished jobs).

A single run checks that its folder can be written (a read-only or full
file system) before Hydra writes anything there.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict, read_write

__all__ = ["OutputDirCallback", "LOCK_FILE", "claim_sweep_dir", "write_error_line"]

#: The lock file of a sweep folder (holds the owning sweep's pid).
LOCK_FILE = ".iopopt-sweep.lock"

#: Open lock files of the sweeps this process owns (kept open: closing releases the lock).
_held: dict[str, int] = {}


class SweepDirBusy(Exception):
    """An explicit sweep folder is owned by another live sweep."""


def write_error_line(exc: OSError, what: str = "output") -> str:
    """One line for a failed write: ``cannot write output /x/y: No space left on device (errno ENOSPC)``."""
    name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    where = exc.filename if exc.filename is not None else "?"
    return f"cannot write {what} {where}: {exc.strerror or exc} ({name})"


def _probe(folder: Path) -> None:
    """Raise OSError when ``folder`` cannot be created or a small file cannot be written into it."""
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".iopopt-probe-{os.getpid()}"
    try:
        with open(probe, "wb") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


def _try_lock(folder: Path, fresh_only: bool) -> int | None:
    """The fd of ``folder``'s lock, now held by this process; None when another sweep owns or used it."""
    import fcntl

    _probe(folder)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    previous = os.read(fd, 64)
    if fresh_only and (previous or (folder / "multirun.yaml").exists()):
        os.close(fd)  # an earlier sweep's folder: not ours to write into
        return None
    os.lseek(fd, 0, os.SEEK_SET)
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def _owner(folder: Path) -> str:
    with contextlib.suppress(OSError):
        text = (folder / LOCK_FILE).read_text().strip()
        if text.isdigit():
            return f"pid {text}"
    return "pid ?"


def claim_sweep_dir(folder: Path, explicit: bool, tries: int = 1000) -> Path:
    """Own ``folder`` (or, unless ``explicit``, the first free ``folder-N``); the folder owned.

    Raises :class:`SweepDirBusy` when an ``explicit`` folder is owned by a live sweep.
    """
    folder = Path(folder)
    for n in range(1, tries + 1):
        cand = folder if n == 1 else folder.with_name(f"{folder.name}-{n}")
        if str(cand.resolve()) in _held:
            return cand
        fd = _try_lock(cand, fresh_only=not explicit)
        if fd is not None:
            _held[str(cand.resolve())] = fd
            return cand
        if explicit:
            raise SweepDirBusy(f"hydra.sweep.dir={folder} is in use by another running sweep ({_owner(folder)}); "
                               "wait for it to end or choose another hydra.sweep.dir")
    raise SweepDirBusy(f"no free sweep folder next to {folder} after {tries} tries")


def release_all() -> None:
    """Release every sweep folder this process owns (the end of a sweep)."""
    for fd in _held.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()


def _quote(path: str) -> str:
    return "'" + path.replace("\\", "\\\\").replace("'", "\\'") + "'"


class OutputDirCallback(Callback):
    """Claims the sweep folder (see the module docstring) and checks that output folders can be written."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        folder = Path(str(config.hydra.run.dir))
        try:
            _probe(folder)
        except OSError as exc:
            print(f"iopopt: {write_error_line(exc, 'the run folder')}", file=sys.stderr)
            sys.exit(1)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        folder = Path(str(config.hydra.sweep.dir))
        given = list(config.hydra.overrides.hydra or ())
        explicit = any(str(o).split("=", 1)[0].lstrip("+~") == "hydra.sweep.dir" for o in given)
        try:
            owned = claim_sweep_dir(folder, explicit)
        except SweepDirBusy as exc:
            print(f"iopopt: error: {exc}", file=sys.stderr)
            sys.exit(2)
        except OSError as exc:
            print(f"iopopt: {write_error_line(exc, 'the sweep folder')}", file=sys.stderr)
            sys.exit(1)
        if owned != folder:
            # the jobs' configs are composed again from these overrides: they must name the folder too
            with read_write(config), open_dict(config):
                config.hydra.sweep.dir = str(owned)
                config.hydra.overrides.hydra.append(f"hydra.sweep.dir={_quote(str(owned))}")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        release_all()
