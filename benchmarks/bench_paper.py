"""The paper comparison end to end: ``iopopt -m experiment=paper``, wall time after set-up (target ≤ 15 s).

Runs the README's command (the console script, a fresh process each time, report and plots included)
into a temporary folder, ``--repeats`` times, and prints the median wall time with the machine's load
average before and after each run (the machine is shared: a busy one makes every figure slower). With
``--sweep`` it also times the same 108 combinations as a plain multirun (one Hydra job per
combination, what ``experiment=paper`` was before it became one grid job) and checks that both give
the same figures (summary.csv, every numeric column but the solver times). With ``--before DIR`` it
times ``python -m iopopt -m experiment=paper`` of another iopopt checkout (e.g. ``git worktree add``
of an older commit) with this environment. Run from the repository root:

    .venv/bin/python benchmarks/bench_paper.py [--repeats 3] [--sweep] [--before DIR]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine, median

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GRID = ["model=alexnet,vgg16,resnet18", "cluster=rpi4_x2,rpi4_x3,rpi4_x4", "network=ethernet_1g,wifi_100mbps",
        "solver=single,coedge,oc,greedy_iop,ilp_pairs,ilp", "save_per_op=true",
        "hydra.callbacks.report.max_timelines=36", "hydra.callbacks.report.max_plans=18"]
#: Columns that may differ between two runs of the same plans: timings and where a record was read from.
VOLATILE = {"solver_time_s", "source", "study"}


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def _run(cmd: list[str], out: Path, env=None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd + [f"hydra.sweep.dir={out}"], cwd=out.parent, capture_output=True, text=True,
                          env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return seconds


def _time(label: str, cmd: list[str], repeats: int, env=None) -> tuple[float, Path]:
    times = []
    keep = Path(tempfile.mkdtemp(prefix="bench_paper_"))
    folder = "".join(ch if ch.isalnum() else "_" for ch in label)  # no '=' in a Hydra override's value
    for i in range(repeats):
        before = _load()
        out = keep / f"{folder}_{i}"
        times.append(_run(cmd, out, env))
        print(f"  {label} run {i + 1}: {times[-1]:.1f} s (load average 1/5/15 min before {before}, after {_load()})",
              flush=True)
    print(f"{label}: median {median(times):.1f} s over {repeats} (min {min(times):.1f}, max {max(times):.1f})")
    return median(times), keep / f"{folder}_0"


def _same_figures(a: Path, b: Path) -> str:
    import pandas as pd

    x, y = pd.read_csv(a / "summary.csv"), pd.read_csv(b / "summary.csv")
    cols = [c for c in x.columns if c not in VOLATILE]
    keys = ["instance", "solver"]
    x, y = x[cols].sort_values(keys).reset_index(drop=True), y[cols].sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(x, y, check_exact=True)
    return f"same figures: {len(x)} rows x {len(cols)} columns of summary.csv equal"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sweep", action="store_true", help="also time the grid as a plain 108-job multirun")
    ap.add_argument("--before", type=Path, default=None, help="another iopopt checkout to time the same way")
    args = ap.parse_args()
    print(machine())
    print(f"load average now: {_load()} (1/5/15 min; {os.cpu_count()} cores)")
    grid, grid_dir = _time("experiment=paper", [str(BIN / "iopopt"), "-m", "experiment=paper"], args.repeats)
    if args.sweep:
        _, sweep_dir = _time("108-job sweep", [str(BIN / "iopopt"), "-m", *GRID], args.repeats)
        print(_same_figures(grid_dir, sweep_dir))
    if args.before is not None:
        env = dict(os.environ, PYTHONPATH=str(args.before.resolve()))
        _time(f"before ({args.before})", [sys.executable, "-m", "iopopt", "-m", "experiment=paper"], args.repeats,
              env)
    print(f"experiment=paper: {grid:.1f} s (target <= 15 s): {'PASS' if grid <= 15 else 'over'}")


if __name__ == "__main__":
    main()
