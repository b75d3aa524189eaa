"""Per-operator prediction study: for a model on one device, the cost model's time of every operator
against the time measured on this machine, per kind and in total, as tables and a plot.

Measured: every operator of the model run whole on one device as the
executors run a one-device plan (:func:`.measure.time_ops`); predicted: the
cost model's compute time of the same operators on the device of an ``iopopt
profile`` (:func:`.measure.predict_ops`). Writes ``opfit.csv`` (one row per
operator), ``kinds.csv``, ``opfit.md`` (the tables and the acceptance
checks: total within ±15%, each kind with at least 1 ms within ±30%, median
per-operator error ≤ 25%), ``summary.json`` and ``opfit.png`` into ``--out``.
Two reference kernels (:func:`.measure.reference_times`) timed before and
after the run, against the same kernels timed by the profile, say how much
faster or slower the machine ran than when it was profiled: on a shared
machine that drift, not the model, can be most of an error.

With ``--profile fresh`` the device is profiled in the same run, by
``iopopt profile``'s own code, a round of the models timed after each round
of its calibration: both see the machine at the same speed, so what the
tables show is the model's error, not how the machine's speed moved between
two runs (the profile is written to ``OUT/profile``, usable as any other).
The profile's reference kernels, timed before and after its rounds, then
give the drift within the run.

Entry points: ``iopopt opfit [--models ...] [--profile latest|DIR|fresh] [--out DIR]`` and
``python -m iopopt.studies.opfit``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from ...results.io import write_text_atomic
from .._progress import Progress
from .measure import CLOCKS, ROUNDS, drift, forward_time, least_round, predict_ops, reference_times, time_ops
from .report import NO_REFERENCE, drift_line, plot, summarize, write_csv, write_markdown

__all__ = ["run_opfit", "main", "time_ops", "predict_ops", "forward_time", "summarize"]

MODELS = ("alexnet", "resnet18", "mobilenet_v2", "vgg16")


def _bound(device, kind: str, flops: float, nbytes: float) -> str:
    bw = device.bandwidth(kind, nbytes)
    if bw is not None and nbytes / bw > flops / device.rate(kind):
        return "bytes"
    return "flops" if flops else "overhead"


def run_opfit(models: Sequence[str], device, repeats: int = 11, warmup: int = 3, clock: str = "cpu",
              rounds: int = ROUNDS, progress=None) -> tuple[list[dict], dict[str, float]]:
    """Per-operator rows (measured and predicted) for zoo ``models`` on ``device``, and each model's torch forward.

    The models are timed ``rounds`` times in turn (``repeats`` passes each); an operator's measured time is
    the least of its per-round medians (:func:`~iopopt.studies.opfit.measure.least_round`), so a burst of load
    on a shared machine spoils some rounds, not a model.
    """
    timing = ModelTiming(models, repeats, warmup, clock, progress)
    for _ in range(rounds):
        timing.round()
    return timing.rows(device), timing.forwards()


class ModelTiming:
    """Zoo models timed round by round (:meth:`round`), then set beside a device's predictions (:meth:`rows`).

    Apart from :func:`run_opfit` so that ``--profile fresh`` can time one round of the models after each
    round of the profile's calibration (:func:`iopopt.studies.profile.run_profile`'s ``between_rounds``).
    """

    def __init__(self, models: Sequence[str], repeats: int = 11, warmup: int = 3, clock: str = "cpu",
                 progress=None):
        import torch

        from ...frontend import zoo
        from ...frontend.capture import trace

        torch.set_num_threads(1)
        self.repeats, self.warmup, self.clock, self.progress = repeats, warmup, clock, progress
        self.built = []
        for name in models:
            module, shape = zoo.build(name)
            self.built.append((name, module, shape, trace(module, shape, name=name)))
        self.per_round: dict[tuple[str, str], list[float]] = {}
        self._forwards: dict[str, list[float]] = {name: [] for name in models}

    def round(self, *_: object) -> None:
        """Time every model once more (``repeats`` passes after ``warmup``)."""
        progress = self.progress
        for name, module, shape, graph in self.built:
            measured = time_ops(graph, module, repeats=self.repeats, warmup=self.warmup, clock=self.clock,
                                progress=(lambda i, n, name=name: progress(name, i, n)) if progress else None)
            for node, t in measured.per_op.items():
                self.per_round.setdefault((name, node), []).append(t)
            self._forwards[name].append(forward_time(module, shape, repeats=self.repeats, warmup=self.warmup,
                                                     clock=self.clock))

    def forwards(self) -> dict[str, float]:
        """Each model's unsplit torch forward: the least of its per-round medians, like the operators'."""
        return {name: least_round(v) for name, v in self._forwards.items()}

    def rows(self, device) -> list[dict]:
        """One row per operator: measured (the least of its per-round medians, each kept in ``rounds_s``) and
        ``device``'s prediction."""
        from ...compile.terms import terms
        from ...model.cluster import Cluster, pricing_kind
        from ...model.network import SwitchedNetwork
        from ...model.problem import Problem

        rows: list[dict] = []
        for name, _, _, graph in self.built:
            predicted = predict_ops(graph, device)
            t = terms(Problem(graph, Cluster((device,)), SwitchedNetwork(1e9)))
            for op in graph:
                if (name, op.name) not in self.per_round:
                    continue
                term = t.node(op.name, "host")
                rows.append({"model": name, "node": op.name, "kind": str(op.kind), "flops": term.flops[0],
                             "bytes": term.moved_bytes[0],
                             "bound": _bound(device, pricing_kind(str(op.kind), op.params), term.flops[0],
                                             term.moved_bytes[0]),
                             "measured_s": least_round(self.per_round[(name, op.name)]),
                             "rounds_s": list(self.per_round[(name, op.name)]),
                             "predicted_s": predicted[op.name]})
        return rows


