"""Sweeps never share a folder by accident, can be resumed, and fail with one line on a folder they cannot write."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

import iopopt.app
from iopopt.app.outdirs import LOCK_FILE, SweepDirBusy, claim_sweep_dir, release_all

# Hydra's ${now:...} frozen, so that two sweeps "start in the same second" every time
_FROZEN_NOW = """
import sys, datetime
import hydra.core.utils  # its `now` resolver reads hydra.core.utils.datetime.now()

class Frozen(datetime.datetime):
    @classmethod
    def now(cls, tz=None):
        return cls(2026, 1, 2, 3, 4, 5)

hydra.core.utils.datetime = Frozen
from iopopt.app import main
sys.argv[0] = "iopopt"
main()
"""
_STAMP = "2026-01-02_03-04-05"


def _sweep_cmd(*extra: str) -> list[str]:
    return [sys.executable, "-c", _FROZEN_NOW, "-m", "model=tiny_chain", "cluster=rpi4_x2",
            "hydra.callbacks.report.plots=false", *extra]


def test_two_sweeps_started_in_the_same_second_keep_all_their_results(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    procs = [subprocess.Popen(_sweep_cmd(f"solver={solvers}"), cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for solvers in ("greedy_iop,coedge", "oc,single")]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    root = tmp_path / "outputs" / "multirun"
    folders = sorted(p.name for p in root.iterdir())
    assert folders == [_STAMP, f"{_STAMP}-2"], folders
    solvers = set()
    for folder in folders:
        recs = [json.loads(p.read_text()) for p in sorted((root / folder).glob("*/result.json"))]
        assert len(recs) == 2 and all(r["termination"] != "error" for r in recs)
        mine = {r["solver"] for r in recs}
        assert mine in ({"greedy_iop", "coedge"}, {"oc", "single"})  # one sweep's jobs, none of the other's
        solvers |= mine
        rows = (root / folder / "summary.csv").read_text().splitlines()
        assert len(rows) == 3  # header and its own two jobs
    assert solvers == {"greedy_iop", "coedge", "oc", "single"}


def test_an_explicit_sweep_folder_owned_by_a_live_sweep_is_refused(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    (folder / "0").mkdir()
    (folder / "0" / "result.json").write_text('{"kept": true}\n')
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT)  # this process plays the live sweep
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, b"4242")
    try:
        out = subprocess.run(_sweep_cmd("solver=greedy_iop,coedge", f"hydra.sweep.dir={folder}"), cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    finally:
        os.close(fd)
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert f"hydra.sweep.dir={folder}" in lines[0] and "pid 4242" in lines[0], lines
    assert (folder / "0" / "result.json").read_text() == '{"kept": true}\n'  # the owner's results untouched
    assert not (folder / "1").exists()


def test_claim_takes_the_next_free_default_folder(tmp_path):
    base = tmp_path / "stamp"
    try:
        assert claim_sweep_dir(base, explicit=False) == base
        assert claim_sweep_dir(base, explicit=False) == base  # this process owns it already
        # another process's live sweep: a child holding the lock of stamp-2
        child = subprocess.Popen([sys.executable, "-c", (
            "import sys; from iopopt.app.outdirs import claim_sweep_dir; from pathlib import Path;"
            f"print(claim_sweep_dir(Path({str(base)!r}), explicit=False), flush=True); sys.stdin.read()")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().strip() == f"{base}-2"  # stamp is ours (live): it took -2
            with pytest.raises(SweepDirBusy, match="in use by another running sweep"):
                claim_sweep_dir(tmp_path / "stamp-2", explicit=True)
        finally:
            child.communicate("", timeout=30)
        # its sweep ended: an explicit folder may be used again; a default one that was used is not
        assert claim_sweep_dir(tmp_path / "stamp-2", explicit=True) == tmp_path / "stamp-2"
        release_all()
        assert claim_sweep_dir(base, explicit=False) == tmp_path / "stamp-3"
    finally:
        release_all()


def _run_sweep(tmp_path, monkeypatch, *args: str):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["iopopt", "-m", *args])
    GlobalHydra.instance().clear()
    try:
        iopopt.app.main()
    finally:
        GlobalHydra.instance().clear()


def test_resume_keeps_finished_jobs_and_reruns_the_rest(tmp_path, monkeypatch, capsys):
    sweep = tmp_path / "sweep"
    args = ["model=tiny_chain", "cluster=rpi4_x2", "solver=greedy_iop,coedge,oc", f"hydra.sweep.dir={sweep}",
            "hydra.callbacks.report.plots=false"]
    _run_sweep(tmp_path, monkeypatch, *args)
    first = {n: (sweep / str(n) / "result.json").read_text() for n in range(3)}
    (sweep / "1" / "result.json").write_text(first[1][: len(first[1]) // 2])  # torn by a crash
    (sweep / "2" / "result.json").unlink()  # never finished
    capsys.readouterr()
    _run_sweep(tmp_path, monkeypatch, *args, "resume=true")
    out = capsys.readouterr().out
    assert (sweep / "0" / "result.json").read_text() == first[0]  # kept as it was: not run again
    assert "job 0: kept its finished result.json (resume=true)" in out
    assert "job 1: kept" not in out and "job 2: kept" not in out
    for n in (1, 2):
        rec = json.loads((sweep / str(n) / "result.json").read_text())
        old = json.loads(first[n])
        assert rec["solver"] == old["solver"] and rec["latency_s"] == pytest.approx(old["latency_s"])
        assert "resume=true" in [o.lower() for o in rec["overrides"]]  # run again, by this sweep
    assert len((sweep / "summary.csv").read_text().splitlines()) == 4


def test_resume_reruns_a_record_of_another_job(tmp_path):
    from iopopt.app.resume import finished_record

    good = tmp_path / "good"
    good.mkdir()
    src = {"overrides": ["solver=coedge", "model=tiny_chain"], "termination": "completed", "latency_s": 0.01,
           "error": None}
    from iopopt.results.records import RESULT_KEYS

    rec = {k: None for k in RESULT_KEYS} | src
    (good / "result.json").write_text(json.dumps(rec))
    assert finished_record(good, ["model=tiny_chain", "solver=coedge", "resume=true"]) == rec
    assert finished_record(good, ["model=tiny_chain", "solver=oc", "resume=true"]) is None  # another job's
    for bad in ({"termination": "error"}, {"latency_s": "fast"}, {"latency_s": float("nan")}, {"latency_s": -1}):
        (good / "result.json").write_text(json.dumps(rec | bad))
        assert finished_record(good, ["model=tiny_chain", "solver=coedge"]) is None, bad
    (good / "result.json").write_text(json.dumps({"foo": 1}))
    assert finished_record(good, ["model=tiny_chain", "solver=coedge"]) is None


def _mount_tmpfs(where: Path, options: str) -> bool:
    where.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                          capture_output=True).returncode == 0


@pytest.mark.parametrize("kind", ["read-only", "full"])
def test_unwritable_output_folder_is_one_line(tmp_path, kind):
    mnt = tmp_path / "mnt"
    if not _mount_tmpfs(mnt, "ro" if kind == "read-only" else "size=16k"):
        pytest.skip("needs permission to mount a tmpfs")
    try:
        if kind == "full":
            with open(mnt / "fill", "wb") as f, __import__("contextlib").suppress(OSError):
                f.write(b"\0" * (64 * 1024))
        out = subprocess.run([str(Path(sys.executable).parent / "iopopt"), "model=tiny_chain",
                              f"hydra.run.dir={mnt / 'run'}"], cwd=tmp_path, capture_output=True, text=True,
                             timeout=300)
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert out.returncode == 1 and len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    errno_name = "EROFS" if kind == "read-only" else "ENOSPC"
    assert lines[0].startswith("iopopt: cannot write the run folder") and errno_name in lines[0], lines
