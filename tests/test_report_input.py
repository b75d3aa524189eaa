"""`iopopt-report` on malformed, foreign, copied and missing records: each bad record is skipped with one
warning naming its file and field, the report is complete for the rest, and a partial sweep says how many
of its jobs are missing.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra.core.global_hydra import GlobalHydra

import iopopt.app
from iopopt.report.cli import main as report_main
from iopopt.report.validate import SWEEP_FILE, expected_jobs, record_problem
from iopopt.results import RESULT_FILE


def _bad_per_op(rec):
    del rec["per_op"][1]["node"]


#: name → (change to a good record, the field the warning must name)
MALFORMED = {
    "foreign": (lambda r: (r.clear(), r.update({"foo": 1})), "model"),
    "latency-text": (lambda r: r.update(latency_s="fast"), "latency_s"),
    "verify-text": (lambda r: r.update(verify="yes"), "verify"),
    "solver-list": (lambda r: r.update(solver=["ilp"]), "solver"),
    "per-device-text": (lambda r: r.update(per_device="x"), "per_device"),
    "per-op-missing-key": (_bad_per_op, "per_op[1].node"),
    "latency-zero": (lambda r: r.update(latency_s=0), "latency_s"),
    "latency-negative": (lambda r: r.update(latency_s=-1), "latency_s"),
    "latency-bool": (lambda r: r.update(latency_s=True), "latency_s"),
    "termination-number": (lambda r: r.update(termination=5), "termination"),
}


@pytest.fixture(scope="module")
def good_sweep(tmp_path_factory):
    """A real 3-job sweep (no plots), made once."""
    root = tmp_path_factory.mktemp("sweep")
    sweep = root / "sweep"
    argv = sys.argv
    sys.argv = ["iopopt", "-m", "model=tiny_chain", "solver=single,coedge,oc", "cluster=rpi4_x2",
                "network=ethernet_1g", f"hydra.sweep.dir={sweep}", "hydra.callbacks.report.plots=false"]
    GlobalHydra.instance().clear()
    try:
        iopopt.app.main()
    finally:
        GlobalHydra.instance().clear()
        sys.argv = argv
    return sweep


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_each_malformed_record_names_its_field(good_sweep, case):
    rec = json.loads((good_sweep / "0" / RESULT_FILE).read_text())
    assert record_problem(rec) is None  # the real record is fine
    change, field = MALFORMED[case]
    change(rec)
    problem = record_problem(rec)
    assert problem is not None and problem.startswith(field + ":"), problem


def test_report_skips_bad_records_and_counts_missing_jobs(good_sweep, tmp_path, caplog):
    sweep = tmp_path / "sweep"
    shutil.copytree(good_sweep, sweep)
    for f in ("summary.csv", "summary.md"):
        (sweep / f).unlink()
    settings = (sweep / "multirun.yaml").read_text()
    assert settings.count("plots: false") == 1
    (sweep / "multirun.yaml").write_text(settings.replace("plots: false", "plots: true"))  # the report plots
    assert json.loads((sweep / SWEEP_FILE).read_text()) == {"jobs": 3}  # the sweep recorded its size
    assert expected_jobs(sweep) == 3
    good = json.loads((sweep / "0" / RESULT_FILE).read_text())
    bad_files = {}
    for case, (change, field) in MALFORMED.items():
        rec = copy.deepcopy(good)
        change(rec)
        (sweep / case).mkdir()
        (sweep / case / RESULT_FILE).write_text(json.dumps(rec))
        bad_files[case] = field
    shutil.copytree(sweep / "1", sweep / "1 copy")  # a copied job folder
    (sweep / "2" / RESULT_FILE).unlink()  # a job that has not finished
    caplog.set_level(logging.WARNING, logger="iopopt")
    assert report_main([str(sweep), "-q"]) == 0  # with plots
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for case, field in bad_files.items():
        mine = [w for w in warnings if f"{sweep / case / RESULT_FILE}:" in w]
        assert len(mine) == 1 and f": {field}:" in mine[0], (case, mine)
    copies = [w for w in warnings if "1 copy" in w]
    assert len(copies) == 1 and "same record" in copies[0]
    missing = [w for w in warnings if "jobs have no usable record" in w]
    assert len(missing) == 1 and missing[0].startswith("1 of the sweep's 3 jobs")
    df = pd.read_csv(sweep / "summary.csv")
    assert sorted(df["solver"]) == ["coedge", "single"] and sorted(df["source"]) == ["0/result.json",
                                                                                      "1/result.json"]
    md = (sweep / "summary.md").read_text()
    assert "**Incomplete sweep:** 1 of the sweep's 3 jobs" in md and "## Plots" in md


def test_expected_jobs_of_older_sweeps_from_multirun_yaml(tmp_path):
    """Without sweep.json: plain comma lists of the sweeper's params and the command line; unsure: None."""
    import yaml

    tree = {"hydra": {"sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
                                  "params": {"model": "a,b,c", "solver": "x,y"}},
                      "overrides": {"task": ["solver=x,y,z,w", "network=n1,n2", "verify=true"]}}}
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump(tree))
    assert expected_jobs(tmp_path) == 3 * 4 * 2  # the command line's solver list wins over the params'
    assert expected_jobs(tmp_path / "nothing") is None
    tree["hydra"]["overrides"]["task"].append("solver.time_limit_s=range(1,4)")
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump(tree))
    assert expected_jobs(tmp_path) is None
    tree["hydra"]["sweeper"]["_target_"] = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump(tree))
    assert expected_jobs(tmp_path) is None


