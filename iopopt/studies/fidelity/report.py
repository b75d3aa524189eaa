"""The fidelity study's outputs: CSV files, the markdown report with its diagnosis, and the plot."""

from __future__ import annotations

import csv
import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from ...results.io import atomic_path
from ..profile.presets import preset_flops, preset_latency, summary_line
from .run import _MEMORY_KINDS, _POOL_KINDS, FidelityPoint, summarize

__all__ = ["write_csv", "write_kinds", "plot", "write_markdown", "load_points", "report"]


def write_csv(points: Sequence[FidelityPoint], path: Path) -> None:
    cols = [f for f in FidelityPoint.__dataclass_fields__ if f != "latencies_s"] + ["error", "extended_error"]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for p in points:
            d = asdict(p)
            d["error"] = p.error
            d["extended_error"] = p.extended_s / p.measured_s - 1.0
            w.writerow([d[c] for c in cols])


def write_kinds(kinds: Sequence[dict], path: Path) -> None:
    if not kinds:
        return
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(kinds[0]))
        w.writeheader()
        w.writerows(kinds)


def plot(points: Sequence[FidelityPoint], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5.5))
    colors = {m: c for m, c in zip(sorted({p.model for p in points}), ("tab:blue", "tab:orange", "tab:green",
                                                                         "tab:red", "tab:purple"))}
    markers = {2: "o", 3: "s", 4: "^", 5: "D", 6: "v"}
    summary = summarize(points)
    for ax, attr, title in ((axes[0], "predicted_s", "cost model (profiled)"),
                            (axes[1], "extended_s", "diagnostic: + contention + per-kind rates")):
        for p in points:
            ax.scatter(p.measured_s * 1e3, getattr(p, attr) * 1e3, color=colors[p.model],
                       marker=markers.get(p.k, "x"), s=40, alpha=0.8)
        vals = [p.measured_s * 1e3 for p in points] + [getattr(p, attr) * 1e3 for p in points]
        lo, hi = min(vals) / 1.5, max(vals) * 1.5
        ax.plot([lo, hi], [lo, hi], "k-", lw=1, label="y = x")
        ax.plot([lo, hi], [lo * 1.25, hi * 1.25], "k:", lw=0.8, label="±25%")
        ax.plot([lo, hi], [lo * 0.75, hi * 0.75], "k:", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel("measured latency (ms)")
        ax.set_ylabel("predicted latency (ms)")
        s = summary["model" if attr == "predicted_s" else "extended"]
        ax.set_title(f"{title}\nSpearman ρ = {s['spearman']:.2f}, median |error| = {s['mdape'] * 100:.0f}%")
        ax.grid(True, which="both", alpha=0.3)
    handles = [plt.Line2D([], [], color=c, marker="o", ls="", label=m) for m, c in colors.items()]
    handles += [plt.Line2D([], [], color="gray", marker=markers.get(k, "x"), ls="", label=f"{k} ranks")
                for k in sorted({p.k for p in points})]
    axes[0].legend(handles=handles, loc="upper left", fontsize=8)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:  # an interrupt leaves no half-written figure
            fig.savefig(tmp, dpi=120)
    finally:
        plt.close(fig)


def _ms(x) -> str:
    return "—" if x is None else f"{x * 1e3:.2f}"


def write_markdown(points, kinds, prof: dict, settings: dict, path: Path) -> str:
    s = summarize(points)
    m = s["model"]
    met = m["spearman"] >= 0.8 and m["mdape"] <= 0.25
    cores = prof["machine"]["cpu_count"]
    L = []
    L.append("# Cost-model fidelity: measured distributed latency vs the calibrated model\n")
    L.append(
        f"Machine: {cores} cores, torch {prof['machine']['torch']}, 1 thread per rank, float32, gloo over loopback. "
        f"Models: {', '.join(settings['models'])} (input {settings['hw_text']}); ranks {list(settings['ranks'])}; "
        f"solvers {', '.join(settings['solvers'])} (ilp time limit {settings['ilp_time_s']:g} s); "
        f"{settings['warmup']} warm-up + {settings['repeats']} timed inferences per plan, latency = median over "
        "inferences of the max over ranks. No barrier between steps (a second run with a barrier after every step "
        "is the `barrier` column).\n"
    )

    per_k = "; ".join(
        f"k={k}: {preset_flops(prof, k) / 1e9:.1f} GFLOP/s per device, latency {preset_latency(prof, k) * 1e3:.2f} ms"
        for k in settings["ranks"]
    )
    L.append(
        f"Calibration (`iopopt profile`, measured just before): {summary_line(prof)}. Presets used per rank count: "
        f"{per_k}; bandwidth {prof['bandwidth_bytes_per_s'] / 1e9:.2f} GB/s, switched network, op overhead "
        f"{prof['op_overhead_s'] * 1e6:.1f} µs.\n"
    )
    L.append("## Headline\n")
    L.append("| predictor | Spearman ρ | median abs. error |\n|---|---|---|")
    for label, name in (("model", "cost model (profiled presets)"),
                        ("pingpong", "cost model with the idle ping-pong α instead of the loaded one"),
                        ("contention", "diagnostic: solo throughput × core share of the step's active ranks"),
                        ("extended", "diagnostic: + per-kind rates (linear, pooling, memory-bound)")):
        L.append(f"| {name} | {s[label]['spearman']:.3f} | {s[label]['mdape'] * 100:.1f}% |")
    L.append("")
    L.append(f"Target (ρ ≥ 0.8 and median error ≤ 25%) for the cost model: **{'met' if met else 'NOT met'}**.\n")
    L.append("Per rank count (all models and plans):\n")
    L.append("| k | ρ model | median error model | ρ extended | median error extended |\n|---|---|---|---|---|")
    for k, v in s["by_k"].items():
        L.append(f"| {k} | {v['spearman']:.2f} | {v['mdape'] * 100:.1f}% | {v['spearman_extended']:.2f} | "
                 f"{v['mdape_extended'] * 100:.1f}% |")
    L.append("")
    L.append("Per configuration (ranking of the plans of one model on one cluster):\n")
    L.append("| model | k | ρ model | ρ extended | median error model | median error extended | measured max/min |")
    L.append("|---|---|---|---|---|---|---|")
    for g in s["groups"]:
        L.append(f"| {g['model']} | {g['k']} | {g['spearman']:.2f} | {g['spearman_extended']:.2f} | "
                 f"{g['mdape'] * 100:.1f}% | {g['mdape_extended'] * 100:.1f}% | {g['measured_spread']:.2f} |")
    L.append("")
    L.append("## Per plan\n")
    L.append("Times in ms. `pred comp/comm`: the cost model's split; `meas comp/comm`: Σ over steps of the max over "
             "ranks of kernel time / resharding time (the comm figure includes waiting for slower peers).\n")
    L.append("| model | k | solver | predicted | measured | error | pred comp | pred comm | meas comp | meas comm | "
             "barrier | contention | extended | ext. error | msgs | MB |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for p in points:
        L.append(
            f"| {p.model} | {p.k} | {p.solver} | {_ms(p.predicted_s)} | {_ms(p.measured_s)} | {p.error * 100:+.1f}% | "
            f"{_ms(p.pred_compute_s)} | {_ms(p.pred_comm_s)} | {_ms(p.meas_compute_s)} | {_ms(p.meas_comm_s)} | "
            f"{_ms(p.measured_barrier_s)} | {_ms(p.contention_s)} | {_ms(p.extended_s)} | "
            f"{(p.extended_s / p.measured_s - 1) * 100:+.1f}% | {p.messages} | {p.bytes_sent / 1e6:.2f} |"
        )
    L.append("")
    # per-kind diagnosis
    L.append("## Where the error comes from\n")
    tot: dict[str, list[float]] = {}
    for r in kinds:
        a = tot.setdefault(r["kind"], [0.0, 0.0, 0.0, 0])
        a[0] += r["measured_compute_s"]
        a[1] += r["model_compute_s"]
        a[2] += r["extended_compute_s"]
        a[3] += r["steps"]
    L.append("Compute per operator kind, summed over every plan run (Σ over steps of the max over ranks), ms:\n")
    L.append("| kind | steps | measured | cost model | model / measured | extended | extended / measured |")
    L.append("|---|---|---|---|---|---|---|")
    for kind, (mm, pm, em, n) in sorted(tot.items(), key=lambda kv: -kv[1][0]):
        L.append(f"| {kind} | {n} | {mm * 1e3:.1f} | {pm * 1e3:.1f} | {pm / mm if mm else float('nan'):.2f} | "
                 f"{em * 1e3:.1f} | {em / mm if mm else float('nan'):.2f} |")
    L.append("")
    L.extend(_diagnosis(points, s, prof, tot))
    L.append("\n![measured vs predicted](fidelity.png)\n")
    text = "\n".join(L) + "\n"
    path.write_text(text)
    return text


def _diagnosis(points, s, prof, tot) -> list[str]:
    out = []
    cores = prof["machine"]["cpu_count"]
    comp_ratio = sum(p.pred_compute_s for p in points) / max(1e-12, sum(p.meas_compute_s for p in points))
    comm_ratio = sum(p.pred_comm_s for p in points) / max(1e-12, sum(p.meas_comm_s for p in points))
    out.append(f"- Over all plans, the model's compute is {comp_ratio:.2f}× the measured kernel time and its "
               f"communication {comm_ratio:.2f}× the measured resharding time (which includes waiting for peers).")
    lin = tot.get("linear")
    if lin and lin[0] > 0:
        out.append(f"- Linear layers at batch 1 are memory-bound: measured {lin[0] * 1e3:.1f} ms against "
                   f"{lin[1] * 1e3:.1f} ms predicted at the conv throughput ({lin[0] / max(lin[1], 1e-12):.1f}× "
                   "under-predicted). Fix: a per-kind throughput (or a roofline max(FLOPs/F, weight bytes/memory "
                   "bandwidth)) per device.")
    pools = [v for k, v in tot.items() if k in _POOL_KINDS]
    if pools and sum(v[0] for v in pools) > 0:
        mm, pm = sum(v[0] for v in pools), sum(v[1] for v in pools)
        out.append(f"- Max/avg pooling: measured {mm * 1e3:.1f} ms vs {pm * 1e3:.1f} ms predicted: torch's CPU pooling "
                   f"runs at {prof['pool_flops_per_s'] / 1e9:.2f} GFLOP/s (outputs × window), not at the conv rate. "
                   "Fix: a per-kind throughput.")
    memk = [v for k, v in tot.items() if k in _MEMORY_KINDS]
    mm = sum(v[0] for v in memk)
    pm = sum(v[1] for v in memk)
    if mm > 0:
        out.append(f"- Activations, batchnorm, add, cat, adaptive pooling: measured {mm * 1e3:.1f} ms vs "
                   f"{pm * 1e3:.1f} ms predicted (priced as FLOPs at the conv rate; they are bound by memory "
                   "bandwidth and per-call overhead). Fix: cost them by bytes moved / memory bandwidth.")
    loaded = prof.get("exchange_loaded_s") or {}
    idle = prof.get("exchange_idle_s") or {}
    if loaded:
        meas_comm = sum(p.meas_comm_s for p in points if p.messages)
        pred_comm = sum(p.pred_comm_s for p in points if p.messages)
        pp_comm = sum(p.pingpong_s - p.pred_compute_s for p in points if p.messages)
        out.append(
            f"- Messages: the idle ping-pong gives α = {prof['pingpong_latency_s'] * 1e6:.0f} µs, "
            "but one 12 KiB exchange "
            "with a ~1 ms conv on every rank between exchanges costs "
            + ", ".join(f"{float(v) * 1e3:.2f} ms with {n} ranks" for n, v in loaded.items())
            + " (without the conv: " + ", ".join(f"{float(v) * 1e3:.2f} ms" for v in idle.values()) + "). gloo "
            "delivers each message through a notify/ready handshake run by one I/O thread per rank, and those threads "
            "wait for a core while the ranks compute (2 cores, 2-4 compute threads). The presets use the loaded "
            f"figure; over the plans that send messages the model's communication is {pred_comm * 1e3:.0f} ms against "
            f"{meas_comm * 1e3:.0f} ms measured (with the ping-pong α it would be {pp_comm * 1e3:.0f} ms). "
            "A per-message α "
            "cannot express that the cost depends on how many ranks compute at the same time, nor that messages of "
            "one phase to different peers overlap. Fix: make the latency a function of the active ranks per core "
            "(like compute), or charge it per phase rather than per message."
        )
    for k, v in s["by_k"].items():
        out.append(f"- {k} ranks: median error {v['mdape'] * 100:.1f}%, ρ {v['spearman']:.2f}"
                   + (f" (more ranks than the {cores} cores: per-rank throughput depends on how many ranks compute "
                      "at once, which one flops_per_s per device cannot express; the `contention` column divides "
                      "each step's compute by min(1, cores / active ranks) with the solo throughput)."
                      if k > cores else "."))
    bar = [p for p in points if p.measured_barrier_s]
    if bar:
        r = statistics.median(p.measured_barrier_s / p.measured_s for p in bar)
        out.append(f"- With a barrier after every step (the model's layer-synchronous semantics) the measured latency "
                   f"is {r:.2f}× the barrier-free one (median over plans). A gloo barrier is itself a round of "
                   "messages with the delays above, so this mostly prices the barriers; it does not show that "
                   "barrier-free ranks gain much by running ahead (the model's sum of per-step maxima).")
    loads = [p.load_before for p in points] + [p.load_after for p in points]
    out.append(f"- Machine load (1-min load average) during the runs: {min(loads):.2f}–{max(loads):.2f} on {cores} "
               "cores; background load inflates and scatters the measured times.")
    return out


def load_points(path: Path) -> list[FidelityPoint]:
    """The points of a ``fidelity.csv``."""
    out = []
    types = {f.name: f.type for f in FidelityPoint.__dataclass_fields__.values()}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            kw = {}
            for name in FidelityPoint.__dataclass_fields__:
                if name == "latencies_s" or name not in row:
                    continue
                v = row[name]
                t = str(types[name])
                if t.startswith("int"):
                    kw[name] = int(v)
                elif t.startswith("bool"):
                    kw[name] = v == "True"
                elif t.startswith("float"):
                    kw[name] = None if v in ("", "None") else float(v)
                else:
                    kw[name] = v
            out.append(FidelityPoint(**kw))
    return out


def report(out: Path, points, kinds, prof: dict, settings: dict) -> dict:
    """Write fidelity.csv, kinds.csv, fidelity.png, fidelity.md and summary.json into ``out``."""
    write_csv(points, out / "fidelity.csv")
    write_kinds(kinds, out / "kinds.csv")
    plot(points, out / "fidelity.png")
    write_markdown(points, kinds, prof, settings, out / "fidelity.md")
    s = summarize(points)
    (out / "summary.json").write_text(json.dumps(s, indent=2, default=str))
    (out / "settings.json").write_text(json.dumps(settings, indent=2))
    return s
