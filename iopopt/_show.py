"""``iopopt.show(problem, plan)``: a plan, layer by layer, as ``iopopt show`` prints a stored one.

``Plan``'s ``repr`` stays short (strategy counts); this is the readable
listing: one row per layer with its kind, strategy, IOP pair, the messages
and bytes of its input edges and its compute and communication time, from
the cost model.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TextIO

__all__ = ["show", "plan_record"]


def plan_record(problem, plan: Mapping[str, str], solver: str = "") -> dict:
    """A result record of ``plan`` on ``problem`` (figures of the cost model, with the per-layer breakdown)."""
    from .compile.program import compile_plan
    from .cost.evaluate import evaluate_program
    from .results.records import base_record, per_op_timeline

    program = compile_plan(problem, plan)
    report = evaluate_program(program)
    rec = base_record({"model": problem.graph.name, "cluster": problem.cluster.name or f"{problem.k} devices",
                       "network": problem.network.name, "solver": solver or "plan"}, problem)
    rec.update(
        termination="given", latency_s=report.latency_s, compute_s=report.compute_s, comm_s=report.comm_s,
        bytes_sent=report.bytes_sent, messages=report.messages, peak_memory_bytes=report.peak_memory_bytes,
        per_device=[{"name": m.name, "peak_bytes": m.peak_bytes} for m in report.per_device],
        strategies=dict(program.plan), per_op=per_op_timeline(program),
    )
    return rec


def show(problem, plan: Mapping[str, str], file: TextIO | None = None) -> None:
    """Print ``plan`` on ``problem`` layer by layer (the table of ``iopopt show``).

    >>> import iopopt
    >>> from iopopt.network import SwitchedNetwork
    >>> module, shape = iopopt.zoo.build("tiny_chain")
    >>> problem = iopopt.Problem(iopopt.trace(module, shape, name="tiny_chain"),
    ...                          iopopt.Cluster.homogeneous(2, 1e9), SwitchedNetwork(1.25e8, 1e-4))
    >>> iopopt.show(problem, iopopt.plans.build_plan(problem, "all_oc"))  # doctest: +ELLIPSIS
    tiny_chain on 2 devices / switched — plan (given): 3.421 ms = compute 2.593 + communication 0.827 ms; ...
     #  layer    kind     strategy  pair  inputs                   messages    bytes  comm ms  compute ms
    ...
     1  conv1    conv     oc              x (1 msg, 12.3 kB)              1  12.3 kB    0.198       0.221
    ...
    """
    from .report.plan import plan_table

    (file or sys.stdout).write(plan_table(plan_record(problem, plan)))
