"""Bad and extreme values: one bad job of a sweep is an error record and the others run; figures outside a
physically meaningful range are refused with one line naming the value and the range."""

from __future__ import annotations

import json
import math
import multiprocessing
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import iopopt.app
from iopopt.app.configs import ConfigError, build_cluster
from iopopt.app.logs import ms_text
from iopopt.app.targets import build_network
from iopopt.model.cluster import Device
from iopopt.model.network import SharedNetwork, SwitchedNetwork
from iopopt.results import RESULT_FILE
from iopopt.solvers import CONF_DIR


def compose_cfg(*overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose(config_name="config", overrides=list(overrides))


def _multirun(tmp_path, monkeypatch, *args: str):
    sweep = tmp_path / "sweep"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["iopopt", "-m", "model=tiny_chain", "solver=coedge", f"hydra.sweep.dir={sweep}",
                                      "hydra.callbacks.report.plots=false", *args])
    GlobalHydra.instance().clear()
    try:
        iopopt.app.main()
    finally:
        GlobalHydra.instance().clear()
        # joblib keeps its loky workers for reuse: end them, so no later test of this process sees them
        from joblib.externals.loky import get_reusable_executor

        get_reusable_executor().shutdown(wait=True)
    assert multiprocessing.active_children() == []
    return [json.loads((sweep / str(j) / RESULT_FILE).read_text()) for j in range(3)]


@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]],
                         ids=["basic", "joblib"])
def test_one_bad_value_fails_its_own_job_only(tmp_path, monkeypatch, capfd, launcher):
    recs = _multirun(tmp_path, monkeypatch, "network.bandwidth_bytes_per_s=1e6,0,1e7", *launcher)
    assert [r["termination"] for r in recs] == ["completed", "error", "completed"]
    assert recs[1]["error"] == "configuration error: network.bandwidth_bytes_per_s must be a number > 0, got 0"
    assert recs[0]["latency_s"] > recs[2]["latency_s"] > 0  # the good jobs ran: slower link, slower plan
    assert recs[1]["model"] == "tiny_chain" and recs[1]["solver"] == "coedge"
    out, err = capfd.readouterr()
    errors = [line for line in (out + err).splitlines() if "configuration error" in line]
    assert len(errors) == 1 and "[ERROR]" in errors[0], out + err


def test_a_single_run_with_a_bad_value_still_exits_2_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "iopopt", "model=tiny_chain", "network.bandwidth_bytes_per_s=1e-310",
                           f"hydra.run.dir={tmp_path}"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert err == ["iopopt: configuration error: network.bandwidth_bytes_per_s=1e-310 is outside the physically "
                   "meaningful range [1, 1e+13] bytes/s"]


@pytest.mark.parametrize("override,named", [
    ("network.bandwidth_bytes_per_s=1e-310", "network.bandwidth_bytes_per_s=1e-310 "),
    ("network.bandwidth_bytes_per_s=1e20", "network.bandwidth_bytes_per_s=1e+20 "),
    ("network.latency_s=1e300", "network.latency_s=1e+300 "),
    ("+network.message_overhead_s=1e9", "network.message_overhead_s=1000000000.0 "),
    ("cluster.devices.0.flops_per_s=inf", "cluster.devices[0].flops_per_s=inf "),
    ("cluster.devices.0.flops_per_s=1e-300", "cluster.devices[0].flops_per_s=1e-300 "),
    ("cluster.devices.1.op_overhead_s=1e9", "cluster.devices[1].op_overhead_s=1000000000.0 "),
    ("+cluster.devices.0.kind_flops_per_s.linear=1e30", "cluster.devices[0].kind_flops_per_s.linear=1e+30 "),
])
def test_values_outside_a_physical_range_are_refused_in_one_line(override, named):
    cfg = compose_cfg(override)
    with pytest.raises(ConfigError) as err:
        build_network(cfg.network)
        build_cluster(cfg.cluster)
    text = str(err.value)
    assert text.startswith(named) and "outside the physically meaningful range [" in text and "\n" not in text


def test_the_library_refuses_them_too():
    with pytest.raises(ValueError, match=r"bandwidth_bytes_per_s=1e-310 is outside .* \[1, 1e\+13\] bytes/s"):
        SharedNetwork(1e-310)
    with pytest.raises(ValueError, match=r"device_bandwidths\[1\]=1e\+20 is outside"):
        SwitchedNetwork(1e6, device_bandwidths=(1e6, 1e20))
    with pytest.raises(ValueError, match=r"Device 'a': flops_per_s=1e\+30 is outside"):
        Device("a", 1e30)
    assert Device("a", 1e9, memory_bytes=math.inf).memory_bytes == math.inf  # no limit is fine
    # the edges of the ranges are accepted
    SharedNetwork(1.0, latency_s=3600.0)
    Device("b", 1e3, op_overhead_s=0.0)


def test_latencies_print_with_a_few_digits():
    assert ms_text(1e300) == "1e+303 ms"
    assert ms_text(0.0412) == "41.2 ms" and ms_text(2e-6) == "0.002 ms"
    assert len(ms_text(3600.0 * 1e4)) < 12


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_result_files_respect_the_umask(tmp_path, umask):
    import os
    import stat

    from iopopt.results import write_json_atomic

    old = os.umask(umask)
    try:
        path = write_json_atomic(tmp_path / "result.json", {"a": 1})
        (tmp_path / "plain.txt").write_text("x")  # what a plain open() gives, the oracle
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == 0o666 & ~umask


def test_a_changed_device_list_gets_a_name_of_its_own(tmp_path):
    from iopopt.app.context import JobContext
    from iopopt.app.jobs import run

    def cluster_of(i: int, *overrides: str) -> str:
        cfg = compose_cfg("model=tiny_chain", "solver=single", "cluster=rpi4_x2", *overrides)
        ctx = JobContext(output_dir=tmp_path / str(i), choices={"cluster": "rpi4_x2"}, overrides=overrides)
        return run(cfg, ctx)["cluster"]

    preset = cluster_of(0)
    faster = cluster_of(1, "cluster.devices.0.flops_per_s=2e10")
    slower = cluster_of(2, "cluster.devices.0.flops_per_s=1e9")
    again = cluster_of(3, "cluster.devices.0.flops_per_s=1e9")
    named = cluster_of(4, "cluster.devices.0.flops_per_s=1e9", "cluster.name=my_boards")
    assert preset == "rpi4_x2" and named == "my_boards"
    assert faster.startswith("rpi4_x2~") and slower.startswith("rpi4_x2~") and faster != slower == again
    assert cluster_of(5, "cluster.split=equal") == "rpi4_x2"  # the devices themselves unchanged
