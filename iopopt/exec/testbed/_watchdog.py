"""The testbed's cleanup watchdog, run as a script (standard library only, so it starts fast).

``python _watchdog.py FD LOCK_DIR CGROUP_DIR...``: started by the testbed in
its own session, it blocks on a pipe whose write end only the testbed holds.
End of file means the testbed is gone, however it ended (also SIGKILL): it
then SIGKILLs every process left in the testbed's cgroups (ranks, namespace
holders, anything they forked), removes the cgroups bottom-up and the
testbed's directory of latency locks. The namespaces go with the last
process in them.
"""

import importlib.util
import os
import shutil
import signal
import sys
from pathlib import Path


def _sys_helpers():
    """The testbed's ``_sys`` (standard library only), loaded by path: ``python -I`` keeps this folder off sys.path."""
    spec = importlib.util.spec_from_file_location("iopopt_testbed_sys", Path(__file__).with_name("_sys.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    helpers = _sys_helpers()
    for root in argv[2:]:
        try:
            helpers.remove_cgroup(root, timeout_s=10.0)
        except OSError as exc:
            print(f"iopopt testbed watchdog: could not remove {root}: {exc}", file=sys.stderr)
    shutil.rmtree(argv[1], ignore_errors=True)  # after the ranks, which may hold its locks


if __name__ == "__main__":
    main(sys.argv[1:])
