"""Sweeps and studies: a grid job gives the records one job per combination gives; progress counts
every finished job once, across processes; `iopopt-report DIR` rebuilds exactly the sweep's own report
and refuses a folder of several sweeps unless told what to do.
"""

from __future__ import annotations

import json
import multiprocessing
import re
import sys

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import iopopt.app
from iopopt.app import progress
from iopopt.app.context import JobContext
from iopopt.app.jobs import run
from iopopt.report.cli import main as report_main
from iopopt.results import INSTANCES_FILE, RESULT_FILE
from iopopt.solvers import CONF_DIR

GRID = {"model": ["tiny_chain", "tiny_residual"], "cluster": ["rpi4_x2", "rpi4_x3"],
        "network": ["ethernet_1g", "wifi_10mbps"], "solver": ["coedge", "greedy_iop", "ilp"]}
SAME = ("instance", "model", "cluster", "network", "solver", "termination", "latency_s", "compute_s", "comm_s",
        "bytes_sent", "messages", "peak_memory_bytes", "per_device", "strategies", "lower_bound_s")


def compose_cfg(*overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose(config_name="config", overrides=list(overrides))


def test_a_grid_job_gives_the_records_of_one_job_per_combination(tmp_path):
    lists = [f"grid.{g}s=[{','.join(v)}]" for g, v in GRID.items()]
    overrides = ("study=grid", *lists, "cluster.split=equal", "save_per_op=false")
    summary = run(compose_cfg(*overrides), JobContext(output_dir=tmp_path / "grid", overrides=overrides))
    grid = [json.loads(x) for x in (tmp_path / "grid" / INSTANCES_FILE).read_text().splitlines()]
    total = 1
    for v in GRID.values():
        total *= len(v)
    assert summary["n_instances"] == len(grid) == total
    # the oracle: each combination as its own single job, composed by Hydra as a sweep would compose it
    for rec in grid:
        choice = rec["choices"]
        own = [f"{g}={choice[g]}" for g in GRID] + ["cluster.split=equal", "save_per_op=false"]
        out = tmp_path / "single" / "_".join(choice.values())
        single = run(compose_cfg(*own), JobContext(output_dir=out, choices=choice))
        for key in SAME:
            assert rec[key] == single[key], (key, choice)
    assert [r["choices"]["solver"] for r in grid[:3]] == GRID["solver"]  # solvers vary fastest, as in a sweep


GROUP_CASES = {
    "cluster-keys": ("cluster", ["rpi4_x2", "hetero_4"], ["experiment=paper", "cluster.split=equal",
                                                         "cluster.devices.0.flops_per_s=1e9"]),
    "solver-add-and-force": ("solver", ["ilp", "ilp_pairs"], ["solver.time_limit_s=5", "++solver.msg=true",
                                                             "+solver.extra=1"]),
    "experiment-sets-model-keys": ("model", ["synthetic"], ["experiment=scaling", "model.seed=3"]),
    "delete-a-key": ("network", ["wifi_10mbps", "ethernet_1g"], ["network.latency_s=0.01", "~network.name"]),
}


@pytest.mark.parametrize("case", sorted(GROUP_CASES))
def test_grid_group_options_are_what_hydra_composes(case):
    from omegaconf import OmegaConf

    from iopopt.app.instances import _composed, group_configs

    group, options, overrides = GROUP_CASES[case]
    built = group_configs(group, options, overrides)
    for option in options:  # the oracle: Hydra composing the whole config with group=option
        hydra = _composed(group, option, overrides)
        assert OmegaConf.to_container(built[option], resolve=True) == OmegaConf.to_container(hydra, resolve=True)


def test_grid_options_are_checked(tmp_path):
    from iopopt.app.configs import ConfigError

    with pytest.raises(ConfigError) as info:
        run(compose_cfg("study=grid", "grid.clusters=[rpi4_x2,rpi4_x9]"), JobContext(output_dir=tmp_path))
    assert "unknown option cluster=rpi4_x9 in grid" in str(info.value) and "rpi4_x2" in str(info.value)


def _finish_jobs(counter: str, n: int, out) -> None:
    import os

    os.environ[progress.SWEEP_COUNTER_ENV] = counter
    os.environ[progress.SWEEP_JOBS_ENV] = "40"
    os.environ[progress.SWEEP_START_ENV] = "0"
    for job in range(n):
        out.put(progress.sweep_tick(job)[0])


def test_parallel_jobs_count_each_finished_job_once(tmp_path, monkeypatch):
    progress.start_sweep(tmp_path, 40)
    counter = str(tmp_path / progress.COUNTER_FILE)
    queue = multiprocessing.get_context("fork").Queue()
    procs = [multiprocessing.get_context("fork").Process(target=_finish_jobs, args=(counter, 20, queue))
             for _ in range(2)]
    for p in procs:
        p.start()
    prefixes = [queue.get(timeout=60) for _ in range(40)]
    for p in procs:
        p.join(timeout=60)
    assert sorted(int(re.match(r"\[(\d+)/40\] ", x).group(1)) for x in prefixes) == list(range(1, 41))
    assert progress.end_sweep() is not None and not (tmp_path / progress.COUNTER_FILE).exists()


def test_eta_from_the_mean_time_per_job():
    assert progress.eta_text(10, 40, 20.0) == ", ETA 1:00"  # 2 s per job, 30 to go
    assert progress.eta_text(40, 40, 80.0) == ""
    assert progress.clock(3725) == "1:02:05"


# -- the report, rebuilt ------------------------------------------------------------------------------


def _sweep(tmp_path, monkeypatch, name: str, *extra: str):
    tmp_path.mkdir(exist_ok=True)
    sweep = tmp_path / name
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [
        "iopopt", "-m", "model=tiny_chain,tiny_residual", "solver=coedge,greedy_iop,ilp", "cluster=rpi4_x2",
        "network=ethernet_1g,wifi_10mbps", f"hydra.sweep.dir={sweep}", *extra,
    ])
    GlobalHydra.instance().clear()
    try:
        iopopt.app.main()
    finally:
        GlobalHydra.instance().clear()
    return sweep