def main(argv: Sequence[str] | None = None) -> int:
    from ..profile import stages as profile_stages
    from ..profile.presets import load_presets, resolve_profile

    ap = argparse.ArgumentParser(prog="iopopt opfit", description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), help="zoo model names")
    ap.add_argument("--profile", default="latest",
                    help="an `iopopt profile` directory, latest (the newest), or fresh: profile this machine in this "
                         "run, its calibration rounds interleaved with the models' (written to OUT/profile)")
    ap.add_argument("--out", default=None, help="output directory (default outputs/opfit/<stamp>)")
    ap.add_argument("--repeats", type=int, default=11, help="timed passes per model and round (median)")
    ap.add_argument("--rounds", type=int, default=ROUNDS,
                    help=f"rounds over the models (an operator's time: the least of its per-round medians; "
                         f"default {ROUNDS})")
    ap.add_argument("--warmup", type=int, default=3, help="untimed passes first")
    ap.add_argument("--clock", choices=tuple(CLOCKS), default="cpu",
                    help="this thread's CPU time (default; robust on a shared machine) or wall time")
    a = ap.parse_args(argv)
    from ...frontend import zoo

    unknown = [m for m in a.models if m not in zoo.names()]
    if unknown:
        print(f"iopopt opfit: unknown model {unknown[0]!r}; valid: {', '.join(zoo.names())}", file=sys.stderr)
        return 2
    if min(a.repeats, a.rounds) < 1 or a.warmup < 0:
        print("iopopt opfit: --repeats and --rounds must be >= 1, --warmup >= 0", file=sys.stderr)
        return 2
    fresh = a.profile == "fresh"
    where = None
    if not fresh:
        try:
            where = resolve_profile(a.profile)
            cluster, _ = load_presets(where, network=False)  # refused now, not after the rounds
        except FileNotFoundError as exc:
            print(f"iopopt opfit: --profile {exc} (or fresh: profile this machine in this run)", file=sys.stderr)
            return 2
        except ValueError as exc:
            print(f"iopopt opfit: --profile {exc}", file=sys.stderr)
            return 2
    out = Path(a.out) if a.out else Path("outputs") / "opfit" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)
    load_before = round(os.getloadavg()[0], 2)
    command = "iopopt opfit " + " ".join(argv if argv is not None else sys.argv[2:])
    total = a.rounds * len(a.models) * (a.repeats + a.warmup) + (profile_stages(network=False) if fresh else 0)
    with Progress(total, "iopopt opfit", "step") as bar:
        def progress(name, i, n):
            bar.step(name)

        timing = ModelTiming(a.models, a.repeats, a.warmup, a.clock, progress)
        if fresh:
            where = _fresh_profile(out / "profile", timing, a, bar.step, command)
        else:
            before = reference_times(clock=a.clock)
            for _ in range(a.rounds):
                timing.round()
            after = reference_times(clock=a.clock)
    assert where is not None
    if fresh:
        cluster, _ = load_presets(where, network=False)
    device = cluster.devices[0]
    rows, forward = timing.rows(device), timing.forwards()
    summary = summarize(rows)
    prof = json.loads((where / "profile.json").read_text()) if (where / "profile.json").exists() else {}
    if fresh:  # the profile's own reference kernels, timed before and after its rounds, bracket the models' too
        reference, in_run = prof["reference_s"], prof["reference_drift"]
    else:
        reference, in_run = {k: (before[k] + after[k]) / 2 for k in before}, drift(after, before)
    against_profile, why_none = _against_profile(reference, prof, a.clock, fresh)
    machine = prof.get("machine") or {}
    meta = {
        "date": datetime.now().strftime("%Y-%m-%d %H:%M"),
        "machine": f"{machine.get('cpu_model', platform.processor())}, {os.cpu_count()} cores, "
                   f"torch {__import__('torch').__version__}",
        "load_before": load_before, "load_after": round(os.getloadavg()[0], 2),
        "command": command,
        "profile": str(where), "device": _describe(device),
        "repeats": a.repeats, "warmup": a.warmup, "rounds": a.rounds, "clock": a.clock, "forward_s": forward,
        "reference_s": reference, "reference_drift_in_run": in_run,
        "reference_drift_vs_profile": against_profile, "reference_vs_profile_why_none": why_none,
    }
    write_csv(rows, out / "opfit.csv")
    fh = io.StringIO(newline="")
    w = csv.writer(fh)
    w.writerow(["model", "kind", "ops", "measured_s", "predicted_s", "error", "checked"])
    for model, s in summary.items():
        for kind, k in s["kinds"].items():
            w.writerow([model, kind, k["n"], k["measured_s"], k["predicted_s"], k["error"], k["checked"]])
    write_text_atomic(out / "kinds.csv", fh.getvalue())
    write_markdown(out / "opfit.md", summary, meta)
    write_text_atomic(out / "summary.json", json.dumps({"meta": meta, "models": summary}, indent=2))
    plot(rows, summary, out / "opfit.png")
    for model, s in summary.items():
        print(f"[opfit] {model}: measured {s['measured_s'] * 1e3:.2f} ms, predicted {s['predicted_s'] * 1e3:.2f} ms "
              f"({s['error']:+.1%}), median op error {s['op_median_abs_error']:.1%}; kinds "
              + ", ".join(f"{k} {v['error']:+.0%}" for k, v in s["kinds"].items() if v["checked"]))
    if (line := drift_line(meta)) is not None:
        print(f"[opfit] {line}")
    print(f"[opfit] wrote {out}/opfit.md (load {meta['load_before']} -> {meta['load_after']})")
    return 0


