"""Private network namespaces with shaped loopback links: a shared medium or a switched network.

Every namespace is anonymous (``unshare``, never ``ip netns add``): it lives
only while a process is in it. A *holder* (``sleep infinity``, SIGKILLed when
the testbed dies) keeps it alive; ranks join it with ``setns``; when the holder
and the ranks are gone the kernel destroys it with its links and queues.
Only loopback addresses (127.0.0.0/8) are used, inside namespaces made here.

* ``shared`` (one collision domain, e.g. Wi-Fi): all ranks in one namespace,
  one token bucket (``tc tbf``) on its ``lo``: every byte of every rank, both
  directions, passes the same bucket.
* ``switched`` (full-duplex port per device, e.g. Ethernet): one namespace per
  rank with a veth ``eth0`` (address 127.1.0.<rank+1>) to a bridge in a switch
  namespace; a bucket on ``eth0`` (uplink) and one on the switch port
  (downlink), so disjoint pairs and opposite directions do not share a rate.

MTU 1500 everywhere: with loopback's default 64 KiB MTU a bucket smaller than
one packet drops every packet and the transfer stalls.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass

from . import _sys

__all__ = ["Namespace", "Topology", "make_topology", "tbf_settings", "WIRE_EFFICIENCY"]

#: TCP payload per byte on the wire at MTU 1500 (1448 of 1514 bytes): tbf counts frame bytes.
WIRE_EFFICIENCY = 1448 / 1514
MTU = 1500


class Namespace:
    """An anonymous network namespace held by a ``sleep infinity`` child that dies with this process."""

    def __init__(self, cgroup: str | None = None):
        parent = os.getpid()

        def pre():  # in the child, before exec
            _sys.die_with_parent(parent)
            if cgroup is not None:
                _sys.write(os.path.join(cgroup, "cgroup.procs"), os.getpid())
            _sys.unshare_net()

        self.holder = subprocess.Popen(["sleep", "infinity"], preexec_fn=pre, stdin=subprocess.DEVNULL)
        self.path = f"/proc/{self.holder.pid}/ns/net"
        self.inode = os.stat(self.path).st_ino
        self.run("ip", "link", "set", "lo", "up")

    @property
    def pid(self) -> int:
        return self.holder.pid

    def run(self, *cmd: str) -> str:
        """Run ``cmd`` inside this namespace (through ``nsenter``); its stdout, or RuntimeError with stderr."""
        r = subprocess.run(["nsenter", f"--net={self.path}", *cmd], capture_output=True, text=True, check=False)
        if r.returncode:
            raise RuntimeError(f"{' '.join(cmd)} (in the testbed namespace): {r.stderr.strip() or r.returncode}")
        return r.stdout

    def close(self) -> None:
        if self.holder.poll() is None:
            self.holder.send_signal(signal.SIGKILL)
        self.holder.wait()


def tbf_settings(bandwidth_bytes_per_s: float) -> dict:
    """tc tbf arguments for a link whose TCP goodput should be ``bandwidth_bytes_per_s``.

    The rate is raised by the frame overhead (goodput = rate × 1448/1514), the
    bucket holds about three frames (or 0.25 ms of traffic at high rates: a
    small bucket keeps message times faithful), and the queue holds 0.1 s of
    traffic (at least 64 KiB) so TCP never loses a packet to it.
    """
    rate_bit = int(round(bandwidth_bytes_per_s * 8 / WIRE_EFFICIENCY))
    burst = max(4096, int(bandwidth_bytes_per_s * 0.25e-3))
    limit = max(65536, int(bandwidth_bytes_per_s * 0.1))
    return {"rate_bit_per_s": rate_bit, "burst_bytes": burst, "limit_bytes": limit}


def _tbf(ns: Namespace, dev: str, s: dict) -> None:
    ns.run("tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", f"{s['rate_bit_per_s']}bit",
           "burst", str(s["burst_bytes"]), "limit", str(s["limit_bytes"]))


@dataclass
class Topology:
    """The namespaces of one testbed: where each rank runs and how it reaches rank 0."""

    kind: str
    rank_ns: list[Namespace]
    all_ns: list[Namespace]
    addrs: list[str]
    ifname: str
    shaping: dict | None

    def close(self) -> None:
        for ns in self.all_ns:
            ns.close()


def make_topology(kind: str, k: int, bandwidth_bytes_per_s: float | None, cgroup: str | None = None) -> Topology:
    """Namespaces for ``k`` ranks: ``kind`` ``shared`` or ``switched``; links shaped when a bandwidth is given."""
    if kind not in ("shared", "switched"):
        raise ValueError(f"testbed topology must be shared or switched, got {kind!r}")
    shaping = None if bandwidth_bytes_per_s is None else tbf_settings(bandwidth_bytes_per_s)
    made: list[Namespace] = []
    try:
        if kind == "shared":
            ns = Namespace(cgroup)
            made.append(ns)
            ns.run("ip", "link", "set", "lo", "mtu", str(MTU))
            if shaping:
                _tbf(ns, "lo", shaping)
            return Topology(kind, [ns] * k, made, ["127.0.0.1"] * k, "lo", shaping)
        switch = Namespace(cgroup)
        made.append(switch)
        switch.run("ip", "link", "add", "br0", "type", "bridge")
        switch.run("ip", "link", "set", "br0", "up")
        ranks, addrs = [], []
        for i in range(k):
            ns = Namespace(cgroup)
            made.append(ns)
            ranks.append(ns)
            switch.run("ip", "link", "add", f"p{i}", "mtu", str(MTU), "type", "veth", "peer", "name", "eth0",
                       "mtu", str(MTU), "netns", str(ns.pid))
            switch.run("ip", "link", "set", f"p{i}", "master", "br0")
            switch.run("ip", "link", "set", f"p{i}", "up")
            # lo owns all of 127/8 by default: keep 127.0.0.1 only, so 127.1.0.x goes out on eth0
            ns.run("ip", "addr", "del", "127.0.0.1/8", "dev", "lo")
            ns.run("ip", "addr", "add", "127.0.0.1/32", "dev", "lo")
            for scope in ("all", "default", "eth0"):
                ns.run("sysctl", "-qw", f"net.ipv4.conf.{scope}.route_localnet=1")
            addr = f"127.1.0.{i + 1}"
            ns.run("ip", "addr", "add", f"{addr}/24", "dev", "eth0")
            ns.run("ip", "link", "set", "eth0", "up")
            addrs.append(addr)
            if shaping:
                _tbf(ns, "eth0", shaping)  # uplink: rank -> switch
                _tbf(switch, f"p{i}", shaping)  # downlink: switch -> rank
        return Topology(kind, ranks, made, addrs, "eth0", shaping)
    except BaseException:
        for ns in made:
            ns.close()
        raise
