"""The per-job result record (``result.json``) and atomic JSON writing.

A record is one flat JSON object. Its core keys are fixed by DESIGN.md §9
(:data:`RESULT_KEYS`); the extras (:data:`EXTRA_KEYS`) are documented in
``docs/usage.md``. Non-finite floats are written as ``null`` so every file is
strict JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .io import json_safe

__all__ = [
    "RESULT_KEYS",
    "EXTRA_KEYS",
    "VERIFY_KEYS",
    "RESULT_FILE",
    "INSTANCES_FILE",
    "base_record",
    "solved_record",
    "error_record",
    "per_op_timeline",
]

RESULT_FILE = "result.json"
#: One record per line, written by study jobs that solve many instances.
INSTANCES_FILE = "instances.jsonl"

#: The keys every record has (DESIGN.md §9), in order. ``energy_j`` is null when a device has no power
#: figures; ``objective_name`` says what ``objective`` (and ``bound``) measure: ``latency`` (s), ``energy``
#: (J) or ``peak_memory`` (bytes). With power figures, each ``per_device`` entry also has ``energy_j``,
#: ``busy_s``, ``tx_s``, ``rx_s`` and ``idle_s`` (see :mod:`iopopt.cost.energy`).
RESULT_KEYS = (
    "model",
    "cluster",
    "network",
    "solver",
    "termination",
    "latency_s",
    "compute_s",
    "comm_s",
    "bytes_sent",
    "messages",
    "peak_memory_bytes",
    "energy_j",
    "per_device",
    "lower_bound_s",
    "solver_time_s",
    "objective",
    "objective_name",
    "bound",
    "strategies",
    "verify",
    "error",
)
#: Extras: ``instance`` (pairing key ``model|cluster|network#hash``), ``study``,
#: ``k`` (devices), ``split``, ``network_kind``, ``bandwidth_bytes_per_s``,
#: ``network_latency_s``, ``network_message_overhead_s``, ``n_nodes``, ``total_flops``, ``input_shape``,
#: ``gap`` (the solver's own (objective − bound)/objective), ``memory_fits``,
#: ``solver_extra`` (the solver's extra dict), ``error_type``, ``job`` (Hydra
#: job number or null), ``overrides`` (the job's command-line overrides),
#: ``torch_threads`` (torch's intra-op threads the job ran with),
#: ``choices`` (the job's config group options: model, cluster, network, solver),
#: ``device_memory_bytes`` (each device's memory capacity, null when unlimited),
#: ``per_op`` (per-operator timeline, see :func:`per_op_timeline`, or null),
#: ``job_time_s`` (wall time of the whole job: building/tracing the model,
#: solving, costing and verifying; null in per-instance study records).
EXTRA_KEYS = (
    "instance",
    "study",
    "k",
    "split",
    "network_kind",
    "bandwidth_bytes_per_s",
    "network_latency_s",
    "network_message_overhead_s",
    "n_nodes",
    "total_flops",
    "input_shape",
    "gap",
    "memory_fits",
    "solver_extra",
    "error_type",
    "job",
    "overrides",
    "torch_threads",
    "choices",
    "device_memory_bytes",
    "per_op",
    "job_time_s",
)
#: Keys of the ``verify`` entry (``weights_match`` in addition to §9's four).
VERIFY_KEYS = ("passed", "max_abs_err", "messages_match", "weights_match", "memory_match", "reference_finite")


def base_record(names: Mapping[str, Any], problem=None, extras: Mapping[str, Any] | None = None) -> dict:
    """A record with every key None except the ``names`` (and the ``problem``'s figures, when given)."""
    rec: dict[str, Any] = {key: None for key in RESULT_KEYS}
    rec.update({key: None for key in EXTRA_KEYS})
    for key in ("model", "cluster", "network", "solver", "instance", "study", "job", "overrides", "torch_threads",
                "choices"):
        rec[key] = names.get(key)
    if problem is not None:
        net = problem.network
        rec.update(
            lower_bound_s=problem.lower_bound_s(),
            k=problem.k,
            split=problem.cluster.split,
            network_kind=type(net).__name__,
            bandwidth_bytes_per_s=getattr(net, "bandwidth_bytes_per_s", None),
            network_latency_s=getattr(net, "latency_s", None),
            network_message_overhead_s=getattr(net, "message_overhead_s", None),
            n_nodes=len(problem.graph),
            total_flops=problem.graph.total_flops,
            input_shape=list(problem.graph[problem.graph.input_name].out_shape),
            device_memory_bytes=[d.memory_bytes for d in problem.cluster.devices],  # inf: null (unlimited)
        )
    if extras:
        rec.update(extras)
    return rec


def per_op_timeline(program) -> list[dict]:
    """Per-operator breakdown with per-device compute seconds, for timelines, plan diagrams and ``iopopt show``.

    Each entry: ``node``, ``kind`` (op kind), ``strategy``, ``comm_s`` (the
    step's input reshardings), ``compute_s`` (the slowest device),
    ``bytes_sent``, ``messages``, ``device_compute_s`` (seconds per device, 0
    when idle), ``comm_devices`` (indices of the devices that send or
    receive) and ``inputs``: one entry per input edge, in input order, with
    the producer (``src``) and that edge's ``messages``, ``bytes`` and
    ``comm_s``.
    """
    out = []
    for step in program.steps:
        term = step.term
        involved = sorted({i for r in step.inputs for t in r.transfers for i in (t.src, t.dst)})
        out.append(
            {
                "node": step.op.name,
                "kind": str(step.op.kind),
                "strategy": step.strategy,
                "comm_s": step.comm_s,
                "compute_s": term.compute_s,
                "bytes_sent": sum(r.nbytes for r in step.inputs),
                "messages": sum(r.n_messages for r in step.inputs),
                "device_compute_s": list(term.device_compute_s),
                "comm_devices": involved,
                "inputs": [
                    {"src": src, "messages": r.n_messages, "bytes": r.nbytes, "comm_s": r.time_s}
                    for src, r in zip(step.op.inputs, step.inputs)
                ],
            }
        )
    return out


def solved_record(
    names: Mapping[str, Any],
    problem,
    result,
    report=None,
    verify: Mapping[str, Any] | None = None,
    per_op: list | None = None,
    extras: Mapping[str, Any] | None = None,
) -> dict:
    """The record of a job whose solver returned (with or without a plan).

    ``result`` is a :class:`~iopopt.SolveResult`; ``report`` the cost report
    of its plan (None when the solver found no plan).
    """
    rec = base_record(names, problem, extras)
    rec.update(
        termination=str(result.termination),
        solver_time_s=result.wall_time_s,
        objective=result.objective,
        objective_name=getattr(result, "objective_name", "latency"),
        bound=result.bound,
        gap=result.gap,
        solver_extra=json_safe(dict(result.extra)),
        strategies=result.plan.to_dict() if result.plan is not None else None,
        verify=dict(verify) if verify is not None else None,
        per_op=per_op,
    )
    if report is not None:
        rec.update(
            latency_s=report.latency_s,
            compute_s=report.compute_s,
            comm_s=report.comm_s,
            bytes_sent=report.bytes_sent,
            messages=report.messages,
            peak_memory_bytes=report.peak_memory_bytes,
            energy_j=getattr(report, "energy_j", None),
            memory_fits=report.fits_memory,
            per_device=[
                {
                    "name": m.name,
                    "weights_bytes": m.weights_bytes,
                    "activation_peak_bytes": m.activation_peak_bytes,
                    "peak_bytes": m.peak_bytes,
                    **_device_energy(report, d),
                }
                for d, m in enumerate(report.per_device)
            ],
        )
    return json_safe(rec)


def _device_energy(report, d: int) -> dict:
    """Device ``d``'s energy figures of a cost report (empty when energy is unknown)."""
    per_device = getattr(report, "energy_per_device", None)
    if not per_device:
        return {}
    e = per_device[d]
    return {"energy_j": e.energy_j, "busy_s": e.busy_s, "tx_s": e.tx_s, "rx_s": e.rx_s, "idle_s": e.idle_s}


def error_record(names: Mapping[str, Any], exc: BaseException, problem=None, partial: Mapping | None = None) -> dict:
    """The record of a job that raised: ``termination: error`` and the message.

    ``partial`` is what was recorded before the failure (e.g. a solved
    record whose verification then raised); its figures are kept.
    """
    rec = dict(partial) if partial is not None else base_record(names, problem)
    if partial is not None and partial.get("termination") not in (None, "error"):
        rec["solver_termination"] = partial["termination"]  # why the solver stopped, before the failure
    rec.update(termination="error", error=f"{type(exc).__name__}: {exc}", error_type=type(exc).__name__)
    return json_safe(rec)


