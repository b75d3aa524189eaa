"""Kill runs at random moments and count what is left behind (issue 16's acceptance for killed runs).

For each scenario (an ILP solve, a joblib sweep, a joblib sweep with a worker
that never gets a job, a local distributed run) and
signal (SIGTERM, SIGKILL) it starts the run, signals the parent at a random
moment, and records: the processes of the run (every descendant seen while it
ran) still alive 5 s after the signal, ``iopopt-ilp-*`` folders left in the
run's private TMPDIR (SIGTERM only: after a SIGKILL the parent cannot clean
up; the next solve does), and finished ``result.json`` files that do not parse.

A long ILP solve is a fake ``cbc`` on PATH that sleeps (``solver.backend=COIN_CMD``).

    .venv/bin/python scripts/kill_study.py --trials 5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from iopopt._lifecycle import descendants

BIN = Path(sys.executable).parent


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3] != b"Z"


def _command(scenario: str, work: Path) -> list[str]:
    if scenario == "ilp":
        return [str(BIN / "iopopt"), "model=tiny_chain", "solver=ilp", "solver.backend=COIN_CMD",
                f"hydra.run.dir={work / 'run'}"]
    if scenario == "joblib":
        return [str(BIN / "iopopt"), "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "model=tiny_chain",
                "solver=ilp", "solver.backend=COIN_CMD,PULP_CBC_CMD,PULP_CBC_CMD",
                "hydra.callbacks.report.plots=false", f"hydra.sweep.dir={work / 'sweep'}"]
    if scenario == "joblib_idle":  # 3 workers, 2 jobs: one worker never gets a job (loky keeps it 300 s)
        return [str(BIN / "iopopt"), "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=3", "model=tiny_chain",
                "solver=ilp", "solver.backend=COIN_CMD,PULP_CBC_CMD", "hydra.callbacks.report.plots=false",
                f"hydra.sweep.dir={work / 'sweep'}"]
    return [sys.executable, "-m", "iopopt.distributed", "--model", "tiny_chain", "--plan", "alternating",
            "--ranks", "2", "--repeats", "3000"]


def trial(scenario: str, sig: signal.Signals, at_s: float, fake_cbc_s: float) -> dict:
    work = Path(tempfile.mkdtemp(prefix="iopopt-killstudy-"))
    try:
        fake = work / "bin"
        fake.mkdir()
        (fake / "cbc").write_text(f"#!/bin/sh\nexec sleep {fake_cbc_s}\n")
        (fake / "cbc").chmod(0o755)
        (work / "tmp").mkdir()
        env = dict(os.environ, TMPDIR=str(work / "tmp"), PATH=f"{fake}{os.pathsep}{os.environ['PATH']}")
        err_path = work / "stderr.txt"
        with open(err_path, "wb") as err_file:  # a file: a leftover process holding a pipe would block the read
            proc = subprocess.Popen(_command(scenario, work), cwd=work, env=env, stdout=subprocess.DEVNULL,
                                    stderr=err_file, start_new_session=True)
        seen: set[int] = set()
        t0 = time.monotonic()
        while time.monotonic() - t0 < at_s and proc.poll() is None:
            seen.update(descendants(proc.pid))
            time.sleep(0.05)
        finished_before = proc.poll() is not None
        seen.update(descendants(proc.pid))
        sent = time.monotonic()
        if not finished_before:
            os.kill(proc.pid, sig)
        last_gone = None
        while time.monotonic() - sent < 5.0:
            alive = [p for p in seen if _alive(p)]
            if not alive and proc.poll() is not None:
                last_gone = time.monotonic() - sent
                break
            if proc.poll() is None and time.monotonic() - sent > 4.5:
                break
            time.sleep(0.02)
        left = [p for p in seen if _alive(p)] + ([proc.pid] if proc.poll() is None else [])
        for p in [proc.pid, *seen]:
            with contextlib.suppress(OSError):
                os.kill(p, signal.SIGKILL)
        proc.wait(timeout=10)
        err = err_path.read_text(errors="replace")
        temp_left = sorted(p.name for p in (work / "tmp").glob("iopopt-ilp-*"))
        bad = []
        results = list(work.rglob("result.json"))
        for r in results:
            try:
                json.loads(r.read_text())
            except ValueError:
                bad.append(str(r))
        return {"scenario": scenario, "signal": sig.name, "at_s": round(at_s, 2), "finished_before": finished_before,
                "children_seen": len(seen), "left_after_5s": len(left), "gone_after_s": last_gone,
                "temp_left": len(temp_left), "results": len(results), "corrupt_results": len(bad),
                "status": proc.returncode, "traceback": "Traceback" in err}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=5, help="per scenario and signal")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scenarios", nargs="+", default=["ilp", "joblib", "joblib_idle", "distributed"])
    ap.add_argument("--signals", nargs="+", default=["SIGTERM", "SIGKILL"])
    ap.add_argument("--window", type=float, nargs=2, default=(1.0, 14.0), help="random moment range (s)")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    rows = []
    for scenario in a.scenarios:
        for sig in (signal.Signals[name] for name in a.signals):
            for _ in range(a.trials):
                row = trial(scenario, sig, rng.uniform(*a.window), fake_cbc_s=30)
                rows.append(row)
                print(json.dumps(row), flush=True)
    print("\nscenario     signal   trials  signalled  left>5s  temp_left(TERM)  corrupt  tracebacks  max gone_s")
    for scenario in a.scenarios:
        for sig in a.signals:
            rs = [r for r in rows if r["scenario"] == scenario and r["signal"] == sig]
            hit = [r for r in rs if not r["finished_before"]]
            gone = [r["gone_after_s"] for r in hit if r["gone_after_s"] is not None]
            print(f"{scenario:12s} {sig:8s} {len(rs):6d}  {len(hit):9d}  {sum(r['left_after_5s'] > 0 for r in hit):7d}"
                  f"  {sum(r['temp_left'] > 0 for r in hit if sig == 'SIGTERM'):15d}"
                  f"  {sum(r['corrupt_results'] for r in rs):7d}  {sum(r['traceback'] for r in hit):10d}"
                  f"  {max(gone) if gone else float('nan'):10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