def test_a_complete_sweep_says_nothing_about_missing_jobs(good_sweep, caplog):
    caplog.set_level(logging.WARNING, logger="iopopt")
    assert report_main([str(good_sweep), "-q", "--no-plots"]) == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "Incomplete" not in (good_sweep / "summary.md").read_text()
    assert Path(good_sweep / "summary.csv").is_file()


# `iopopt-report` with a figure write that stalls half-way (a part of a PNG already where it writes it)
_STALLED_REPORT = """
import pathlib, sys, time
import matplotlib.figure
def stalled(self, fname, *a, **k):
    pathlib.Path(fname).write_bytes(b"\\x89PNG half a figure")
    pathlib.Path(sys.argv[2]).touch()
    time.sleep(60)
matplotlib.figure.Figure.savefig = stalled
from iopopt.report.cli import main
sys.exit(main([sys.argv[1]]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX signals")
def test_report_interrupted_by_sigint_is_one_line_and_leaves_nothing_half_written(good_sweep, tmp_path):
    import contextlib
    import os
    import signal
    import subprocess
    import time

    sweep = tmp_path / "sweep"
    shutil.copytree(good_sweep, sweep)
    settings = sweep / "multirun.yaml"
    settings.write_text(settings.read_text().replace("plots: false", "plots: true"))  # the figures are built
    assert report_main([str(sweep), "--no-plots", "-q"]) == 0
    old_png = sweep / "solver_time.png"
    old_png.write_bytes(b"a complete figure of an earlier build")
    before = {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file()}
    marker = tmp_path / "stalled"
    proc = subprocess.Popen([sys.executable, "-c", _STALLED_REPORT, str(sweep), str(marker)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), proc.stderr.read() if proc.poll() is not None else "never reached a figure"
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        with contextlib.suppress(OSError):  # whatever happened, nothing of the report is left (drawing workers)
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert proc.returncode == 130, err
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("iopopt-report: interrupted by SIGINT"), lines
    after = {p for p in sweep.rglob("*") if p.is_file()}
    assert after <= set(before), f"files left: {sorted(map(str, after - set(before)))}"
    for p in after:  # every file is its old version (no figure finished before the stall): none half-written
        assert p.read_bytes() == before[p], p


def test_partial_files_of_killed_writers_are_removed_and_only_theirs(tmp_path):
    from iopopt.results.io import atomic_path, remove_partial_files

    writing = atomic_path(tmp_path / "plans_a.b.png")  # a dotted name, as plan diagrams of some instances have
    tmp = writing.__enter__()
    tmp.write_bytes(b"half")
    other = tmp_path / ".solver_time.999999999-abcdefgh.tmp.png"  # another process's, still writing
    other.write_bytes(b"half")
    import os

    assert remove_partial_files([tmp_path], [os.getpid()]) == [tmp]
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name]


def test_partial_files_of_dead_writers_are_removed_by_the_next_run(tmp_path, monkeypatch):
    """A report SIGKILLed with its workers cleans nothing up: a later one removes what dead writers left
    (their pid no longer runs here) once untouched for STALE_AFTER_S, never a live writer's file, nor one whose
    pid is not of this system."""
    import os
    import subprocess
    import time

    from iopopt.report import plots
    from iopopt.results.io import STALE_AFTER_S, remove_partial_files

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = tmp_path / f".solver_time.{int(dead.stdout)}-abcdefgh.tmp.png"
    live = tmp_path / f".plans.{os.getpid()}-ijklmnop.tmp.png"
    odd = tmp_path / f".plans.{10 ** 30}-qrstuvwx.tmp.png"  # not a pid of this system: kept, no crash
    for p in (gone, live, odd):
        p.write_bytes(b"half")
    assert remove_partial_files([tmp_path]) == []  # fresh: its writer may be alive on another host
    old = time.time() - 2 * STALE_AFTER_S
    for p in (gone, live, odd):
        os.utime(p, (old, old))
    assert remove_partial_files([tmp_path]) == [gone]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, odd.name])
    gone.write_bytes(b"half")
    os.utime(gone, (old, old))
    drawn = []
    monkeypatch.setattr(plots, "_draw", drawn.append)
    plots.draw_all([("timeline", "draw", (tmp_path / "x.png",))], workers=1)  # a figure of that folder
    assert drawn and sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, odd.name])
