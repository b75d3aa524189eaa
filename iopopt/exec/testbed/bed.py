"""The testbed's lifecycle: cgroups with a CPU quota per rank, shaped namespaces, a watchdog, cleanup.

:class:`Testbed` is a context manager. Entering it sweeps what a killed
earlier testbed left, makes ``<cpu>/iopopt_tb_<pid>/rank<i>`` cgroups (CFS
quota and period, high ``cpu.shares``) and the namespaces
(:mod:`.netns`), and starts the watchdog. :meth:`Testbed.placement` is the
picklable hook a rank runs first (:func:`iopopt.exec.distributed.launch`'s
``rank_setup``): it dies with its parent, joins its cgroup and its namespace.
Leaving (normally, by an exception, Ctrl-C or SIGTERM) kills what is left,
removes the cgroups and closes the namespaces; if this process is SIGKILLed
the watchdog does it; if the watchdog is killed too, the next testbed's sweep.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ..._lifecycle import pid_exists
from . import _sys
from .netns import Topology, make_topology

__all__ = ["Testbed", "TestbedSpec", "TestbedUnavailable", "RankPlacement", "unavailable_reason", "cpu_period"]

#: Default CFS period: shorter than the compute steps timed, longer than the throttling overhead (5 ms adds 3–10 %).
PERIOD_US = 10_000
#: Smallest CFS quota the kernel takes.
MIN_QUOTA_US = 1000
MAX_PERIOD_US = 1_000_000
#: cpu.shares of every rank cgroup, so other work on the machine does not slow the ranks below their quota.
SHARES = 262_144


class TestbedUnavailable(RuntimeError):
    """This machine does not allow the testbed (the message says why, in one line)."""


def unavailable_reason() -> str | None:
    """Why the testbed cannot run here (one line), or None when it can."""
    if not sys.platform.startswith("linux"):
        return f"the testbed needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "the testbed needs root (cgroups and network namespaces); run as root or use executor=distributed"
    cpu = _sys.cgroup_mount("cpu")
    if cpu is None or not os.path.isfile(os.path.join(cpu, "cpu.cfs_quota_us")):
        return "the testbed needs the cgroup-v1 cpu controller (no cgroup mount with cpu.cfs_quota_us)"
    if not os.access(cpu, os.W_OK):
        return f"the testbed cannot write the cgroup-v1 cpu hierarchy at {cpu}"
    missing = [t for t in ("ip", "tc", "nsenter", "sysctl", "sleep") if shutil.which(t) is None]
    if missing:
        return f"the testbed needs {', '.join(missing)} (iproute2, util-linux, procps)"
    return None


def cpu_period(fraction: float) -> tuple[int, int]:
    """CFS ``(period_us, quota_us)`` giving ``fraction`` of one core (10 ms period, longer for small fractions)."""
    if not (fraction > 0 and math.isfinite(fraction)):
        raise ValueError(f"CPU fraction must be a positive number, got {fraction!r}")
    period = PERIOD_US
    if fraction * period < MIN_QUOTA_US:
        period = min(MAX_PERIOD_US, math.ceil(MIN_QUOTA_US / fraction))
    quota = max(MIN_QUOTA_US, int(round(fraction * period)))
    return period, quota


@dataclass(frozen=True)
class TestbedSpec:
    """What to emulate: ``k`` ranks, their CPU fractions (None: unlimited) and the network.

    ``topology``: ``shared`` or ``switched``; ``bandwidth_bytes_per_s``: TCP
    goodput of the medium (shared) or of every link (switched), None for no
    shaping; ``latency_s``: per-message latency, emulated in the application
    (:mod:`.latency`).

    ``cpu_mode`` says how a rank is made as slow as its device:

    * ``quota``: a CFS quota of ``fraction`` of a core. Exact on average, but
      the kernel throttles in whole periods (at least 1 ms of quota, so a
      period of 21 ms for 1/21 of a core): a rank that used its quota waits
      for the next period even to answer a message, and on a plan of many
      short steps these waits add up (alexnet on 4 RPi-class ranks: 0.67 s
      measured where compute and messages account for 0.2 s).
    * ``dilate`` (default): time dilation, EMULATED in the rank: it measures
      the CPU time of every kernel (``time.thread_time``, one torch thread)
      and owes the rest of ``1 / fraction`` times it, slept before the rank's
      next message and at the end of the inference (message handling and
      buffer assembly run at this machine's speed); a CFS quota of one core
      per rank stays as a cap. Sleeping after every kernel instead let other
      processes evict the rank's caches between kernels: the next kernel took
      more CPU time, stretched ``1 / fraction`` times (mobilenet_v2 on one
      RPi-class rank, 2.5x the sum of its undilated kernels). For the same
      reason the time stretched is the kernel's CPU time warm: in the warmup
      inferences every kernel runs again ``WARM_RERUNS`` times right after
      itself (:mod:`iopopt.exec.distributed.rank`), and after the warm-up
      the rank makes ``CALIBRATION_PASSES`` passes over all its kernels,
      timing each again; the least CPU time of all these is the reference.
      This machine's speed moves in bursts that slow every kernel run at the
      same moment; one burst caught by one rank's warm-up would slow the
      whole step of a split plan, so samples are spread a pass apart. The ranks of a
      testbed time these kernels one at a time, under a lock they share:
      ranks running kernels together slow each other down through the
      cores, caches and memory bus they share (4 processes running the same
      conv on the 2-core VM: +15 % CPU time each), which devices with their
      own do not, and which only plans that split work would pay. A timed
      kernel lasts ``reference / fraction`` or its own wall time if longer (a kernel
      after a message or a sleep starts with cold caches, and that extra
      time is not stretched).
    """

    k: int
    cpu_fractions: tuple[float | None, ...]
    topology: str = "shared"
    bandwidth_bytes_per_s: float | None = None
    latency_s: float = 0.0
    cpu_mode: str = "dilate"

    def __post_init__(self):
        if len(self.cpu_fractions) != self.k:
            raise ValueError(f"TestbedSpec: {len(self.cpu_fractions)} CPU fractions for {self.k} ranks")
        if self.cpu_mode not in ("quota", "dilate"):
            raise ValueError(f"TestbedSpec: cpu_mode must be quota or dilate, got {self.cpu_mode!r}")

    def quota(self, rank: int) -> float | None:
        """The CFS quota of ``rank`` in cores (None: unlimited)."""
        f = self.cpu_fractions[rank]
        if f is None:
            return None
        return f if self.cpu_mode == "quota" else 1.0

    def dilation(self) -> tuple[float, ...] | None:
        """Per rank, the factor its CPU work is stretched by (``dilate`` mode), else None."""
        if self.cpu_mode != "dilate" or all(f is None for f in self.cpu_fractions):
            return None
        return tuple(1.0 if f is None else 1.0 / f for f in self.cpu_fractions)


@dataclass(frozen=True)
class RankPlacement:
    """The first thing each rank runs (picklable): die with the parent, join the rank's cgroup and namespace."""

    parent_pid: int
    cgroups: tuple[str, ...]
    netns: tuple[str, ...]
    ifname: str

    def __call__(self, rank: int) -> None:
        _sys.die_with_parent(self.parent_pid)
        _sys.write(os.path.join(self.cgroups[rank], "cgroup.procs"), os.getpid())
        _sys.setns_net(self.netns[rank])
        os.environ["GLOO_SOCKET_IFNAME"] = self.ifname


@dataclass
class Testbed:
    """Emulated devices on this machine (a context manager); see the module docstring."""

    spec: TestbedSpec
    cgroup_root: str = ""
    topology: Topology | None = None
    lock_dir: str = ""
    swept: list[str] = field(default_factory=list)
    _watchdog: subprocess.Popen | None = None
    _wd_write: int | None = None
    _old_term: object = None

    def __enter__(self) -> Testbed:
        reason = unavailable_reason()
        if reason:
            raise TestbedUnavailable(reason)
        cpu = _sys.cgroup_mount("cpu")
        assert cpu is not None
        self.swept = _sys.sweep_stale([cpu], pid_exists)
        try:
            self._start(cpu)
        except BaseException:
            self.close()
            raise
        return self

    def _start(self, cpu: str) -> None:
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) in (
            signal.SIG_DFL, None
        ):
            self._old_term = signal.signal(signal.SIGTERM, _exit_on_term)  # SIGTERM runs the cleanup too
        self.cgroup_root = os.path.join(cpu, f"{_sys.CGROUP_PREFIX}{os.getpid()}")
        os.makedirs(self.cgroup_root)
        _sys.write(os.path.join(self.cgroup_root, "cpu.shares"), SHARES)  # shares are weighed level by level
        self.lock_dir = tempfile.mkdtemp(prefix="iopopt_tb_locks_")
        r, self._wd_write = os.pipe()
        os.set_inheritable(self._wd_write, False)
        script = str(Path(__file__).with_name("_watchdog.py"))
        self._watchdog = subprocess.Popen([sys.executable, "-I", script, str(r), self.lock_dir, self.cgroup_root],
                                          pass_fds=(r,), start_new_session=True, stdin=subprocess.DEVNULL)
        os.close(r)
        ns_group = os.path.join(self.cgroup_root, "netns")
        os.makedirs(ns_group)
        for i in range(self.spec.k):
            frac = self.spec.quota(i)
            d = os.path.join(self.cgroup_root, f"rank{i}")
            os.makedirs(d)
            _sys.write(os.path.join(d, "cpu.cfs_quota_us"), -1)  # first, so a period change never conflicts
            if frac is not None:
                period, quota = cpu_period(frac)
                _sys.write(os.path.join(d, "cpu.cfs_period_us"), period)
                _sys.write(os.path.join(d, "cpu.cfs_quota_us"), quota)
            _sys.write(os.path.join(d, "cpu.shares"), SHARES)
        self.topology = make_topology(self.spec.topology, self.spec.k, self.spec.bandwidth_bytes_per_s, ns_group)

    def placement(self) -> RankPlacement:
        """The hook each rank runs first (pass as ``rank_setup``)."""
        assert self.topology is not None, "enter the Testbed first"
        return RankPlacement(
            os.getpid(),
            tuple(os.path.join(self.cgroup_root, f"rank{i}") for i in range(self.spec.k)),
            tuple(ns.path for ns in self.topology.rank_ns),
            self.topology.ifname,
        )

    @property
    def master_addr(self) -> str:
        assert self.topology is not None
        return self.topology.addrs[0]

    def describe(self) -> dict:
        """How ranks are limited and links shaped (for results)."""
        ranks = []
        for i, f in enumerate(self.spec.cpu_fractions):
            q = self.spec.quota(i)
            row: dict = {"fraction": f}
            if q is not None:
                period, quota = cpu_period(q)
                row.update(period_us=period, quota_us=quota)
            ranks.append(row)
        mech = (f"cgroup-v1 CFS quota of the fraction per rank, cpu.shares={SHARES}, 1 torch thread"
                if self.spec.cpu_mode == "quota" else
                "EMULATED time dilation: each kernel's CPU time on the rank (thread_time, 1 torch thread) is "
                "stretched to CPU time / fraction by sleeping (the least CPU time of the kernel run again at once in "
                "the warmup, caches warm, and in passes over all the rank's kernels after it, one rank of the "
                "testbed at a time), the sleep owed until the rank's next message or the end of the inference (the "
                "rest of a step, messages and buffer assembly, runs at this machine's speed); CFS quota of 1 core "
                f"per rank as a cap, cpu.shares={SHARES}")
        return {
            "cpu": {"mode": self.spec.cpu_mode, "mechanism": mech, "ranks": ranks},
            "network": {
                "topology": self.spec.topology,
                "mechanism": ("tc tbf on lo of one private namespace (one shared bucket)" if self.spec.topology ==
                              "shared" else "a namespace per rank, veth to a bridge, tc tbf on uplink and downlink"),
                "mtu": 1500,
                "shaping": None if self.topology is None else self.topology.shaping,
                "latency_s": self.spec.latency_s,
                "latency_mechanism": "EMULATED in the application: the sender holds a lock for latency_s before "
                                     "each message (one medium lock when shared; its uplink and the receiver's "
                                     "downlink when switched)" if self.spec.latency_s > 0 else None,
            },
        }

    def close(self) -> None:
        """Kill what is left in the testbed's cgroups, remove them, close the namespaces; idempotent."""
        errors = []
        if self.cgroup_root:
            try:
                _sys.remove_cgroup(self.cgroup_root)
            except OSError as exc:  # pragma: no cover
                errors.append(str(exc))
        if self.topology is not None:
            self.topology.close()
            self.topology = None
        if self.lock_dir:
            shutil.rmtree(self.lock_dir, ignore_errors=True)
            self.lock_dir = ""
        if self._wd_write is not None:
            os.close(self._wd_write)  # the watchdog sees end of file, finds nothing left and exits
            self._wd_write = None
        if self._watchdog is not None:
            try:
                self._watchdog.wait(timeout=15)
            except subprocess.TimeoutExpired:  # pragma: no cover
                self._watchdog.kill()
            self._watchdog = None
        if self._old_term is not None:
            signal.signal(signal.SIGTERM, self._old_term)  # type: ignore[arg-type]
            self._old_term = None
        if errors:  # pragma: no cover
            raise RuntimeError("testbed cleanup: " + "; ".join(errors))

    def __exit__(self, *exc) -> None:
        self.close()


def _exit_on_term(signum, frame):
    raise SystemExit(128 + signum)