def _against_profile(reference: dict, prof: dict, clock: str, fresh: bool) -> tuple[dict | None, str | None]:
    """The drift of this run's reference kernels against the profile's, or None and why not: only another run
    on the same clock compares (fresh: the profile is of this run)."""
    if fresh:
        return None, "fresh: the profile is of this run"
    if not prof.get("reference_s"):
        return None, NO_REFERENCE
    if prof.get("clock", clock) != clock:
        return None, f"the profile's clock is {prof['clock']}"
    return drift(reference, prof["reference_s"]), None


def _fresh_profile(where: Path, timing: ModelTiming, a: argparse.Namespace, step, command: str) -> Path:
    """Profile this machine with ``iopopt profile``'s own code, a round of the models after each of its calibration
    rounds, so that the device and the times it is checked against are measured at the same machine speed; the
    profile (no network) is written to ``where``."""
    from ..profile import run_profile
    from ..profile.presets import write_presets

    prof = run_profile(clock=a.clock, network=False, rounds=a.rounds, step=step, between_rounds=timing.round)
    prof["stamp"] = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    prof["command"] = command + " (calibration interleaved with the models' rounds)"
    write_presets(prof, where)
    return where


def _describe(device) -> str:
    parts = [f"conv {device.flops_per_s / 1e9:.1f} GFLOP/s"]
    if device.memory_bandwidth_bytes_per_s:
        parts.append(f"memory {device.memory_bandwidth_bytes_per_s / 1e9:.1f} GB/s")
    parts.append(f"{len(device.kind_flops_per_s)} per-kind rates, {len(device.kind_bytes_per_s)} per-kind bandwidths")
    parts.append(f"overhead {device.op_overhead_s * 1e6:.1f} µs")
    return ", ".join(parts)
