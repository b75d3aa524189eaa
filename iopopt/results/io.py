"""Strict JSON and atomic writes: a reader sees the old file or the whole new one, never a part."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .._lifecycle import pid_exists

__all__ = ["json_safe", "display_path", "write_json_atomic", "write_jsonl_atomic", "write_text_atomic", "atomic_path",
           "remove_partial_files"]


def json_safe(value: Any) -> Any:
    """``value`` with tuples as lists, non-finite floats as None and unknown objects as strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        try:
            return json_safe(value.item())
        except (TypeError, ValueError):
            pass
    return str(value)


def display_path(path: str | os.PathLike) -> str:
    """``path`` relative to the current directory when it lies below it (for log lines), else as given."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (temporary file in the same directory, then rename)."""
    return write_text_atomic(path, json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n")


def write_jsonl_atomic(path: str | os.PathLike, records) -> Path:
    """Write one JSON object per line to ``path`` atomically."""
    text = "".join(json.dumps(json_safe(r), allow_nan=False) + "\n" for r in records)
    return write_text_atomic(path, text)


def _umask() -> int:
    """The process's umask (read from /proc where it can be, so as not to change it even for a moment)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically: a reader sees the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a result file gets what open() would give it
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path next to ``path`` to write to (e.g. ``fig.savefig``), renamed to ``path`` on success.

    On any exception (also ``KeyboardInterrupt``) the temporary file is
    removed and ``path`` is left as it was: never half-written. The temporary
    name, ``.<stem>.<pid>-XXXX.tmp<suffix>``, keeps ``path``'s suffix (writers
    that infer the format from it) and names the writing process, so that a
    parent can remove the files of a worker it had to kill
    (:func:`remove_partial_files`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.{os.getpid()}-",
                               suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


#: A temporary file of a writer that is not running here is removed only once it is this old (seconds): on a
#: shared file system its writer may be alive on another host.
STALE_AFTER_S = 600.0


def _stale(tmp: Path, pid: int) -> bool:
    try:
        return not pid_exists(pid) and time.time() - tmp.stat().st_mtime > STALE_AFTER_S
    except OSError:
        return False


def remove_partial_files(folders, pids=None) -> list[Path]:
    """Remove the temporary files :func:`atomic_path` processes ``pids`` (killed mid-write) left in ``folders``;
    ``pids`` None: those of writers no longer running here, untouched for :data:`STALE_AFTER_S` (a run
    SIGKILLed with its workers cleans nothing up, a later one does)."""
    wanted = None if pids is None else {str(p) for p in pids}
    removed = []
    for folder in folders:
        for tmp in Path(folder).glob(".*.tmp*"):
            # a pid has at most 7 digits (Linux's pid_max is at most 2**22): longer is not a writer of this system
            owner = re.search(r"\.(\d{1,7})-[a-z0-9_]+\.tmp(\.[^.]*)?$", tmp.name)
            if owner and (owner.group(1) in wanted if wanted is not None else _stale(tmp, int(owner.group(1)))):
                with contextlib.suppress(OSError):
                    tmp.unlink()
                    removed.append(tmp)
    return removed
