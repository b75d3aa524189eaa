"""The per-operator prediction report: CSV tables, markdown with the acceptance checks, and the plot."""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Sequence
from pathlib import Path

from ...results.io import atomic_path, write_text_atomic

__all__ = ["TOTAL_TOL", "KIND_TOL", "OP_TOL", "KIND_MIN_S", "DRIFT_WARN", "NO_REFERENCE", "summarize", "write_csv",
           "write_markdown", "plot", "drift_line", "drift_warning"]

#: Acceptance: total within ±15%, each kind with at least 1 ms measured within ±30%, median per-op error ≤ 25%.
TOTAL_TOL, KIND_TOL, OP_TOL, KIND_MIN_S = 0.15, 0.30, 0.25, 1e-3


def summarize(rows: Sequence[dict]) -> dict:
    """Per model: totals, per-kind sums and the per-op median absolute error, with the acceptance checks."""
    out: dict = {}
    for model in dict.fromkeys(r["model"] for r in rows):
        rs = [r for r in rows if r["model"] == model]
        kinds: dict[str, dict] = {}
        for r in rs:
            k = kinds.setdefault(r["kind"], {"n": 0, "measured_s": 0.0, "predicted_s": 0.0})
            k["n"] += 1
            k["measured_s"] += r["measured_s"]
            k["predicted_s"] += r["predicted_s"]
        for k in kinds.values():
            k["error"] = k["predicted_s"] / k["measured_s"] - 1
            k["checked"] = k["measured_s"] >= KIND_MIN_S
        measured = sum(r["measured_s"] for r in rs)
        predicted = sum(r["predicted_s"] for r in rs)
        op_err = statistics.median(abs(r["predicted_s"] / r["measured_s"] - 1) for r in rs)
        checked = [k for k in kinds.values() if k["checked"]]
        out[model] = {
            "ops": len(rs),
            "measured_s": measured,
            "predicted_s": predicted,
            "error": predicted / measured - 1,
            "op_median_abs_error": op_err,
            "kinds": dict(sorted(kinds.items(), key=lambda kv: -kv[1]["measured_s"])),
            "total_ok": abs(predicted / measured - 1) <= TOTAL_TOL,
            "kinds_ok": all(abs(k["error"]) <= KIND_TOL for k in checked),
            "ops_ok": op_err <= OP_TOL,
        }
    return out


def write_csv(rows: Sequence[dict], path: Path) -> None:
    cols = ["model", "node", "kind", "flops", "bytes", "bound", "measured_s", "predicted_s", "error"]
    fh = io.StringIO(newline="")
    w = csv.writer(fh)
    w.writerow([*cols, "rounds_s"])
    for r in rows:
        w.writerow([r[c] if c != "error" else r["predicted_s"] / r["measured_s"] - 1 for c in cols]
                   + [" ".join(f"{t:.6g}" for t in r.get("rounds_s", ()))])
    write_text_atomic(path, fh.getvalue())


def _ms(s: float) -> str:
    return f"{s * 1e3:.2f}"


#: A drift of the reference kernels beyond this (either way) is called out: the run and the profile ran at
#: different machine speeds.
DRIFT_WARN = 0.10
#: Why a run's drift is not compared with its profile's: the profile predates the reference kernels.
NO_REFERENCE = "the profile has no reference kernels"


def drift_warning(meta: dict) -> str | None:
    """The warning that the machine's speed moved beyond :data:`DRIFT_WARN`, against the profile or within the
    run (None: it did not)."""
    vs = meta.get("reference_drift_vs_profile")
    inrun = meta.get("reference_drift_in_run") or {}
    moved = {**(vs or {}), **{f"{k} in this run": v for k, v in inrun.items()}}
    if not any(abs(v) > DRIFT_WARN for v in moved.values()):
        return None
    parts = ", ".join(f"{k} {v:+.0%}" for k, v in moved.items())
    advice = "re-run both on a quieter machine" if vs is not None else "re-run on a quieter machine"
    return (f"WARNING: the machine's speed moved by more than {DRIFT_WARN:.0%} ({parts}; > 0: slower now): "
            f"errors include that drift, not only the model's; {advice}")


def drift_line(meta: dict) -> str | None:
    """One line on how the machine's speed moved, against the profile and within the run: the
    :func:`drift_warning`, else a note that the profile has nothing to compare with (None: nothing worth a
    line)."""
    if (warning := drift_warning(meta)) is not None:
        return warning
    if meta.get("reference_drift_vs_profile") is None and meta.get("reference_vs_profile_why_none") == NO_REFERENCE:
        return f"{NO_REFERENCE} (made before they were recorded): drift against it unknown"
    return None


