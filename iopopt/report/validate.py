"""What a result record must look like before the report uses it, and how many jobs a sweep should have.

:func:`record_problem` checks one record (a ``result.json`` or an
``instances.jsonl`` line) against the keys of DESIGN §9 -- types, ranges,
nesting -- and names the first bad field; the loader skips such a record with
one warning naming its file and the field, so one malformed or foreign file
never stops the report of the others.

:func:`expected_jobs` gives the number of jobs of a Hydra sweep (what the
sweep recorded when it started, :data:`SWEEP_FILE`; for older sweeps, counted
from ``multirun.yaml``), so the report can say how many are missing.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["record_problem", "expected_jobs", "TERMINATIONS", "SWEEP_FILE"]

log = logging.getLogger("iopopt")

#: Values of ``termination`` (``memory_exceeded``: records of iopopt 0.1).
TERMINATIONS = ("optimal", "feasible", "time_limit", "infeasible", "completed", "error", "memory_exceeded")


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _nonneg(value: Any) -> bool:
    return _real(value) and value >= 0


def _positive(value: Any) -> bool:
    return _real(value) and value > 0


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "latency_s": (_positive, "a finite number of seconds > 0"),
    "compute_s": (_nonneg, "a finite number of seconds >= 0"),
    "comm_s": (_nonneg, "a finite number of seconds >= 0"),
    "lower_bound_s": (_nonneg, "a finite number of seconds >= 0"),
    "solver_time_s": (_nonneg, "a finite number of seconds >= 0"),
    "energy_j": (_nonneg, "a finite number of joules >= 0"),
    "bytes_sent": (_count, "an integer >= 0"),
    "messages": (_count, "an integer >= 0"),
    "peak_memory_bytes": (_count, "an integer >= 0"),
    "objective": (_real, "a finite number"),
    "bound": (_real, "a finite number"),
    "k": (_count, "an integer >= 0"),
    "n_nodes": (_count, "an integer >= 0"),
    "bandwidth_bytes_per_s": (_positive, "a finite number > 0"),
}
_DEVICE_KEYS = {"weights_bytes": _count, "activation_peak_bytes": _count, "peak_bytes": _count}
_OP_KEYS: dict[str, Callable[[Any], bool]] = {"node": _text, "strategy": _text, "comm_s": _nonneg, "compute_s": _nonneg}
_OP_OPTIONAL: dict[str, Callable[[Any], bool]] = {"bytes_sent": _count, "messages": _count, "kind": _text}


def _list_of_dicts(rec: Mapping, key: str) -> str | None:
    value = rec.get(key)
    if value is not None and not (isinstance(value, list) and all(isinstance(x, dict) for x in value)):
        return f"{key}: expected a list of objects, got {_show(value)}"
    return None


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def record_problem(rec: Any) -> str | None:
    """The first thing wrong with a result record, as ``field: what was expected, got what`` (None: usable)."""
    if not isinstance(rec, dict):
        return f"record: expected a JSON object, got {type(rec).__name__}"
    for key in ("model", "cluster", "network", "solver", "termination"):
        if key not in rec:
            return f"{key}: missing (not an iopopt result record?)"
        if not _text(rec[key]):
            return f"{key}: expected a non-empty string, got {_show(rec[key])}"
    if rec["termination"] not in TERMINATIONS:
        return f"termination: expected one of {', '.join(TERMINATIONS)}, got {_show(rec['termination'])}"
    if rec["termination"] == "error" and not isinstance(rec.get("error"), str):
        return f"error: a failed job's record needs its message (a string), got {_show(rec.get('error'))}"
    for key, (ok, what) in _CHECKS.items():
        if rec.get(key) is not None and not ok(rec[key]):
            return f"{key}: expected {what} or null, got {_show(rec[key])}"
    ver = rec.get("verify")
    if ver is not None:
        if not isinstance(ver, dict) or not isinstance(ver.get("passed"), bool):
            return f"verify: expected null or an object with passed true/false, got {_show(ver)}"
        if ver.get("max_abs_err") is not None and not _nonneg(ver["max_abs_err"]):
            return f"verify.max_abs_err: expected a number >= 0 or null, got {_show(ver['max_abs_err'])}"
    for key in ("per_device", "per_op"):
        if (bad := _list_of_dicts(rec, key)) is not None:
            return bad
    for i, dev in enumerate(rec.get("per_device") or []):
        if not _text(dev.get("name")):
            return f"per_device[{i}].name: expected a string, got {_show(dev.get('name'))}"
        for key, ok in _DEVICE_KEYS.items():
            if dev.get(key) is not None and not ok(dev[key]):
                return f"per_device[{i}].{key}: expected an integer >= 0, got {_show(dev[key])}"
    for i, op in enumerate(rec.get("per_op") or []):
        for key, ok in _OP_KEYS.items():
            if key not in op:
                return f"per_op[{i}].{key}: missing"
            if not ok(op[key]):
                return f"per_op[{i}].{key}: bad value {_show(op[key])}"
        for key, ok in _OP_OPTIONAL.items():
            if op.get(key) is not None and not ok(op[key]):
                return f"per_op[{i}].{key}: bad value {_show(op[key])}"
    strategies = rec.get("strategies")
    if strategies is not None and not (
        isinstance(strategies, dict) and all(isinstance(v, str) for v in strategies.values())
    ):
        return f"strategies: expected an object of node name to strategy name, got {_show(strategies)}"
    return None


#: Written into a sweep's folder when it starts: ``{"jobs": n}`` (Hydra's own count of its jobs).
SWEEP_FILE = "sweep.json"


def expected_jobs(sweep: Path) -> int | None:
    """Number of jobs the sweep in ``sweep`` launches (None: not a sweep, or unknown).

    From :data:`SWEEP_FILE`, which the sweep writes when it starts (Hydra's
    own expansion of its overrides); for older sweeps from ``multirun.yaml``
    when every sweep override there is a plain comma list (None for
    ``range``/``choice``/``glob`` sweeps and other sweepers).
    """
    sweep = Path(sweep)
    try:
        jobs = json.loads((sweep / SWEEP_FILE).read_text()).get("jobs")
        return jobs if _count(jobs) else None
    except (OSError, ValueError, AttributeError):
        pass
    path = sweep / "multirun.yaml"
    if not path.is_file():
        return None
    try:
        import yaml

        tree = yaml.safe_load(path.read_text()) or {}
        hydra = tree.get("hydra") or {}
        if not str((hydra.get("sweeper") or {}).get("_target_", "")).endswith("BasicSweeper"):
            return None  # another sweeper (e.g. an optimiser) decides its job count as it goes
        params = (hydra.get("sweeper") or {}).get("params") or {}
        args = [f"{k}={v}" for k, v in params.items()] + list((hydra.get("overrides") or {}).get("task") or [])
    except Exception as exc:  # unreadable: say nothing rather than something wrong
        log.debug("could not count the jobs of %s: %s", path, exc)
        return None
    sizes: dict[str, int] = {}
    for arg in args:
        key, _, value = str(arg).partition("=")
        if any(c in value for c in "()[]{}'\"\\"):
            return None  # a sweep function or a quoted/nested value: leave it to Hydra
        sizes[key.lstrip("+~")] = len(value.split(","))  # the command line (later) wins over the params
    return math.prod(sizes.values())
