"""Per-kind measurements of ``iopopt profile``: operators timed in context, and a few standalone figures.

:func:`measure_samples` times every operator of the calibration networks
(:mod:`.calibration`) as the executors run a one-device plan and returns one
sample per operator: kind, FLOPs and bytes as the cost terms count them, and
the median seconds. :func:`fit_roofline` turns them into a device.
:func:`standalone` measures what the calibration networks do not hold: linear
layers at batch 1 and larger, a grouped conv, a copy larger than the caches
(the DRAM bandwidth), row shares of convs against their whole layers (the
weight pass, :func:`row_shares`) and the per-operator overhead of tiny
operators.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ...compile.terms import terms
from ...frontend.capture import trace
from ...model.cluster import Cluster, Device, pricing_kind
from ...model.network import SwitchedNetwork
from ...model.problem import Problem
from ..opfit.measure import ROUNDS, large_copy, least_round, time_ops, timed
from .bench import op_overhead
from .calibration import calibration_nets

__all__ = ["measure_samples", "standalone", "row_shares", "LINEAR_BATCHES", "ROW_SHARE_CONVS", "STANDALONE_STAGES"]

#: Batch sizes of the standalone linear layers (batch 1 is memory-bound, larger batches are not).
LINEAR_BATCHES = (1, 8, 32)
_LINEARS = ((4096, 4096), (1024, 1000))


def measure_samples(repeats: int = 15, warmup: int = 3, clock: str = "cpu", rounds: int = ROUNDS,
                    step: Callable[[str], None] | None = None,
                    between_rounds: Callable[[int], None] | None = None) -> list[dict]:
    """One sample per operator of every calibration network (see the module docstring); its ``kind`` is the
    operator's pricing kind (``pwconv`` for a 1x1 conv).

    The networks are timed ``rounds`` times in turn (``repeats`` passes each) and an operator's time is the
    least of its per-round medians (:func:`iopopt.studies.opfit.measure.least_round`; all kept in ``rounds_s``),
    so a burst of load on a shared machine spoils some rounds, not the fit.
    ``between_rounds(r)`` runs after round ``r`` (``iopopt opfit --profile fresh`` times its models there).
    """
    nets = [(name, module, trace(module, shape, name=name)) for name, module, shape in calibration_nets()]
    per_round: dict[tuple[str, str], list[float]] = {}
    for r in range(rounds):
        for name, module, graph in nets:
            times = time_ops(graph, module, repeats=repeats, warmup=warmup, clock=clock)
            for node, t in times.per_op.items():
                per_round.setdefault((name, node), []).append(t)
            if step is not None and r == rounds - 1:
                step(name)
        if between_rounds is not None:
            between_rounds(r)
    samples = []
    probe = Device("probe", 1e9)
    for name, _, graph in nets:
        t = terms(Problem(graph, Cluster((probe,)), SwitchedNetwork(1e9)))
        for op in graph:
            if (name, op.name) not in per_round:
                continue
            term = t.node(op.name, "host")
            producer = max((t.node(src, "host").weight_bytes[0] for src in op.inputs), default=0)
            samples.append({"net": name, "node": op.name, "kind": pricing_kind(str(op.kind), op.params),
                            "flops": term.flops[0],
                            "bytes": term.moved_bytes[0], "weight_bytes": term.weight_bytes[0],
                            "producer_weight_bytes": producer,
                            "time_s": least_round(per_round[(name, op.name)]),
                            "rounds_s": per_round[(name, op.name)], "out_shape": list(op.out_shape)})
    return samples


def _median(fn, repeats: int, clock: str, warmup: int = 2) -> float:
    return statistics.median(timed(fn, repeats, clock, warmup))


#: Progress steps of :func:`standalone`: linear batches, grouped convs, the large copy, row shares, tiny-op overhead.
STANDALONE_STAGES = 5
#: The 3x3 convs (channels in = out, height = width) whose row shares :func:`row_shares` times.
ROW_SHARE_CONVS = ((128, 28), (256, 14), (256, 28), (512, 14), (512, 28))
#: The shares timed per conv: 1/n of its output rows, for each n (two and four devices).
ROW_SHARE_PARTS = (2, 4)


def row_shares(repeats: int = 7, clock: str = "cpu", convs=ROW_SHARE_CONVS, parts=ROW_SHARE_PARTS) -> dict:
    """The weight pass: what a row share of a conv costs beyond its fraction of the whole layer.

    Per conv of ``convs``, the whole layer and an interior share of 1/n of its output rows (its input rows
    with their halo, as the executors run it) are timed; the share's excess over its fraction f of the layer's
    time, set against the weight bytes a fraction f of the layer would not go through, ``(1 - f) * weights``,
    gives ``weight_bytes_per_s`` = Σ (1 - f) * weights / Σ excess (None when the shares were, in sum, no more
    than 1 % slower than their fractions). Returns it with one row per share.
    """
    gen = torch.Generator().manual_seed(7)
    rows: list[dict] = []
    with torch.inference_mode():
        for c, h in convs:
            x = torch.randn(1, c, h, h, generator=gen)
            w = torch.randn(c, c, 3, 3, generator=gen)
            whole = _median(lambda x=x, w=w: F.conv2d(x, w, None, 1, 1), repeats, clock)
            weight_bytes = 4 * w.numel()
            for n in parts:
                r = h // n
                a = (h - r) // 2  # an interior share: its halo rows are real rows, no padding to add
                if r < 1 or a < 1:
                    raise ValueError(f"row_shares: a conv of height {h} has no interior share of 1/{n} of its rows")
                xs = x[:, :, a - 1 : a + r + 1].clone()
                t = _median(lambda xs=xs, w=w: F.conv2d(xs, w, None, 1, (0, 1)), repeats, clock)
                f = r / h
                rows.append({"op": f"conv {c}->{c} 3x3 @{h}, {r} of {h} rows", "fraction": f, "whole_s": whole,
                             "time_s": t, "ratio": t / (f * whole), "excess_s": t - f * whole,
                             "pass_bytes": (1 - f) * weight_bytes})
    excess = sum(row["excess_s"] for row in rows)
    # an excess within a percent of the shares' own time is noise, not a pass (and would give an absurd rate)
    noise = 0.01 * sum(row["fraction"] * row["whole_s"] for row in rows)
    rate = sum(row["pass_bytes"] for row in rows) / excess if excess > noise else None
    return {"shares": rows, "weight_bytes_per_s": rate}


def standalone(repeats: int = 7, clock: str = "cpu", step: Callable[[str], None] | None = None) -> dict:
    """Linear layers per batch size, a grouped conv, a large copy, row shares and tiny-operator overhead (see the
    module docstring)."""
    gen = torch.Generator().manual_seed(5)
    out: dict = {"linear": [], "gconv": [], "copy": {}, "overhead": {}}
    with torch.inference_mode():
        for fin, fout in _LINEARS:
            w, b = torch.randn(fout, fin, generator=gen), torch.randn(fout, generator=gen)
            for batch in LINEAR_BATCHES:
                x = torch.randn(batch, fin, generator=gen)
                t = _median(lambda x=x, w=w, b=b: F.linear(x, w, b), repeats, clock)
                flops = 2 * batch * fin * fout
                nbytes = 4 * (batch * fin + batch * fout + fout * fin + fout)
                out["linear"].append({"op": f"linear {fin}->{fout} batch {batch}", "batch": batch, "flops": flops,
                                      "bytes": nbytes, "time_s": t, "flops_per_s": flops / t})
        if step is not None:
            step("linear batches")
        for groups in (4, 32):
            x = torch.randn(1, 128, 28, 28, generator=gen)
            w = torch.randn(128, 128 // groups, 3, 3, generator=gen)
            t = _median(lambda x=x, w=w, g=groups: F.conv2d(x, w, None, 1, 1, 1, g), repeats, clock)
            flops = 2 * 128 * 28 * 28 * (128 // groups) * 9
            out["gconv"].append({"op": f"conv 128->128 3x3 groups {groups} @28", "flops": flops, "time_s": t,
                                 "flops_per_s": flops / t})
        if step is not None:
            step("grouped convs")
        out["copy"] = large_copy(max(7, repeats), clock)
        if step is not None:
            step("large copy")
    out["row_shares"] = row_shares(repeats, clock)
    if step is not None:
        step("row shares")
    t0 = time.perf_counter()
    out["overhead"] = op_overhead()
    out["overhead"]["seconds"] = time.perf_counter() - t0
    if step is not None:
        step("tiny-op overhead")
    return out
