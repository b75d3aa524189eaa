"""Measure Programs on the testbed (or plain distributed) and put the figures beside the cost model's.

:func:`measure_programs` runs Programs of one problem in one set of ranks
and returns one plain dict per Program: measured latency (median over the
timed inferences of the slowest rank), per rank compute and communication
time, bytes and messages sent, measured peak memory; the cost model's
prediction for the cluster the testbed emulates (:func:`emulated_cluster`)
beside it; and how ranks were limited and links shaped.

The prediction prices each message as the network preset says plus this
machine's own cost of a message between two ranks (``message_overhead_s``,
the loaded exchange ``iopopt profile`` measured: gloo's work and the wait
for its I/O thread), which the testbed's ranks pay on top of the emulated
link; see :class:`~iopopt.network.SharedNetwork`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import nn

from ...compile.program import Program, compile_plan
from ...cost.evaluate import evaluate_program
from ...model.cluster import Device
from ...model.network import SharedNetwork, SwitchedNetwork
from ...model.problem import Problem
from ..distributed import DistributedExecutor, DistributedTrace, Job, check_trace
from .devices import emulated_cluster, testbed_spec
from .executor import TestbedExecutor

__all__ = ["measure_programs", "MEASURE_DEFAULTS"]

#: Defaults of the measurement settings (the app's ``testbed:`` block).
MEASURE_DEFAULTS = {"warmup": 1, "repeats": 5, "timeout_s": 120.0, "run_timeout_s": None, "cores": None,
                    "message_overhead_s": 0.0}


def _record(trace: DistributedTrace, program: Program, module: nn.Module, predicted, names: list[str]) -> dict:
    rep = check_trace(program, trace, module, dtype=torch.float32)
    pred_dev = predicted.per_device if predicted is not None else None
    ranks = []
    for r, st in enumerate(trace.ranks):
        row = {
            "rank": r,
            "device": names[r],
            "compute_s": st.compute_s,
            "comm_s": st.comm_s,
            "bytes_sent": st.bytes_sent,
            "messages_sent": st.messages_sent,
            "weights_bytes": st.weight_bytes,
            "peak_memory_bytes": st.peak_memory_bytes,
            "peak_rss_bytes": st.peak_rss_bytes,
        }
        if pred_dev is not None:
            row["predicted_peak_bytes"] = pred_dev[r].peak_bytes
        ranks.append(row)
    out = {
        "latency_s": trace.latency_s,
        "latencies_s": list(trace.latencies_s),
        "spread": (max(trace.latencies_s) / min(trace.latencies_s)) if trace.latencies_s else None,
        "compute_s": max(r["compute_s"] for r in ranks),
        "comm_s": max(r["comm_s"] for r in ranks),
        "bytes_sent": sum(trace.bytes_sent),
        "messages": trace.messages,
        "per_rank": ranks,
        "output_ok": bool(rep.passed),
        "max_abs_err": float(rep.max_abs_err),
    }
    if predicted is not None:
        out["predicted"] = {
            "latency_s": predicted.latency_s,
            "compute_s": predicted.compute_s,
            "comm_s": predicted.comm_s,
            "error": predicted.latency_s / trace.latency_s - 1.0,
        }
    return out


def measure_programs(problem: Problem, programs: Sequence[Program], module: nn.Module, executor: str = "testbed",
                     core: Device | None = None, seed: int = 0, **settings) -> tuple[list[dict], dict]:
    """Run ``programs`` (all of ``problem``) on ``executor`` (``testbed`` or ``distributed``), float32.

    ``core``: the profiled core the testbed's CPU fractions are relative to
    (required for ``testbed``). ``settings``: ``warmup``, ``repeats``,
    ``timeout_s``, ``run_timeout_s``, ``cores`` (CPU budget; default: all),
    ``message_overhead_s`` (this machine's per-message cost, added to the
    network's in the testbed's prediction; the profile's network ``latency_s``).
    Returns one record per Program and the setup (the testbed's description,
    the CPU scale, the emulated devices).
    """
    s = dict(MEASURE_DEFAULTS, **settings)
    opts = {"dtype": torch.float32, "warmup": int(s["warmup"]), "repeats": int(s["repeats"]),
            "timeout_s": float(s["timeout_s"]), "run_timeout_s": s["run_timeout_s"]}
    names = [d.name for d in problem.cluster.devices]
    jobs = [Job(p, module) for p in programs]
    if executor == "testbed":
        if core is None:
            raise ValueError("measure_programs: executor=testbed needs the profiled core device")
        spec, scale = testbed_spec(problem.cluster, problem.network, core, s["cores"])
        ex = TestbedExecutor(spec, **opts)
        traces = ex.run_many(jobs, seed=seed)
        emu = emulated_cluster(problem.cluster, core, spec.cpu_fractions)
        overhead = float(s["message_overhead_s"])
        assert isinstance(problem.network, (SharedNetwork, SwitchedNetwork))  # testbed_spec refused the rest
        net = dataclasses.replace(problem.network, message_overhead_s=problem.network.message_overhead_s + overhead)
        emu_problem = Problem(problem.graph, emu, net, name=f"{problem.name}@testbed")
        predicted = [evaluate_program(compile_plan(emu_problem, p.plan)) for p in programs]
        setup = {"executor": "testbed", **(ex.description or {}), "cpu_scale": scale,
                 "core": {"flops_per_s": core.flops_per_s, "op_overhead_s": core.op_overhead_s},
                 "predicted_message_overhead_s": overhead,
                 "emulated_flops_per_s": [d.flops_per_s for d in emu.devices]}
    elif executor == "distributed":
        dx = DistributedExecutor(problem.k, threads=1, **opts)
        traces = dx.run_many(jobs, seed=seed)
        predicted = [None] * len(programs)
        setup = {"executor": "distributed", "note": "ranks share this machine's cores; links are loopback"}
    else:
        raise ValueError(f"executor must be testbed or distributed, got {executor!r}")
    records = [_record(t, p, module, pr, names) for t, p, pr in zip(traces, programs, predicted)]
    return records, setup
