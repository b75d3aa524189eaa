"""The distributed executor on the emulated testbed: the same ranks, limited and shaped like their devices."""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..distributed import DistributedExecutor, DistributedTrace, Job
from .bed import Testbed, TestbedSpec
from .latency import MessageLatency

__all__ = ["TestbedExecutor"]


class TestbedExecutor:
    """Run Programs with :class:`~iopopt.exec.distributed.DistributedExecutor` inside a :class:`Testbed`.

    Parameters
    ----------
    spec : TestbedSpec
        CPU fraction per rank, topology, bandwidth and per-message latency
        (:func:`iopopt.exec.testbed.testbed_spec` derives it from a cluster).
    **options
        :class:`DistributedExecutor` settings (``dtype``, ``warmup``,
        ``repeats``, ``timeout_s``, ``run_timeout_s``, ``step_barrier``,
        ``fault``); ranks run one torch thread each.

    After a run, :attr:`description` says how ranks were limited and links
    shaped (for results).
    """

    def __init__(self, spec: TestbedSpec, **options):
        self.spec = spec
        self.options = options
        self.description: dict | None = None

    def run(self, program, module, x=None, seed: int = 0) -> DistributedTrace:
        """Run one Program; see :meth:`run_many`."""
        return self.run_many([Job(program, module, x)], seed=seed)[0]

    def run_many(self, jobs: Sequence[Job | tuple], seed: int = 0) -> list[DistributedTrace]:
        """Set the testbed up, run every job in one set of ranks, tear it down (also on failure)."""
        with Testbed(self.spec) as bed:
            delay = (MessageLatency(self.spec.latency_s, self.spec.topology, bed.lock_dir)
                     if self.spec.latency_s > 0 else None)
            assert bed.topology is not None
            ex = DistributedExecutor(self.spec.k, threads=1, master_addr=bed.master_addr,
                                     ifname=bed.topology.ifname, rank_setup=bed.placement(), send_delay=delay,
                                     compute_dilation=self.spec.dilation(),
                                     compute_lock=os.path.join(bed.lock_dir, "compute"), **self.options)
            self.description = bed.describe()
            return ex.run_many(jobs, seed=seed)
