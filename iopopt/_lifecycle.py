"""Process hygiene: a killed run leaves no process and no temporary file behind.

* :func:`terminate_as_exception` turns SIGTERM into :class:`Terminated` (a
  ``BaseException``, like ``KeyboardInterrupt`` for SIGINT), so ``finally``
  blocks and context managers (temporary folders, the distributed launcher's
  rank cleanup, joblib's abort) run before the process ends.
* :func:`end_descendants` ends every process below this one (CBC, joblib
  workers, distributed ranks): SIGTERM, a grace period, then SIGKILL.
* Children that must not outlive a parent killed with SIGKILL watch it:
  :func:`watch_parent` (a thread polling ``os.getppid()``, for Python
  children) and :func:`die_with_parent` (``prctl(PR_SET_PDEATHSIG)``, for
  binaries started with ``preexec_fn``). :func:`watch_joblib_workers` makes
  every joblib (loky) worker this process starts watch it from its start,
  before any job (:func:`watch_sweep` is their initializer).
* :func:`private_temp_dir` makes a temporary folder named after its process
  (``PREFIX<pid>-*``); :func:`remove_stale_temp_dirs` removes those of
  processes that no longer exist (a SIGKILL leaves them behind).
* :func:`exclusive_lock` holds a ``flock`` on a file, which the kernel
  releases when its holder dies, however it dies.

Linux-first: where ``/proc`` or ``prctl`` is missing these do nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "Terminated",
    "terminate_as_exception",
    "descendants",
    "end_descendants",
    "watch_parent",
    "die_with_parent",
    "watch_sweep",
    "watch_joblib_workers",
    "private_temp_dir",
    "remove_stale_temp_dirs",
    "pid_exists",
    "exclusive_lock",
]

_PR_SET_PDEATHSIG = 1


class Terminated(BaseException):
    """SIGTERM arrived (raised in the main thread by :func:`terminate_as_exception`)."""


def _raise_terminated(signum, frame):  # pragma: no cover - runs in a signal handler
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise Terminated()


def terminate_as_exception() -> None:
    """From now on SIGTERM raises :class:`Terminated` in the main thread (no-op elsewhere)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


def _children_map() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return out
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()  # after "pid (comm) "
        if fields and fields[0] != b"Z":
            out.setdefault(int(fields[1]), []).append(int(name))
    return out


def descendants(pid: int | None = None) -> list[int]:
    """Live (non-zombie) processes below ``pid`` (default: this process), parents before children."""
    tree = _children_map()
    out: list[int] = []
    todo = [os.getpid() if pid is None else pid]
    while todo:
        kids = tree.get(todo.pop(0), [])
        out.extend(kids)
        todo.extend(kids)
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3] != b"Z"
    except OSError:
        return False


def _spared() -> set[int]:
    """multiprocessing's resource tracker: it ends by itself when this process exits (and must outlive
    this process's last clean-up, or it is relaunched and complains)."""
    tracker = sys.modules.get("multiprocessing.resource_tracker")
    pid = getattr(getattr(tracker, "_resource_tracker", None), "_pid", None)
    return {pid} if pid else set()


def end_descendants(grace_s: float = 2.0) -> list[int]:
    """SIGTERM every process below this one, SIGKILL those alive after ``grace_s``; the pids still alive.

    multiprocessing's resource tracker is spared (see :func:`_spared`).
    """
    spared = _spared()
    pids = [p for p in descendants() if p not in spared]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        deadline = time.monotonic() + (grace_s if sig == signal.SIGTERM else 2.0)
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError, OSError):
                while os.waitpid(-1, os.WNOHANG)[0] > 0:  # reap our own children
                    pass
            pids = [p for p in pids if _alive(p)] + [p for p in descendants() if p not in pids and p not in spared]
            if not pids:
                return []
            time.sleep(0.05)
    return pids


_watching = False


