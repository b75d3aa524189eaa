"""Per-message latency on the testbed, EMULATED in the application (this kernel has no ``netem``).

The sender of a message holds a lock for ``latency_s`` before it posts the
message: on a shared medium one lock for everyone (latencies add up over all
messages, as the shared network model says), on a switched network the
sender's uplink and the receiver's downlink (latencies add up per port;
taken in a fixed order, uplink then downlink, so no cycle can form). The
locks are ``flock`` s on files in a directory the testbed made. It is
accurate to about a scheduler tick, costs no CPU, and does not slow TCP's
own acknowledgements (a real long path would).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass

from ..._lifecycle import exclusive_lock

__all__ = ["MessageLatency"]


@dataclass(frozen=True)
class MessageLatency:
    """``latency_s`` per message, serialised per medium (``shared``) or per port (``switched``)."""

    latency_s: float
    topology: str
    lock_dir: str

    def before_send(self, src: int, dst: int) -> None:
        """Block for this message's latency, holding the locks of the medium or ports it crosses."""
        if self.latency_s <= 0:
            return
        names = ["medium"] if self.topology == "shared" else [f"up{src}", f"down{dst}"]
        with contextlib.ExitStack() as held:  # taken in order, released in reverse
            for name in names:
                held.enter_context(exclusive_lock(os.path.join(self.lock_dir, name)))
            end = time.perf_counter() + self.latency_s
            while (left := end - time.perf_counter()) > 0:
                time.sleep(left)
