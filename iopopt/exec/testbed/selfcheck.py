"""Does the testbed hold its promise? A CPU-quota check and a link-rate check, measured.

* :func:`check_cpu`: the same single-thread conv loop in an unlimited rank
  and in a rank limited to ``fraction`` of a core by a CFS quota, or slowed
  by time dilation (interleaved, median of repeats); the ratio should be
  ``1 / fraction``.
* :func:`check_link`: ``nbytes`` from rank 0 to rank 1 over a link shaped to
  ``bandwidth_bytes_per_s`` (gloo, until a 1-byte answer is back); the time
  should be ``nbytes / bandwidth``.

``python -m iopopt.exec.testbed.selfcheck`` runs both and prints the figures.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

from ..distributed import launch
from .bed import Testbed, TestbedSpec, unavailable_reason

__all__ = ["check_cpu", "check_link"]


def _conv_loop(rank: int, world: int, seconds: float, dilation: float | None, where) -> float:
    """Wall seconds per kernel of a fixed conv workload sized to take about ``seconds`` unlimited (1 thread).

    With ``dilation`` every kernel is stretched as the testbed's ranks stretch theirs.
    """
    import torch

    from ..distributed.rank import _dilate

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(32, 32, 3, padding=1)
    x = torch.randn(1, 32, 200, 200)  # about 10 ms a kernel on one core: longer than the 10 ms CFS period
    with torch.inference_mode():
        conv(x)
        t0 = time.perf_counter()
        conv(x)
        per = time.perf_counter() - t0
        n = max(3, int(seconds / max(per, 1e-4)))
        t0 = time.perf_counter()
        for _ in range(n):
            w0, c0 = time.perf_counter(), time.thread_time()
            conv(x)
            if dilation is not None:
                _dilate(time.thread_time() - c0, time.perf_counter() - w0, dilation)
        return (time.perf_counter() - t0) / n


def check_cpu(fraction: float = 0.2, repeats: int = 3, seconds: float = 0.6, mode: str = "quota") -> dict:
    """Per-kernel conv time at ``fraction`` of a core over unlimited; medians of interleaved runs.

    ``mode``: ``quota`` (a CFS quota of ``fraction``) or ``dilate`` (time dilation by ``1 / fraction``).
    """
    base, limited = [], []
    for _ in range(repeats):
        for frac, out in ((None, base), (fraction, limited)):
            spec = TestbedSpec(k=1, cpu_fractions=(frac,), cpu_mode=mode)
            with Testbed(spec) as bed:
                dil = spec.dilation()
                out.append(launch(_conv_loop, 1, (seconds, None if dil is None else dil[0]), threads=1,
                                  init_group=False, rank_setup=bed.placement(), run_timeout_s=120)[0])
    ratio = statistics.median(limited) / statistics.median(base)
    expected = 1.0 / fraction
    return {"mode": mode, "fraction": fraction, "unlimited_s": base, "limited_s": limited, "ratio": ratio,
            "expected_ratio": expected, "error": ratio / expected - 1.0}


def _transfer(rank: int, world: int, nbytes: int, repeats: int, where) -> list[float]:
    import torch
    import torch.distributed as dist

    buf = torch.zeros(nbytes, dtype=torch.uint8)
    ack = torch.zeros(1, dtype=torch.uint8)
    times = []
    for _ in range(repeats + 1):  # the first one warms TCP up
        dist.barrier()
        t0 = time.perf_counter()
        if rank == 0:
            dist.send(buf, 1)
            dist.recv(ack, 1)
        else:
            dist.recv(buf, 0)
            dist.send(ack, 0)
        times.append(time.perf_counter() - t0)
    return times[1:]


def check_link(bandwidth_bytes_per_s: float = 12.5e6, nbytes: int = 10_000_000, topology: str = "shared",
               repeats: int = 3) -> dict:
    """Seconds to move ``nbytes`` over a link shaped to ``bandwidth_bytes_per_s`` (median), and the ideal."""
    spec = TestbedSpec(k=2, cpu_fractions=(None, None), topology=topology, bandwidth_bytes_per_s=bandwidth_bytes_per_s)
    with Testbed(spec) as bed:
        assert bed.topology is not None
        out = launch(_transfer, 2, (nbytes, repeats), threads=1, master_addr=bed.master_addr,
                     ifname=bed.topology.ifname, rank_setup=bed.placement(), run_timeout_s=120, timeout_s=60)
    times = out[0]
    ideal = nbytes / bandwidth_bytes_per_s
    t = statistics.median(times)
    return {"topology": topology, "nbytes": nbytes, "bandwidth_bytes_per_s": bandwidth_bytes_per_s,
            "times_s": times, "median_s": t, "ideal_s": ideal, "error": t / ideal - 1.0}


def main(argv: list[str] | None = None) -> int:
    reason = unavailable_reason()
    if reason:
        print(f"iopopt testbed self-check: skipped: {reason}", file=sys.stderr)
        return 2
    result = {"cpu": check_cpu(mode="quota"), "cpu_dilate": check_cpu(mode="dilate"),
              "link_shared": check_link(topology="shared"), "link_switched": check_link(topology="switched")}
    print(json.dumps(result, indent=1))
    ok = all(abs(r["error"]) <= 0.15 for r in result.values())
    print(f"self-check {'PASSED' if ok else 'FAILED'} (targets: within 15 %)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
