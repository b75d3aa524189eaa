"""The testbed's cleanup watchdog, run as a script (standard library only, so it starts fast).

``python _watchdog.py FD CGROUP_DIR...``: started by the testbed in its own
session, it blocks on a pipe whose write end only the testbed holds. End of
file means the testbed is gone, however it ended (also SIGKILL): it then
SIGKILLs every process left in the testbed's cgroups (ranks, namespace
holders, anything they forked) and removes the cgroups bottom-up. The
namespaces go with the last process in them.
"""

import contextlib
import errno
import os
import signal
import sys
import time


def _pids(d):
    pids = []
    for dirpath, _, _ in os.walk(d):
        try:
            with open(os.path.join(dirpath, "cgroup.procs")) as f:
                pids += [int(p) for p in f.read().split()]
        except FileNotFoundError:
            pass
    return pids


def _clean(root, deadline):
    if not os.path.isdir(root):
        return
    dirs = sorted((os.path.join(dp, d) for dp, dns, _ in os.walk(root) for d in dns), key=lambda p: -p.count("/"))
    for d in dirs + [root]:
        while True:
            for pid in _pids(d):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    print(f"iopopt testbed watchdog: could not remove {d}: {exc}", file=sys.stderr)
                    break
                time.sleep(0.02)


def main(argv):
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)  # Ctrl-C on the terminal must not stop the cleanup
    fd = int(argv[0])
    while True:
        try:
            if os.read(fd, 1) == b"":
                break
        except InterruptedError:  # pragma: no cover
            continue
    deadline = time.monotonic() + 10.0
    for root in argv[1:]:
        _clean(root, deadline)


if __name__ == "__main__":
    main(sys.argv[1:])
