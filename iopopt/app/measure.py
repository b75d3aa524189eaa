"""``executor=testbed`` / ``executor=distributed``: measure the chosen plan, beside the model's prediction.

``iopopt model=M cluster=C network=N solver=S executor=testbed`` solves as
usual, then runs the plan on the emulated testbed (:mod:`iopopt.exec.testbed`:
each rank CPU-limited like its device relative to the profiled core, links
shaped like the network) and adds a ``measured`` object to ``result.json``:
latency, per-rank compute/comm, bytes, measured peak memory, the cost
model's prediction for the emulated devices and how the testbed was set up.
``executor=distributed`` runs the ranks unlimited on this machine's loopback.
Settings: the ``testbed:`` block of conf/config.yaml.
"""

from __future__ import annotations

from typing import Any

from .configs import ConfigError

__all__ = ["EXECUTORS", "check_executor", "measure", "testbed_reference"]

EXECUTORS = ("distributed", "testbed")
_KEYS = frozenset({"profile", "warmup", "repeats", "timeout_s", "run_timeout_s", "cores", "study_minutes"})


def check_executor(settings: dict) -> str | None:
    """The executor a job measures with (None: none); ConfigError (one line) for a bad value or machine."""
    ex = settings.get("executor")
    if ex is None:
        return None
    if ex not in EXECUTORS:
        raise ConfigError(f"executor must be null or one of {', '.join(EXECUTORS)}, got {ex!r}")
    tb = settings.get("testbed") or {}
    unknown = sorted(set(tb) - _KEYS)
    if unknown:
        raise ConfigError(f"testbed.{unknown[0]} is not a setting; valid: {', '.join(sorted(_KEYS))}")
    minutes = tb.get("study_minutes")
    if minutes is not None and (isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or minutes < 0):
        raise ConfigError(f"testbed.study_minutes must be null or a number of minutes >= 0, got {minutes!r}")
    if ex == "testbed":
        from ..exec.testbed import unavailable_reason

        reason = unavailable_reason()
        if reason:
            raise ConfigError(f"executor=testbed: {reason}")
    return ex


def testbed_reference(profile: str = "latest"):
    """What the testbed emulates devices against, from an ``iopopt profile`` (``latest`` or a directory): the
    profiled core, and this machine's cost of one message between ranks (the profile's network ``latency_s``),
    which the testbed's prediction adds to every message; 0 (logged) for a profile made with ``--no-network``."""
    import logging

    from ..studies.profile.presets import resolve_profile
    from .configs import build_cluster
    from .targets import build_network

    try:  # one directory for both figures, even if a newer profile lands meanwhile
        where = resolve_profile(profile)
    except FileNotFoundError as exc:
        raise ConfigError(f"testbed.profile {exc}") from None
    core = build_cluster({"profile": str(where)}).devices[0]
    if not (where / "network.yaml").is_file():
        logging.getLogger(__name__).warning(
            "profile %s has no network.yaml (made with --no-network): the testbed's prediction prices messages "
            "by the network preset alone", where)
        return core, 0.0
    return core, build_network({"profile": str(where)}).latency_s


def measure(executor: str, settings: dict, problem, program, module) -> dict[str, Any]:
    """The ``measured`` object of a record: ``program`` run on ``executor``."""
    from ..exec.testbed.measure import measure_programs

    tb = dict(settings.get("testbed") or {})
    opts = {k: tb[k] for k in ("warmup", "repeats", "timeout_s", "run_timeout_s", "cores") if tb.get(k) is not None}
    core = None
    if executor == "testbed":
        core, opts["message_overhead_s"] = testbed_reference(tb.get("profile", "latest"))
    records, setup = measure_programs(problem, [program], module, executor, core=core, **opts)
    return {"executor": executor, **records[0], "setup": setup}