def watch_parent(interval_s: float = 0.25, on_exit=None, parent: int | None = None) -> None:
    """Start (once per process) a daemon thread that ends this process when its parent dies.

    It ends this process's own children first and removes its temporary
    folders (:func:`private_temp_dir`), then ``os._exit(1)``; ``on_exit`` runs
    before that (errors ignored). ``parent``: the pid the parent had (default:
    the current parent); a process already orphaned when it starts watching
    ends at once.
    """
    global _watching
    if _watching:
        return
    _watching = True
    parent = os.getppid() if parent is None else parent

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval_s)
        with contextlib.suppress(BaseException):
            if on_exit is not None:
                on_exit()
        with contextlib.suppress(BaseException):
            end_descendants(grace_s=0.5)
        with contextlib.suppress(BaseException):
            remove_stale_temp_dirs(include_own=True)
        os._exit(1)

    threading.Thread(target=watch, name="iopopt-watch-parent", daemon=True).start()


def watch_sweep(sweep_pid: int) -> None:
    """A loky worker's initializer: watch the sweep's process ``sweep_pid`` (:func:`watch_parent`).

    A worker whose parent is already another process (the sweep died while
    it started) ends at once.
    """
    watch_parent(parent=sweep_pid)


def watch_joblib_workers() -> None:
    """From now on every loky worker of ``joblib.Parallel(backend="loky")`` in this process watches it.

    loky starts its workers at once and keeps an idle one for 300 s; one that
    never got a job has not imported anything of the job, so nothing of it
    would notice the sweep's death (SIGKILL: nothing of the sweep runs). This
    registers under the name ``loky`` (joblib's ``register_parallel_backend``,
    which Hydra's joblib launcher resolves its hard-coded ``backend="loky"``
    through) a ``LokyBackend`` whose executor runs :func:`watch_sweep` as the
    initializer of each worker: the worker ends, with its children and its
    temporary folders, within a second of the sweep's death, busy or idle.
    """
    from joblib import register_parallel_backend  # type: ignore[import-untyped]
    from joblib.parallel import LokyBackend  # type: ignore[import-untyped]

    sweep_pid = os.getpid()

    class WatchedLokyBackend(LokyBackend):
        def __init__(self, *args, **kwargs) -> None:
            kwargs.setdefault("initializer", watch_sweep)
            kwargs.setdefault("initargs", (sweep_pid,))
            super().__init__(*args, **kwargs)

    register_parallel_backend("loky", WatchedLokyBackend)


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """``prctl(PR_SET_PDEATHSIG, sig)``: the kernel sends ``sig`` when the parent thread ends.

    For ``subprocess.Popen(preexec_fn=die_with_parent)``; a no-op where prctl is missing.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover
        pass


#: Prefixes of the temporary folders this package makes (:func:`private_temp_dir` adds any other).
_PREFIXES: set[str] = {"iopopt-ilp-"}


@contextlib.contextmanager
def private_temp_dir(prefix: str) -> Iterator[Path]:
    """A temporary folder ``<tmp>/<prefix><pid>-XXXX``, removed on exit (also on an exception)."""
    _PREFIXES.add(prefix)
    with tempfile.TemporaryDirectory(prefix=f"{prefix}{os.getpid()}-") as tmp:
        yield Path(tmp)


def remove_stale_temp_dirs(prefixes: tuple[str, ...] | None = None, include_own: bool = False) -> list[Path]:
    """Remove ``<tmp>/<prefix><pid>-*`` folders whose process is gone (and this process's with ``include_own``)."""
    removed = []
    root = Path(tempfile.gettempdir())
    for prefix in prefixes or tuple(_PREFIXES):
        for path in root.glob(f"{prefix}*-*"):
            pid_text = path.name[len(prefix):].partition("-")[0]
            if not pid_text.isdigit():
                continue
            pid = int(pid_text)
            if (pid == os.getpid() and include_own) or (pid != os.getpid() and not pid_exists(pid)):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def pid_exists(pid: int) -> bool:
    """True while a (non-zombie) process ``pid`` exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _alive(pid) or not os.path.exists("/proc")


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the ``with`` block; waits for it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock
