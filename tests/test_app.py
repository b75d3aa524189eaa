"""Tests of the Hydra application, the result records and the sweep report.

Every config of every group is composed with Hydra's compose API and turned
into real objects; runs go through the same ``run`` function the CLI calls;
the CLI itself is run in subprocesses for the exit codes and messages of bad
configurations; one small multirun runs in-process, and the slow tests run
whole sweeps from the console script.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import _torchvision
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

import iopopt
import iopopt.app.jobs
from iopopt.app import configs, instances, targets
from iopopt.app import overrides as override_check
from iopopt.app.context import JobContext
from iopopt.app.jobs import run
from iopopt.model.cluster import Cluster
from iopopt.network import NetworkModel
from iopopt.results import (
    INSTANCES_FILE,
    RESULT_FILE,
    RESULT_KEYS,
    VERIFY_KEYS,
    write_json_atomic,
    write_jsonl_atomic,
)
from iopopt.solvers import CONF_DIR, Solver

REPO = CONF_DIR.parent
PYTHON = sys.executable
GROUPS = ("model", "cluster", "network", "solver", "experiment")


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def compose_cfg(*overrides: str, hydra_cfg: bool = False):
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra_cfg)


def run_in(tmp_path: Path, *overrides: str, choices: dict | None = None) -> dict:
    cfg = compose_cfg(*overrides)
    rec = run(cfg, JobContext(output_dir=tmp_path, choices=choices or {}))
    on_disk = json.loads((tmp_path / RESULT_FILE).read_text())
    assert on_disk == json.loads(json.dumps(rec))
    return on_disk


# -- every config composes and instantiates -------------------------------------------------


def test_every_group_has_options():
    for group in GROUPS:
        assert options(group), f"conf/{group}/ is empty"
    assert {"rpi4_x2", "rpi4_x3", "rpi4_x4", "rpi4_x6", "rpi4_x8", "hetero_4"} <= set(options("cluster"))
    assert {"wifi_10mbps", "wifi_50mbps", "wifi_100mbps", "ethernet_1g"} <= set(options("network"))
    assert set(iopopt.zoo.names()) | {"custom", "synthetic"} <= set(options("model"))
    assert {"paper", "gap", "scaling", "hetero"} <= set(options("experiment"))


@pytest.mark.parametrize("name", [n for n in options("model") if n != "custom"])
def test_every_model_config_builds_and_traces(name):
    if name == "torchvision":
        _torchvision.require()  # (this environment's torchvision imports only with the test-only workaround)
    cfg = compose_cfg(f"model={name}")
    spec = configs.model_spec(cfg.model)
    module, shape = configs.build_model(spec)
    graph = iopopt.trace(module, shape)
    assert len(graph) > 3 and graph.total_flops > 0


def test_torchvision_model_runs_and_verifies(tmp_path):
    _torchvision.require()
    rec = run_in(tmp_path, "model=torchvision", "model.name=mobilenet_v3_small", "model.input_shape=[1,3,48,64]",
                 "solver=greedy_iop", "verify=true")
    assert rec["model"] == "mobilenet_v3_small" and rec["termination"] == "completed"
    assert rec["verify"]["passed"]


def test_torchvision_model_without_torchvision_exits_2_with_one_line(tmp_path):
    fake = tmp_path / "site" / "torchvision"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no torchvision in this test')\n")
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env["PYTHONPATH"] = str(fake.parent)
    proc = subprocess.run([PYTHON, "-m", "iopopt", "model=torchvision"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env=env)
    assert_cli_config_error(proc, ["model=torchvision needs torchvision", "no torchvision in this test"])


def test_custom_model_config_builds():
    cfg = compose_cfg(
        "model=custom", "model.target=iopopt.zoo.TinyChain", "+model.kwargs.num_classes=10",
        "model.input_shape=[1,3,32,32]",
    )
    module, shape = configs.build_model(configs.model_spec(cfg.model))
    assert shape == (1, 3, 32, 32)
    assert iopopt.trace(module, shape)["output"].out_shape == (1, 10)


@pytest.mark.parametrize("name", [n for n in options("cluster") if n != "profiled"])  # profiled: test_profiled.py
def test_every_cluster_config_instantiates(name):
    cluster = configs.build_cluster(compose_cfg(f"cluster={name}").cluster)
    assert isinstance(cluster, Cluster) and cluster.name == name
    text = (CONF_DIR / "cluster" / f"{name}.yaml").read_text()
    assert "ASSUMPTION" in text, "device presets must say their numbers are assumptions"


@pytest.mark.parametrize("name", [n for n in options("network") if n != "profiled"])  # profiled: test_profiled.py
def test_every_network_config_instantiates(name):
    net = targets.build_network(compose_cfg(f"network={name}").network)
    assert isinstance(net, NetworkModel) and net.bandwidth_bytes_per_s > 0
    assert "ASSUMPTION" in (CONF_DIR / "network" / f"{name}.yaml").read_text()


@pytest.mark.parametrize("name", options("solver"))
def test_every_solver_config_instantiates(name):
    solver = targets.build_solver(compose_cfg(f"solver={name}").solver)
    assert isinstance(solver, Solver)


@pytest.mark.parametrize("name", options("experiment"))
def test_every_experiment_composes_with_a_sweep(name):
    first = (CONF_DIR / "experiment" / f"{name}.yaml").read_text().splitlines()[0]
    assert first == "# @package _global_"
    cfg = compose_cfg(f"experiment={name}", hydra_cfg=True)
    params = cfg.hydra.sweeper.params
    if name in ("fidelity", "paper_measured"):  # one job that measures every plan itself
        assert cfg.study == name and set(cfg.fidelity.solvers) <= set(options("solver"))
        configs.check_top_level(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]))
        return
    if cfg.study == "grid":  # one job over every combination it lists
        for key, group in instances.GRID_GROUPS.items():
            assert set(cfg.grid[key]) <= set(options(group)), f"{name}: grid.{key} names a missing option"
        configs.check_top_level(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]))
        return
    assert params, f"experiment {name} sweeps nothing"
    for group in ("model", "cluster", "network", "solver"):
        if group in params:
            for option in str(params[group]).split(","):
                assert option in options(group), f"{name}: {group}={option} does not exist"
    configs.check_top_level(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]))


def test_slurm_launcher_preset_composes():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="optional extra .[slurm] is not installed")
    cfg = compose_cfg("experiment=gap", "hydra/launcher=slurm", hydra_cfg=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.launcher.cpus_per_task >= 1 and cfg.hydra.launcher.timeout_min > 0


def test_paper_experiment_solves_the_papers_grid():
    cfg = compose_cfg("experiment=paper", hydra_cfg=True)
    assert cfg.study == "grid" and not cfg.hydra.sweeper.params  # one job, not a sweep of 144
    assert set(cfg.grid.models) == {"alexnet", "vgg16", "resnet18"}
    assert set(cfg.grid.clusters) == {"rpi4_x2", "rpi4_x3", "rpi4_x4"}
    assert set(cfg.grid.networks) == {"ethernet_1g", "wifi_100mbps"}
    assert set(cfg.grid.solvers) == {
        "single", "offload", "deepthings", "coedge", "oc", "greedy_iop", "ilp_pairs", "ilp"
    }
    assert cfg.cluster.get("fused_depth", 0) == 0  # ilp in the default space; fused stacks are opt-in


def test_gap_experiment_has_enough_synthetic_instances():
    cfg = compose_cfg("experiment=gap", hydra_cfg=True)
    specs = instances.gap_instances(cfg.gap)
    synthetic = [s for s in specs if s.source == "synthetic"]
    p = cfg.hydra.sweeper.params
    combos = len(p.cluster.split(",")) * len(p.network.split(","))
    assert len(synthetic) * combos >= 200
    assert set(p.solver.split(",")) >= {"greedy_iop", "ilp"}
    # every job of the sweep sees the same instances, so the report can pair them
    assert [s.key() for s in instances.gap_instances(cfg.gap)] == [s.key() for s in specs]
    # single and coedge run beside the solvers, so the report can say where cooperation does not pay
    assert {"single", "coedge"} <= set(p.solver.split(","))


# -- result.json -------------------------------------------------------------------------


def test_result_json_has_the_design_keys(tmp_path):
    rec = run_in(tmp_path, "model=tiny_residual", "solver=greedy_iop", "network=ethernet_1g",
                 choices={"solver": "greedy_iop"})
    assert set(RESULT_KEYS) <= set(rec)
    assert rec["model"] == "tiny_residual" and rec["cluster"] == "rpi4_x4" and rec["network"] == "ethernet_1g"
    assert rec["solver"] == "greedy_iop" and rec["termination"] == "completed" and rec["error"] is None
    assert rec["verify"] is None
    assert math.isclose(rec["latency_s"], rec["compute_s"] + rec["comm_s"])
    assert math.isclose(rec["objective"], rec["latency_s"]) and rec["objective_name"] == "latency"
    assert rec["peak_memory_bytes"] == max(d["peak_bytes"] for d in rec["per_device"])
    for d in rec["per_device"]:  # rpi4_x4 has power figures: each device's energy and its times
        assert set(d) == {"name", "weights_bytes", "activation_peak_bytes", "peak_bytes",
                          "energy_j", "busy_s", "tx_s", "rx_s", "idle_s"}
        assert d["peak_bytes"] == d["weights_bytes"] + d["activation_peak_bytes"]
        assert math.isclose(d["busy_s"] + d["tx_s"] + d["rx_s"] + d["idle_s"], rec["latency_s"], rel_tol=1e-12)
    assert math.isclose(sum(d["energy_j"] for d in rec["per_device"]), rec["energy_j"], rel_tol=1e-12)
    assert len(rec["per_device"]) == rec["k"] == 4
    assert rec["lower_bound_s"] <= rec["latency_s"]
    assert len(rec["strategies"]) == rec["n_nodes"]
    # the per-op timeline adds up to the latency, independently of the cost report
    total = sum(op["comm_s"] + op["compute_s"] for op in rec["per_op"])
    assert math.isclose(total, rec["latency_s"], rel_tol=1e-12)
    for op in rec["per_op"]:
        assert math.isclose(op["compute_s"], max(op["device_compute_s"]), rel_tol=1e-12, abs_tol=1e-15)
    # instance key: same for another solver on the same instance, different for another network
    other = run_in(tmp_path / "b", "model=tiny_residual", "solver=coedge", "network=ethernet_1g")
    assert other["instance"] == rec["instance"] and other["solver"] == "coedge"
    assert run_in(tmp_path / "c", "model=tiny_residual", "network=wifi_10mbps")["instance"] != rec["instance"]


def test_a_networks_message_overhead_is_recorded_keys_its_instance_and_costs_each_message(tmp_path):
    base = run_in(tmp_path / "a", "model=tiny_residual", "solver=coedge", "network=ethernet_1g")
    rec = run_in(tmp_path / "b", "model=tiny_residual", "solver=coedge", "network=ethernet_1g",
                 "+network.message_overhead_s=1e-3")
    assert (base["network_message_overhead_s"], rec["network_message_overhead_s"]) == (0.0, 1e-3)
    assert rec["instance"] != base["instance"] and rec["strategies"] == base["strategies"]
    # the same plan: each phase grows by 1 ms times its busiest device's messages, between 1/k and all of them
    extra, n, k = rec["comm_s"] - base["comm_s"], base["messages"], base["k"]
    assert n > 0 and 1e-3 * n / k - 1e-12 <= extra <= 1e-3 * n + 1e-12, (extra, n, k)


def test_result_json_with_verify(tmp_path):
    rec = run_in(tmp_path, "model=tiny_chain", "solver=greedy_iop", "verify=true")
    assert set(rec["verify"]) == set(VERIFY_KEYS)
    assert rec["verify"]["passed"] is True and rec["verify"]["messages_match"] is True
    assert rec["verify"]["memory_match"] is True and rec["verify"]["max_abs_err"] < 1e-9


def test_solver_error_is_recorded_not_raised(tmp_path):
    rec = run_in(tmp_path, "model=alexnet", "solver=brute", choices={"solver": "brute"})
    assert rec["termination"] == "error" and "max_plans" in rec["error"]
    assert rec["solver"] == "brute" and rec["latency_s"] is None
    assert set(RESULT_KEYS) <= set(rec) and rec["lower_bound_s"] > 0


def test_verification_error_is_recorded_with_the_figures(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("executor exploded")

    monkeypatch.setattr(iopopt.app.jobs, "_verify", broken)
    rec = run_in(tmp_path, "model=tiny_chain", "solver=coedge", "verify=true")
    assert rec["termination"] == "error" and rec["error"] == "RuntimeError: executor exploded"
    assert rec["latency_s"] > 0 and rec["per_device"]  # what was computed before the failure is kept


def test_trace_error_is_recorded(tmp_path):
    # a module iopopt cannot partition: group norm (normalises over channels and space at once)
    rec = run_in(tmp_path, "model=custom", "model.target=torch.nn.GroupNorm",
                 "+model.kwargs={num_groups: 2, num_channels: 4}", "model.input_shape=[1,4,8,8]")
    assert rec["termination"] == "error" and "UnsupportedOperator" in rec["error"]


def test_gap_study_writes_one_record_per_instance(tmp_path):
    cfg = compose_cfg("study=gap", "solver=greedy_iop", "gap.zoo=[tiny_chain]", "gap.synthetic.count=3")
    summary = run(cfg, JobContext(output_dir=tmp_path, choices={"solver": "greedy_iop"}))
    lines = (tmp_path / INSTANCES_FILE).read_text().splitlines()
    records = [json.loads(x) for x in lines]
    assert len(records) == 4 == summary["n_instances"]
    assert records[0]["model"] == "tiny_chain"
    assert all(set(RESULT_KEYS) <= set(r) and r["solver"] == "greedy_iop" for r in records)
    assert len({r["instance"] for r in records}) == 4
    assert json.loads((tmp_path / RESULT_FILE).read_text())["instances_file"] == INSTANCES_FILE


# -- atomic writes -----------------------------------------------------------------------------


def test_write_json_atomic_replaces_whole_file_and_cleans_up(tmp_path, monkeypatch):
    path = tmp_path / "result.json"
    write_json_atomic(path, {"a": 1, "nan": float("nan"), "inf": float("inf"), "t": (1, 2)})
    assert json.loads(path.read_text()) == {"a": 1, "nan": None, "inf": None, "t": [1, 2]}

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError):
        write_json_atomic(path, {"a": 2})
    assert json.loads(path.read_text())["a"] == 1  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]  # no temporary left behind


def test_write_jsonl_atomic(tmp_path):
    path = write_jsonl_atomic(tmp_path / "x.jsonl", [{"a": 1}, {"b": float("nan")}])
    assert [json.loads(x) for x in path.read_text().splitlines()] == [{"a": 1}, {"b": None}]


# -- bad configurations ------------------------------------------------------------------


BAD_CONFIGS = {
    "misspelt-model-key": (["model=synthetic", "+model.n_layer=3"], ["model.n_layer", "valid keys", "n_layers"]),
    "misspelt-top-key": (["+verfy=true"], ["config.verfy", "valid keys", "verify"]),
    "misspelt-device-key": (["+cluster.devices.0.flops=1"], ["cluster.devices[0].flops", "flops_per_s"]),
    "misspelt-solver-key": (["solver=greedy_iop", "+solver.recompte=false"], ["solver.recompte", "recompute"]),
    "zero-bandwidth": (["network.bandwidth_bytes_per_s=0"], ["network.bandwidth_bytes_per_s", "> 0", "got 0"]),
    "negative-bandwidth": (["network=ethernet_1g", "network.bandwidth_bytes_per_s=-5e6"],
                           ["network.bandwidth_bytes_per_s", "-5000000"]),
    "target-not-importable": (["model=custom", "model.target=nosuch_pkg.models.net"],
                              ["model.target", "nosuch_pkg.models.net", "does not import"]),
    "target-missing-attribute": (["model=custom", "model.target=iopopt.zoo.NoSuchNet"],
                                 ["iopopt.zoo.NoSuchNet", "no attribute"]),
    "target-not-module": (["model=custom", "model.target=builtins.dict"],
                          ["builtins.dict", "returned dict", "nn.Module"]),
    "target-unset": (["model=custom"], ["model.target", "required"]),
    "bad-split": (["cluster.split=fair"], ["cluster.split", "proportional", "equal", "fair"]),
    "bad-study": (["study=gapp"], ["study", "single", "gap", "gapp"]),
    "bad-zoo-name": (["model.name=alexnett"], ["alexnett", "alexnet", "vgg16"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_raises_one_clear_message(tmp_path, case):
    overrides, needles = BAD_CONFIGS[case]
    with pytest.raises(configs.ConfigError) as info:
        run(compose_cfg(*overrides), JobContext(output_dir=tmp_path))
    msg = str(info.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, (needle, msg)
    assert not (tmp_path / RESULT_FILE).exists()


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run(
        [PYTHON, "-m", "iopopt", *args], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env
    )


def assert_cli_config_error(proc: subprocess.CompletedProcess, needles: list[str]) -> None:
    """Exit status 2 and one stderr line, ``iopopt: configuration error: ...``, holding every needle."""
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("iopopt: configuration error:")
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.parametrize(
    "case", ["misspelt-model-key", "negative-bandwidth", "target-not-importable", "target-not-module"]
)
def test_bad_config_cli_exits_2_with_one_line(tmp_path, case):
    overrides, needles = BAD_CONFIGS[case]
    assert_cli_config_error(cli(tmp_path, *overrides), needles)


CLI_BAD_OVERRIDES = {
    "unknown-option": (["model=alexnett"], ["unknown option model=alexnett", "valid options", "alexnet, custom"]),
    "misspelt-key-without-plus": (["solver.tim_limit=3"],
                                  ["unknown key solver.tim_limit (value 3)", "valid keys", "recompute"]),
    "bad-cluster-host": (["cluster.host=9"], ["cluster.host", "got 9", "rpi0"]),
    "bad-solver-setting": (["solver=ilp", "solver.time_limit_s=0"], ["time_limit_s must be positive", "got 0"]),
    "bad-solver-choice": (["solver.base=rows"], ["unknown base 'rows'", "valid: ['coedge', 'oc']"]),
}


@pytest.mark.parametrize("case", sorted(CLI_BAD_OVERRIDES))
def test_bad_override_cli_exits_2_with_one_line(tmp_path, case):
    overrides, needles = CLI_BAD_OVERRIDES[case]
    proc = cli(tmp_path, *overrides)
    assert_cli_config_error(proc, needles)
    assert "Config search path" not in proc.stderr
    # values checked once the job has started (the run folder exists, but holds no result)
    late = ("bad-cluster-host", "bad-solver-setting", "bad-solver-choice")
    assert not (tmp_path / "outputs").exists() or case in late


OVERRIDE_CHECKS = {
    # overrides -> None (accepted) or the needles of the one-line message
    "ok-defaults": ([], None),
    "ok-keys": (["solver=ilp", "solver.time_limit_s=5", "cluster.split=equal", "verify=true",
                 "gap.synthetic.count=3", "cluster.devices.0.flops_per_s=1e9"], None),
    "ok-sweep": (["model=alexnet,vgg16", "solver=glob(*)", "network=glob(wifi*)"], None),
    "ok-experiment-group": (["experiment=scaling", "model.n_layers=8,16"], None),  # scaling picks model=synthetic
    "ok-left-to-others": (["+solver.anything=1", "~model.seed", "++x=1", "hydra.job.chdir=true",
                           "hydra/launcher=joblib", "model=null"], None),
    "bad-option": (["cluster=rpi4_x9"], ["unknown option cluster=rpi4_x9", "rpi4_x2, rpi4_x3"]),
    "bad-option-in-sweep": (["model=alexnet,nosuch"], ["unknown option model=nosuch", "alexnet"]),
    "bad-experiment": (["experiment=papr"], ["unknown option experiment=papr", "paper"]),
    "glob-matches-nothing": (["solver=glob(zz*)"], ["solver=glob(zz*) matches no option", "greedy_iop"]),
    "bad-key": (["solver.tim_limit=3"], ["unknown key solver.tim_limit (value 3) for solver=greedy_iop",
                                         "valid keys: _target_, base, memory_aware, recompute"]),
    "bad-key-for-one-option-of-a-sweep": (["solver=ilp,greedy_iop", "solver.time_limit_s=5"],
                                          ["unknown key solver.time_limit_s", "for solver=greedy_iop", "valid keys"]),
    "bad-top-key": (["verfy=true"], ["unknown key verfy (value true)", "verify"]),
    "bad-nested-key": (["gap.synthetic.cnt=2"], ["unknown key gap.synthetic.cnt", "count"]),
    "bad-device-key": (["cluster.devices.0.flops=1"], ["cluster.devices.0.flops", "flops_per_s"]),
    "bad-device-index": (["cluster=rpi4_x2", "cluster.devices.7.name=x"], ["cluster.devices.7", "0..1"]),
    "key-of-another-model": (["model.n_layers=3"], ["unknown key model.n_layers", "for model=alexnet"]),
    "schema-key-needs-plus": (["model=custom", "model.kwargs.width=2"], ["add it with +model.kwargs.width=2"]),
}


@pytest.mark.parametrize("case", sorted(OVERRIDE_CHECKS))
def test_command_line_overrides_are_checked_before_hydra(case):
    overrides, needles = OVERRIDE_CHECKS[case]
    if needles is None:
        override_check.check_overrides(overrides, CONF_DIR)
        return
    with pytest.raises(configs.ConfigError) as info:
        override_check.check_overrides(overrides, CONF_DIR)
    msg = str(info.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, (needle, msg)


def test_single_run_writes_under_outputs_runs(tmp_path):
    proc = cli(tmp_path, "model=tiny_chain", "solver=coedge", "network=ethernet_1g")
    assert proc.returncode == 0, proc.stderr
    results = list((tmp_path / "outputs" / "runs").glob("*/result.json"))
    assert len(results) == 1
    out = proc.stdout + proc.stderr
    assert str(results[0].relative_to(tmp_path)) in out  # the log says where the result went, relative to cwd
    assert str(tmp_path) not in out
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1 and "tiny_chain rpi4_x4 ethernet_1g coedge: " in lines[0] and " ms (completed)" in lines[0]
    rec = json.loads(results[0].read_text())
    assert rec["termination"] == "completed"
    assert rec["job_time_s"] >= rec["solver_time_s"] > 0  # the whole job, not just the solver


def test_failed_single_run_exits_1_after_recording(tmp_path):
    proc = cli(tmp_path, "model=tiny_residual", "solver=brute")
    assert proc.returncode == 1
    (result,) = (tmp_path / "outputs" / "runs").glob("*/result.json")
    assert json.loads(result.read_text())["termination"] == "error"
    out = proc.stdout + proc.stderr
    assert out.count("SolverError") == 1  # the error is logged once
    assert re.search(r"has \d\.\d\de\+\d+ plans", out)  # big counts in scientific notation


# -- sweeps and the report ---------------------------------------------------------------


def test_small_multirun_in_process(tmp_path, monkeypatch, capsys):
    sweep = tmp_path / "sweep"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [
        "iopopt", "-m", "model=tiny_chain,tiny_residual", "solver=coedge,greedy_iop,ilp,brute",
        "network=ethernet_1g", "cluster=rpi4_x2", f"hydra.sweep.dir={sweep}",
        "hydra.callbacks.report.max_timelines=2",
    ])
    GlobalHydra.instance().clear()
    try:
        iopopt.app.main()
    finally:
        GlobalHydra.instance().clear()
    assert (sweep / "multirun.yaml").exists()
    assert len(list(sweep.glob("*/result.json"))) == 8
    df = pd.read_csv(sweep / "summary.csv")
    assert len(df) == 8
    assert set(df["solver"]) == {"coedge", "greedy_iop", "ilp", "brute"}
    ok = df[df["solver"] != "brute"]
    assert (ok["termination"] != "error").all()
    # ilp is the reference: its own ratio is 1 and nobody beats a proven optimum
    ilp = df[df["solver"] == "ilp"]
    assert (ilp["termination"] == "optimal").all() and (ilp["ratio_to_ref"] == 1.0).all()
    assert (ok["ratio_to_ref"] >= 1 - 1e-9).all()
    assert (ok["ratio_to_lb"] >= 1 - 1e-9).all()
    md = (sweep / "summary.md").read_text()
    assert "proven optimal on **2 of 2**" in md
    assert "Paper comparison" not in md  # only for the paper's models
    for png in ("latency_normalised.png", "peak_memory.png", "greedy_gap_hist.png"):
        assert (sweep / png).stat().st_size > 1000
    assert len(list((sweep / "timelines").glob("*.png"))) == 2
    out = capsys.readouterr().out
    assert "ilp proven optimal on 2 of 2 instances" in out
    # one short line per job, numbered out of the sweep's total; each error once; no absolute paths
    job_lines = [ln for ln in out.splitlines() if "] [" in ln and "/8] " in ln]
    assert len(job_lines) == 8, out
    assert any("[1/8] tiny_chain rpi4_x2 ethernet_1g coedge: " in ln for ln in job_lines)
    assert sum("SolverError" in ln for ln in out.splitlines()) == 2  # the two brute jobs
    assert "result written to" not in out and "#0 :" not in out
    # the last line lists everything the report wrote
    last = [ln for ln in out.splitlines() if "report in " in ln][-1]
    for name in ("summary.csv", "summary.md", "latency_normalised.png", "peak_memory.png",
                 "greedy_gap_hist.png", "timelines/ (2 plots)"):
        assert name in last, (name, last)

    # iopopt-report rebuilds the same summary from the result files
    (sweep / "summary.csv").unlink()
    from iopopt.report import main as report_main

    assert report_main([str(sweep), "--no-plots", "-q"]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(sweep / "summary.csv"), df)
    assert capsys.readouterr().out.strip().endswith(": summary.csv, summary.md")


def test_report_marks_errors_and_pairs_by_instance(tmp_path):
    base = {k: None for k in RESULT_KEYS}
    recs = [
        dict(base, model="alexnet", cluster="c", network="n", instance="I", solver="ilp", termination="optimal",
             latency_s=1.0, lower_bound_s=0.5, peak_memory_bytes=10),
        dict(base, model="alexnet", cluster="c", network="n", instance="I", solver="coedge", termination="completed",
             latency_s=1.5, lower_bound_s=0.5, peak_memory_bytes=20),
        dict(base, model="alexnet", cluster="c", network="n", instance="I", solver="greedy_iop",
             termination="completed", latency_s=1.2, lower_bound_s=0.5, peak_memory_bytes=15),
        dict(base, model="alexnet", cluster="c", network="n", instance="I", solver="brute", termination="error",
             error="SolverError: too big", lower_bound_s=0.5),
    ]
    for i, r in enumerate(recs):
        write_json_atomic(tmp_path / str(i) / RESULT_FILE, r)
    from iopopt.report import build_report, gap_stats, load_records, summary_frame

    df = summary_frame(load_records(tmp_path))
    g = df.set_index("solver")
    assert g.loc["greedy_iop", "ratio_to_ref"] == pytest.approx(1.2)
    assert g.loc["greedy_iop", "ratio_to_lb"] == pytest.approx(2.4)
    assert g.loc["greedy_iop", "speedup_vs_base"] == pytest.approx(1.25)
    assert g.loc["greedy_iop", "peak_memory_reduction_vs_base"] == pytest.approx(0.25)
    assert g.loc["brute", "termination"] == "error" and pd.isna(g.loc["brute", "ratio_to_ref"])
    stats = gap_stats(df).set_index("solver")
    assert stats.loc["greedy_iop", "max"] == pytest.approx(0.2) and stats.loc["greedy_iop", "share_optimal"] == 0
    build_report(tmp_path, plots=False)
    md = (tmp_path / "summary.md").read_text()
    assert "## Errors (1)" in md and "SolverError: too big" in md
    assert "| alexnet | c | n | 500.000 | 1500.000 | 1200.000 | 1000.000 | error |" in md
    # greedy vs coedge, then whether it lies in the paper's range: 20% lower latency (above 6.39–16.83%),
    # 25% lower peak memory (within 21.22–49.98%)
    assert "| alexnet | c | n | 20.00% | above | 25.00% | within |  |" in md
    assert "Liu et al. 2024 (paper's figures)" in md
    assert "latency within the paper's range on 0 of 1 rows; memory on 1 of 1" in md


def _records(*rows):
    base = {k: None for k in RESULT_KEYS}
    return [dict(base, cluster="c", network="n", lower_bound_s=0.1, **r) for r in rows]


def test_gap_stats_count_only_equal_latencies_as_optimal():
    from iopopt.report import gap_stats, summary_frame

    recs = _records(
        # instance A: single beats ilp_pairs (it is not in the pairs space); greedy equals it
        dict(model="m", instance="A", solver="ilp_pairs", termination="optimal", latency_s=1.0),
        dict(model="m", instance="A", solver="single", termination="completed", latency_s=0.9),
        dict(model="m", instance="A", solver="greedy_iop", termination="completed", latency_s=1.0),
        # instance B: both above
        dict(model="m", instance="B", solver="ilp_pairs", termination="optimal", latency_s=1.0),
        dict(model="m", instance="B", solver="single", termination="completed", latency_s=1.5),
        dict(model="m", instance="B", solver="greedy_iop", termination="completed", latency_s=1.0 + 1e-12),
    )
    stats = gap_stats(summary_frame(recs), "ilp_pairs").set_index("solver")
    assert stats.loc["single", "share_optimal"] == 0.0 and stats.loc["single", "below_ref"] == 1
    assert stats.loc["greedy_iop", "share_optimal"] == 1.0 and stats.loc["greedy_iop", "below_ref"] == 0
    assert stats.loc["single", "max"] == pytest.approx(0.5)


def test_paper_table_marks_ranges_and_notes(tmp_path):
    from iopopt.report import build_report, paper_counts, paper_table, summary_frame

    def inst(name, **lat):
        return [dict(model="alexnet", instance=name, solver=s, termination="completed", latency_s=v,
                     peak_memory_bytes=m) for s, (v, m) in lat.items()]

    recs = _records(
        *inst("fast-net", single=(2.0, 100), coedge=(1.0, 100), greedy_iop=(0.9, 70), ilp_pairs=(0.9, 70)),
        *inst("slow-net", single=(1.0, 100), coedge=(1.2, 100), greedy_iop=(1.2, 100), ilp_pairs=(1.2, 100)),
        *inst("no-pair", single=(2.0, 100), coedge=(1.0, 100), greedy_iop=(1.0, 100), ilp_pairs=(1.0, 100)),
    )
    for r, net in zip(recs, ["a"] * 4 + ["b"] * 4 + ["c"] * 4):
        r["network"] = net
    paper = paper_table(summary_frame(recs)).set_index("network")
    assert list(paper.loc["a", ["latency ↓", "paper 6.39–16.83%", "peak mem ↓", "paper 21.22–49.98%"]]) == [
        "10.00%", "within", "30.00%", "within"]
    assert paper.loc["b", "note"] == "single fastest" and paper.loc["b", "paper 6.39–16.83%"] == "below"
    assert paper.loc["c", "note"] == "no pair pays" and paper.loc["a", "note"] == ""
    assert paper_counts(paper) == "latency within the paper's range on 1 of 3 rows; memory on 1 of 3"
    # printed: at most 120 characters wide, with the paper's figures labelled as such
    for i, r in enumerate(recs):
        write_json_atomic(tmp_path / str(i) / RESULT_FILE, r)
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        build_report(tmp_path, plots=False, echo=True)
    out = buf.getvalue()
    assert "Liu et al. 2024 (paper's figures)" in out and "on 1 of 3 rows" in out
    assert max(len(ln) for ln in out.splitlines()) <= 120, out


def test_paper_table_only_for_sweeps_with_coedge_and_greedy():
    from iopopt.report import paper_table, summary_frame

    recs = _records(dict(model="alexnet", instance="I", solver="coedge", termination="completed", latency_s=1.0),
                    dict(model="alexnet", instance="I", solver="ilp", termination="optimal", latency_s=0.9))
    assert paper_table(summary_frame(recs)).empty


def test_sweep_size_counts_the_basic_sweepers_jobs():
    from iopopt.app.callbacks import sweep_size

    cfg = compose_cfg("experiment=hetero", hydra_cfg=True)
    assert sweep_size(cfg) == 3 * 2 * 2 * 2 * 6
    cfg = compose_cfg("experiment=hetero", "model=alexnet", hydra_cfg=True)  # the command line wins
    OmegaConf.update(cfg, "hydra.overrides.task", ["model=alexnet", "solver=glob(*)", "experiment=hetero"])
    assert sweep_size(cfg) == 1 * 2 * 2 * 2 * len(options("solver"))
    assert sweep_size(compose_cfg("experiment=paper", hydra_cfg=True)) == 1  # one grid job


def test_written_line_lists_every_file(tmp_path):
    from iopopt.report import written_line

    files = [tmp_path / "summary.csv", tmp_path / "summary.md", tmp_path / "peak_memory.png"]
    files += [tmp_path / "timelines" / f"t{i}.png" for i in range(3)]
    line = written_line(tmp_path, files)
    assert line.endswith(": summary.csv, summary.md, peak_memory.png, timelines/ (3 plots)")


def test_console_scripts_exist():
    bindir = Path(PYTHON).parent
    for name in ("iopopt", "iopopt-report"):
        assert (bindir / name).exists(), f"{name} missing: run `pip install -e . --no-deps`"


@pytest.mark.slow
def test_glob_solver_sweep_records_failures_and_completes(tmp_path):
    """`iopopt -m solver=glob(*) model=alexnet,resnet18`: refusing solvers are error rows, the rest complete."""
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [str(Path(PYTHON).parent / "iopopt"), "-m", "solver=glob(*)", "model=alexnet,resnet18",
         f"hydra.sweep.dir={sweep}", "hydra.callbacks.report.max_timelines=0"],
        cwd=tmp_path, capture_output=True, text=True, timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(sweep / "summary.csv")
    assert set(df["solver"]) == set(options("solver"))
    assert len(df) == 2 * len(options("solver"))
    errors = df[df["termination"] == "error"]
    assert set(errors["solver"]) <= {"brute", "dp"}  # brute refuses big graphs, dp refuses DAGs
    assert "brute" in set(errors["solver"])
    assert (df[df["termination"] != "error"]["latency_s"] > 0).all()
    assert "| error" in (sweep / "summary.md").read_text()


@pytest.mark.slow
def test_joblib_launcher_sweep_uses_one_thread_per_job(tmp_path):
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [str(Path(PYTHON).parent / "iopopt"), "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
         "model=tiny_chain,tiny_residual", "solver=coedge,greedy_iop", f"hydra.sweep.dir={sweep}",
         "hydra.callbacks.report.plots=false"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in sweep.glob("*/result.json")]
    assert len(records) == 4 and all(r["torch_threads"] == 1 for r in records)
    assert len(pd.read_csv(sweep / "summary.csv")) == 4
    # one whole line per finished job, counted once each across the workers; no progress bar
    out = proc.stdout + proc.stderr
    assert "\r" not in out
    counts = sorted(int(m) for m in re.findall(r"\] \[(\d)/4\] ", out))
    assert counts == [1, 2, 3, 4], out


@pytest.mark.slow
def test_paper_experiment_end_to_end(tmp_path):
    sweep = tmp_path / "paper"
    proc = subprocess.run(
        [str(Path(PYTHON).parent / "iopopt"), "-m", "experiment=paper", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(sweep / "summary.csv")
    assert len(df) == 3 * 3 * 2 * 8 and (df["termination"] != "error").all()
    assert (df[df["solver"] == "ilp"]["termination"] == "optimal").all()
    assert "Liu et al. 2024 (paper's figures)" in proc.stdout and "greedy_iop latency vs coedge" in proc.stdout
    assert "latency within the paper's range on" in proc.stdout
    # the same figures as the committed reference (all but solver times and where records were read from)
    ref = pd.read_csv(REPO.parent / "outputs" / "reference" / "paper" / "summary.csv")
    cols = [c for c in ref.columns if c not in ("solver_time_s", "source", "study")]
    key = ["instance", "solver"]
    pd.testing.assert_frame_equal(df[cols].sort_values(key).reset_index(drop=True),
                                  ref[cols].sort_values(key).reset_index(drop=True))
    assert len(list((sweep / "plans").glob("*.png"))) == 18 and len(list((sweep / "timelines").glob("*.png"))) == 36


def nonfinite_model():
    """A model whose own output is -inf: every max-pool window (dilation 2, padding 1, height 1) is padding."""
    import torch

    return torch.nn.Sequential(torch.nn.Conv2d(2, 2, 1), torch.nn.MaxPool2d(2, stride=1, padding=1, dilation=2))


def test_a_model_whose_own_output_is_not_finite_is_named_as_such(tmp_path, caplog):
    rec = run_in(tmp_path, "model=custom", "model.target=test_app.nonfinite_model", "model.input_shape=[1,2,1,3]",
                 "solver=coedge", "verify=true")
    assert rec["verify"]["passed"] is False and rec["verify"]["reference_finite"] is False
    lines = [r.getMessage() for r in caplog.records if "verification FAILED" in r.getMessage()]
    assert len(lines) == 1 and "model's own output is not finite" in lines[0]
    assert "staging buffer" not in caplog.text and "max abs error" not in lines[0]
    # the library's report: one line, nothing about staging buffers
    model = nonfinite_model().eval()
    graph = iopopt.trace(model, (1, 2, 1, 3))
    problem = iopopt.Problem(graph, Cluster.homogeneous(2, 1e9), iopopt.network.SharedNetwork(1e6))
    report = iopopt.verify(problem, problem.plan({}, default="rows"), model)
    assert not report.passed and not report.reference_finite
    assert len(report.diff.splitlines()) == 1 and "not finite" in report.diff and "staging" not in report.diff