def _snapshot(root) -> dict[str, bytes]:
    files = ["summary.csv", "summary.md"] + sorted(str(p.relative_to(root)) for p in root.rglob("*.png"))
    return {f: (root / f).read_bytes() for f in files}


def test_report_rebuild_equals_the_sweeps_own(tmp_path, monkeypatch, capsys):
    sweep = _sweep(tmp_path, monkeypatch, "sweep", "hydra.callbacks.report.max_timelines=3",
                   "hydra.callbacks.report.max_plans=2")
    own = _snapshot(sweep)
    assert len([f for f in own if f.startswith("timelines/")]) == 3  # the sweep's own settings
    assert len([f for f in own if f.startswith("plans/")]) == 2
    out = capsys.readouterr().out
    job_lines = [ln for ln in out.splitlines() if re.search(r"\] \[\d+/12\] ", ln)]
    assert len(job_lines) == 12 and "ETA" in job_lines[0] and "ETA" not in job_lines[-1]
    # stale files of an earlier build go; deleted ones come back; the rebuild reads the sweep's settings
    (sweep / "latency_vs_bandwidth.png").write_bytes(b"old")
    (sweep / "timelines" / "timeline_99_old.png").write_bytes(b"old")
    (sweep / "peak_memory.png").unlink()
    assert report_main([str(sweep), "-q"]) == 0
    assert _snapshot(sweep) == own
    df = pd.read_csv(sweep / "summary.csv")
    assert len(df) == 12 and set(df["solver"]) == {"coedge", "greedy_iop", "ilp"}


def test_report_refuses_a_folder_of_several_sweeps(tmp_path, monkeypatch, capsys):
    first = _sweep(tmp_path / "runs", monkeypatch, "a", "hydra.callbacks.report.plots=false")
    second = _sweep(tmp_path / "runs", monkeypatch, "b", "hydra.callbacks.report.plots=false", "solver=coedge")
    parent = tmp_path / "runs"
    capsys.readouterr()
    assert report_main([str(parent), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds 2 sweeps (a, b)" in err[0] and "--all" in err[0] and "--merge" in err[0]
    assert not (parent / "summary.csv").exists()
    assert report_main([str(parent), "--merge", "-q", "--no-plots"]) == 0
    merged = pd.read_csv(parent / "summary.csv")
    assert len(merged) == len(pd.read_csv(first / "summary.csv")) + len(pd.read_csv(second / "summary.csv"))
    (first / "summary.csv").unlink()
    assert report_main([str(parent), "--all", "-q", "--no-plots"]) == 0
    assert len(pd.read_csv(first / "summary.csv")) == 12
    assert len(pd.read_csv(second / "summary.csv")) == len(list(second.glob(f"*/{RESULT_FILE}")))
