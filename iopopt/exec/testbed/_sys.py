"""Low-level Linux pieces of the testbed: namespaces through ``libc``, cgroup-v1 files, process checks.

Python 3.11 has no ``os.setns``/``os.unshare``, so they go through ctypes.
Every function raises :class:`OSError` with the kernel's reason.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import time
from collections.abc import Callable

__all__: list[str] = []

CLONE_NEWNET = 0x40000000
_PR_SET_PDEATHSIG = 1
#: Prefix of every cgroup the testbed makes: ``<root>/iopopt_tb_<owner pid>/...``.
CGROUP_PREFIX = "iopopt_tb_"

_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def unshare_net() -> None:
    """Move the calling process into a new, empty network namespace."""
    _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")


def setns_net(path: str) -> None:
    """Move the calling process into the network namespace ``path`` (``/proc/PID/ns/net``)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.setns(fd, CLONE_NEWNET), f"setns({path})")
    finally:
        os.close(fd)


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when its parent dies (``PR_SET_PDEATHSIG``); exit now if it is already gone."""
    _check(_libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def cgroup_mount(controller: str) -> str | None:
    """Mount point of the cgroup-v1 hierarchy that has ``controller`` (None if there is none)."""
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 4 and parts[2] == "cgroup" and controller in parts[3].split(","):
                    return parts[1]
    except OSError:  # pragma: no cover
        return None
    return None


def write(path: str, value: object) -> None:
    with open(path, "w") as f:
        f.write(str(value))


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def members(cgroup: str) -> list[int]:
    """Process ids in ``cgroup`` and all its sub-cgroups."""
    out: list[int] = []
    for dirpath, _, _ in os.walk(cgroup):
        try:
            out += [int(p) for p in read(os.path.join(dirpath, "cgroup.procs")).split()]
        except FileNotFoundError:
            continue
    return out


def remove_cgroup(root: str, timeout_s: float = 10.0) -> list[int]:
    """SIGKILL every process in ``root`` (and below), then remove the directories bottom-up.

    Returns the ids of the processes it had to kill. Raises OSError when a
    directory is still busy after ``timeout_s``.
    """
    killed: list[int] = []
    if not os.path.isdir(root):
        return killed
    dirs = [os.path.join(dp, d) for dp, dns, _ in os.walk(root) for d in dns]
    dirs = sorted(dirs, key=lambda p: -p.count("/")) + [root]
    deadline = time.monotonic() + timeout_s
    for d in dirs:
        while True:
            for pid in members(d):
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                except ProcessLookupError:
                    pass
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
    return killed


def sweep_stale(roots: list[str], alive: Callable[[int], bool]) -> list[str]:
    """Remove testbed cgroups whose owner process is dead (left when the owner and its watchdog were killed).

    ``alive(pid)`` tells whether an owner still runs (the caller passes
    :func:`iopopt._lifecycle.pid_exists`; this module stays standard-library only for the watchdog).
    """
    removed = []
    for root in roots:
        try:
            names = os.listdir(root)
        except OSError:
            continue
        for name in names:
            if not name.startswith(CGROUP_PREFIX):
                continue
            try:
                owner = int(name[len(CGROUP_PREFIX):])
            except ValueError:
                continue
            if alive(owner):
                continue
            path = os.path.join(root, name)
            remove_cgroup(path, timeout_s=5.0)
            removed.append(path)
    return removed
