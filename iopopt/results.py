"""The per-job result record (``result.json``) and atomic JSON writing.

A record is one flat JSON object. Its core keys are fixed by DESIGN.md §9
(:data:`RESULT_KEYS`); the extras (:data:`EXTRA_KEYS`) are documented in
``docs/usage.md``. Non-finite floats are written as ``null`` so every file is
strict JSON.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
    "write_json_atomic",
    "write_jsonl_atomic",
    "write_text_atomic",
    "json_safe",
    "display_path",
]

RESULT_FILE = "result.json"
#: One record per line, written by study jobs that solve many instances.
INSTANCES_FILE = "instances.jsonl"

#: The keys every record has (DESIGN.md §9), in order.
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
    "per_device",
    "lower_bound_s",
    "solver_time_s",
    "objective",
    "bound",
    "strategies",
    "verify",
    "error",
)
#: Extras: ``instance`` (pairing key ``model|cluster|network#hash``), ``study``,
#: ``k`` (devices), ``split``, ``network_kind``, ``bandwidth_bytes_per_s``,
#: ``network_latency_s``, ``n_nodes``, ``total_flops``, ``input_shape``,
#: ``gap`` (the solver's own (objective − bound)/objective), ``memory_fits``,
#: ``solver_extra`` (the solver's extra dict), ``error_type``, ``job`` (Hydra
#: job number or null), ``overrides`` (the job's command-line overrides),
#: ``torch_threads`` (torch's intra-op threads the job ran with),
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
    "per_op",
    "job_time_s",
)
#: Keys of the ``verify`` entry (``weights_match`` in addition to §9's four).
VERIFY_KEYS = ("passed", "max_abs_err", "messages_match", "weights_match", "memory_match")


def json_safe(value: Any) -> Any:
    """``value`` with tuples as lists, non-finite floats as None and unknown objects as strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        try:
            return json_safe(value.item())
        except (TypeError, ValueError):
            pass
    return str(value)


def base_record(names: Mapping[str, Any], problem=None, extras: Mapping[str, Any] | None = None) -> dict:
    """A record with every key None except the ``names`` (and the ``problem``'s figures, when given)."""
    rec: dict[str, Any] = {key: None for key in RESULT_KEYS}
    rec.update({key: None for key in EXTRA_KEYS})
    for key in ("model", "cluster", "network", "solver", "instance", "study", "job", "overrides", "torch_threads"):
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
            n_nodes=len(problem.graph),
            total_flops=problem.graph.total_flops,
            input_shape=list(problem.graph[problem.graph.input_name].out_shape),
        )
    if extras:
        rec.update(extras)
    return rec


def per_op_timeline(program) -> list[dict]:
    """Per-operator breakdown with per-device compute seconds, for timeline plots.

    Each entry: ``node``, ``strategy``, ``comm_s`` (the step's input
    reshardings), ``compute_s`` (the slowest device), ``bytes_sent``,
    ``messages``, ``device_compute_s`` (seconds per device, 0 when idle) and
    ``comm_devices`` (indices of the devices that send or receive).
    """
    devices = program.problem.cluster.devices
    out = []
    for step in program.steps:
        term = step.term
        dev_s = [
            (term.flops[d] / dev.flops_per_s + dev.op_overhead_s) if term.active[d] else 0.0
            for d, dev in enumerate(devices)
        ]
        involved = sorted({i for r in step.inputs for t in r.transfers for i in (t.src, t.dst)})
        out.append(
            {
                "node": step.op.name,
                "strategy": step.strategy,
                "comm_s": step.comm_s,
                "compute_s": term.compute_s,
                "bytes_sent": sum(r.nbytes for r in step.inputs),
                "messages": sum(r.n_messages for r in step.inputs),
                "device_compute_s": dev_s,
                "comm_devices": involved,
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
        termination=result.termination,
        solver_time_s=result.wall_time_s,
        objective=result.objective,
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
            memory_fits=report.fits_memory,
            per_device=[
                {
                    "name": m.name,
                    "weights_bytes": m.weights_bytes,
                    "activation_peak_bytes": m.activation_peak_bytes,
                    "peak_bytes": m.peak_bytes,
                }
                for m in report.per_device
            ],
        )
    return json_safe(rec)


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


def display_path(path: str | os.PathLike) -> str:
    """``path`` relative to the current directory when it lies below it (for log lines), else as given."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (temporary file in the same directory, then rename)."""
    return write_text_atomic(path, json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n")


def write_jsonl_atomic(path: str | os.PathLike, records) -> Path:
    """Write one JSON object per line to ``path`` atomically."""
    text = "".join(json.dumps(json_safe(r), allow_nan=False) + "\n" for r in records)
    return write_text_atomic(path, text)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically: a reader sees the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path