def write_markdown(path: Path, summary: dict, meta: dict) -> None:
    ok = "yes"
    lines = [
        "# Per-operator prediction: the roofline cost model against measured kernel times",
        "",
        f"Date {meta['date']}; machine: {meta['machine']}; load average {meta['load_before']} before, "
        f"{meta['load_after']} after. Command: `{meta['command']}`.",
        "",
        f"Device: `{meta['profile']}` ({meta['device']}).",
        "",
        f"Measured: every operator run whole on one device as the executors run a one-device plan "
        f"(`iopopt.exec.kernels.compute`, tensors freed after their last consumer, freed memory kept for reuse: "
        f"`iopopt.studies.opfit.measure.steady_allocator`), one torch thread, float32, "
        f"{meta.get('rounds', 1)} rounds over the models of {meta['warmup']} warm-up + {meta['repeats']} timed "
        f"passes, {meta['clock']} clock; per operator the least of its per-round medians over passes "
        f"(each round in `opfit.csv`'s `rounds_s`), the total their sum. `torch forward` is the unsplit "
        f"module's own forward (the same statistic, same clock), for reference. Predicted: the cost model's "
        f"compute time of each operator in the one-device `host` plan (`iopopt.cost.evaluate`).",
        "",
        _drift_paragraph(meta),
        "",
        f"Acceptance: total within ±{TOTAL_TOL:.0%}, every kind with ≥ {KIND_MIN_S * 1e3:.0f} ms measured within "
        f"±{KIND_TOL:.0%}, median per-operator absolute error ≤ {OP_TOL:.0%}.",
        "",
        "| model | ops | measured ms | predicted ms | error | torch forward ms | median op error | total | kinds "
        "| ops |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model, s in summary.items():
        lines.append(
            f"| {model} | {s['ops']} | {_ms(s['measured_s'])} | {_ms(s['predicted_s'])} | {s['error']:+.1%} | "
            f"{_ms(meta['forward_s'][model])} | {s['op_median_abs_error']:.1%} | "
            f"{ok if s['total_ok'] else 'NO'} | {ok if s['kinds_ok'] else 'NO'} | {ok if s['ops_ok'] else 'NO'} |"
        )
    lines += ["", "## Per kind", "",
              "Summed over the operators of each kind; `*`: at least 1 ms measured (checked against ±30%).", "",
              "| model | kind | ops | measured ms | predicted ms | error |", "|---|---|---|---|---|---|"]
    for model, s in summary.items():
        for kind, k in s["kinds"].items():
            mark = "*" if k["checked"] else ""
            lines.append(f"| {model} | {kind}{mark} | {k['n']} | {_ms(k['measured_s'])} | {_ms(k['predicted_s'])} | "
                         f"{k['error']:+.1%} |")
    lines += ["", "Per-operator rows: `opfit.csv` (`bound`: which roofline term the model says binds). "
              "Plot: `opfit.png`.", ""]
    write_text_atomic(path, "\n".join(lines))


def _drift_paragraph(meta: dict) -> str:
    vs, inrun = meta.get("reference_drift_vs_profile"), meta.get("reference_drift_in_run")
    if inrun is None:
        return "Machine drift: not measured."
    text = ("Machine drift (two reference kernels, `iopopt.studies.opfit.measure.reference_times`; > 0: slower): "
            + ("against the profile " + ", ".join(f"{k} {v:+.1%}" for k, v in vs.items()) if vs is not None
               else f"not against the profile ({meta.get('reference_vs_profile_why_none') or 'none recorded'})")
            + "; from the start to the end of this run " + ", ".join(f"{k} {v:+.1%}" for k, v in inrun.items())
            + ".")
    warning = drift_warning(meta)
    return text + (f" **{warning}**" if warning else "")


def plot(rows: Sequence[dict], summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(summary)
    kinds = sorted({r["kind"] for r in rows})
    cmap = plt.get_cmap("tab20")
    colour = {k: cmap(i % 20) for i, k in enumerate(kinds)}
    fig, axes = plt.subplots(2, len(models), figsize=(4.2 * len(models), 8.4), squeeze=False)
    for j, model in enumerate(models):
        ax = axes[0][j]
        rs = [r for r in rows if r["model"] == model]
        for k in kinds:
            pts = [(r["measured_s"] * 1e3, r["predicted_s"] * 1e3) for r in rs if r["kind"] == k]
            if pts:
                ax.scatter(*zip(*pts), s=14, color=colour[k], label=k, alpha=0.85)
        lo = min(min(r["measured_s"], r["predicted_s"]) for r in rs) * 1e3 / 1.5
        hi = max(max(r["measured_s"], r["predicted_s"]) for r in rs) * 1e3 * 1.5
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
        ax.fill_between([lo, hi], [lo * 0.75, hi * 0.75], [lo * 1.25, hi * 1.25], color="0.85", zorder=0)
        ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), xlabel="measured per op (ms)",
               title=f"{model}: total {summary[model]['error']:+.0%}, "
                     f"median op |err| {summary[model]['op_median_abs_error']:.0%}")
        if j == 0:
            ax.set_ylabel("predicted per op (ms)")
        ax.legend(fontsize=6, loc="upper left", ncol=2)
        bx = axes[1][j]
        ks = list(summary[model]["kinds"].items())
        names = [k for k, _ in ks]
        meas = [v["measured_s"] * 1e3 for _, v in ks]
        pred = [v["predicted_s"] * 1e3 for _, v in ks]
        x = range(len(names))
        bx.bar([i - 0.2 for i in x], meas, 0.4, label="measured", color="0.45")
        bx.bar([i + 0.2 for i in x], pred, 0.4, label="predicted", color="tab:orange")
        bx.set_yscale("log")
        bx.set_xticks(list(x), names, rotation=60, ha="right", fontsize=7)
        for i, (_, v) in enumerate(ks):
            if v["checked"]:
                bx.text(i, max(v["measured_s"], v["predicted_s"]) * 1e3 * 1.15, f"{v['error']:+.0%}", ha="center",
                        fontsize=7)
        bx.set_title(f"{model}: per kind (ms, log); % on kinds ≥ 1 ms", fontsize=9)
        if j == 0:
            bx.set_ylabel("summed time (ms)")
            bx.legend(fontsize=7)
        ymin = min(min(meas), min(pred))
        bx.set_ylim(max(ymin / 2, 1e-4), max(max(meas), max(pred)) * 3)
    fig.suptitle("Roofline cost model vs measured kernel times, one device, one thread (grey band: ±25%)")
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:  # an interrupt leaves no half-written figure
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)

