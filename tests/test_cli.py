"""What a user meets at the command line: exit codes and one-line messages, `iopopt show`, the version,
custom models from the current directory, and `python -m iopopt.distributed` driven by the app's configs.

The console scripts run in subprocesses from a temporary directory (as a user would run them); the
expected values come from the models and configs themselves (a module's first conv, the zoo's input
shape, conf/config.yaml's defaults), from the simulated executor's own message records, and from
plans written by hand for the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import iopopt
from iopopt import zoo
from iopopt._show import plan_record
from iopopt.app.configs import ConfigError
from iopopt.app.context import JobContext
from iopopt.app.jobs import run
from iopopt.exec.simulated import SimulatedExecutor
from iopopt.exec.verify import default_input
from iopopt.network import SwitchedNetwork
from iopopt.report.plan import nbytes_text, plan_rows, plan_table
from iopopt.report.show import main as show_main
from iopopt.results import RESULT_FILE, write_json_atomic
from iopopt.solvers import CONF_DIR

BIN = Path(sys.executable).parent
ENV = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}


def console(tmp_path: Path, script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / script), *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=timeout, env=ENV)


def one_error_line(proc: subprocess.CompletedProcess, status: int = 2) -> str:
    """The single stderr line of a refused command (no traceback anywhere)."""
    assert proc.returncode == status, proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    return lines[0]


def compose(*overrides: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return hydra_compose(config_name="config", overrides=list(overrides))


# -- the version, shapes, runs without a plan ---------------------------------------------------------


def test_version_is_iopopts_not_hydras(tmp_path):
    proc = console(tmp_path, "iopopt", "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"iopopt {iopopt._version.__version__} ")
    assert not proc.stdout.startswith("Hydra")


def test_wrong_input_channels_exit_2_naming_the_expected_shape(tmp_path):
    module, zoo_shape = zoo.build("alexnet")
    channels = module.features[0].in_channels  # the oracle: the model's own first conv
    proc = console(tmp_path, "iopopt", "model=alexnet", "model.input_shape=[1,1,224,224]")
    line = one_error_line(proc)
    assert line.startswith("iopopt: configuration error: model.input_shape=[1,1,224,224] does not fit model alexnet")
    assert f"takes {channels} input channels" in line
    assert f"try model.input_shape=[1,{channels},224,224]" in line
    assert list(zoo_shape)[1] == channels
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").rglob(RESULT_FILE))


def test_wrong_input_size_names_the_zoo_shape(tmp_path):
    _, zoo_shape = zoo.build("tiny_chain")
    with pytest.raises(ConfigError) as info:
        run(compose("model=tiny_chain", "model.input_shape=[1,3,4,4]"), JobContext(output_dir=tmp_path))
    msg = str(info.value)
    assert "\n" not in msg and "model.input_shape=[1,3,4,4] does not fit model tiny_chain" in msg
    assert "height and width do not" in msg
    assert f"try model.input_shape=[{','.join(map(str, zoo_shape))}]" in msg


def test_custom_model_wrong_channels_and_failing_constructor(tmp_path):
    channels = zoo.TinyChain().conv1.in_channels  # the oracle: the model's own first conv
    with pytest.raises(ConfigError) as info:
        run(compose("model=custom", "model.target=iopopt.zoo.TinyChain", "model.input_shape=[1,5,32,32]"),
            JobContext(output_dir=tmp_path))
    assert f"try model.input_shape=[1,{channels},32,32]" in str(info.value)
    with pytest.raises(ConfigError) as info:  # the constructor itself raises
        run(compose("model=custom", "model.target=torch.nn.Conv2d",
                    "+model.kwargs={in_channels: 4, out_channels: 4, kernel_size: 3, padding_mode: zigzag}"),
            JobContext(output_dir=tmp_path))
    msg = str(info.value)
    assert "\n" not in msg and "model.target 'torch.nn.Conv2d' raised ValueError building the model" in msg
    assert "zigzag" in msg


def test_run_without_a_plan_exits_nonzero(tmp_path):
    # two devices of 1000 bytes: no plan fits, the ILP proves it infeasible
    proc = console(tmp_path, "iopopt", "model=tiny_chain", "solver=ilp", "cluster=rpi4_x2",
                   "cluster.devices.0.memory_bytes=1000", "cluster.devices.1.memory_bytes=1000")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (result,) = (tmp_path / "outputs" / "runs").glob(f"*/{RESULT_FILE}")
    rec = json.loads(result.read_text())
    assert rec["strategies"] is None and rec["termination"] == "infeasible"
    assert "no plan (infeasible)" in proc.stdout + proc.stderr


def test_custom_model_from_the_current_directory_via_the_console_script(tmp_path):
    pkg = tmp_path / "my_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(
        "import torch.nn as nn\n\n"
        "def build(width=8):\n"
        "    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 4, 3, padding=1),\n"
        "                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))\n"
    )
    proc = console(tmp_path, "iopopt", "model=custom", "model.target=my_pkg.nets.build",
                   "model.input_shape=[1,3,16,16]", "+model.kwargs.width=6", "solver=coedge")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (result,) = (tmp_path / "outputs" / "runs").glob(f"*/{RESULT_FILE}")
    rec = json.loads(result.read_text())
    assert rec["model"] == "build" and rec["termination"] == "completed" and rec["input_shape"] == [1, 3, 16, 16]


# -- iopopt show ------------------------------------------------------------------------------------


def _paired_problem():
    module, shape = zoo.build("tiny_chain")
    problem = iopopt.Problem(iopopt.trace(module, shape, name="tiny_chain"), iopopt.Cluster.homogeneous(2, 1e9),
                             SwitchedNetwork(1.25e8, 1e-4), name="tiny")
    # by hand: conv1 in oc, relu1 on its channel shards, conv2 in ic: one IOP pair; the rest on the host
    plan = problem.plan({"conv1": "oc", "relu1": "channel", "conv2": "ic"})
    return module, problem, plan


def test_show_lists_every_layer_with_the_messages_the_executor_sends(tmp_path, capsys):
    module, problem, plan = _paired_problem()
    rec = plan_record(problem, plan, solver="by-hand")
    write_json_atomic(tmp_path / RESULT_FILE, rec)
    assert show_main([str(tmp_path / RESULT_FILE)]) == 0
    out = capsys.readouterr().out
    program = iopopt.compile_plan(problem, plan)
    trace = SimulatedExecutor(problem, module, dtype=torch.float32).run(program, default_input(problem.graph))
    sent: dict[str, list[int]] = {}
    for m in trace.messages:  # the executor's own record of what it delivered, per consuming layer
        sent.setdefault(m.node, []).append(m.nbytes)
    rows = plan_rows(rec)
    assert [r["layer"] for r in rows] == list(problem.graph.order)
    for r in rows:
        assert r["strategy"] == plan[r["layer"]]
        assert r["messages"] == len(sent.get(r["layer"], []))
        assert r["bytes"] == nbytes_text(sum(sent.get(r["layer"], [])))
        assert f" {r['layer']} " in out
    marks = {r["layer"]: r["pair"] for r in rows}
    assert marks["conv1"] == "pair 1 A" and marks["relu1"] == "pair 1 ·" and marks["conv2"] == "pair 1 B"
    assert "IOP pairs (1): conv1 (oc) → conv2 (ic)" in out
    assert out == plan_table(rec)


def test_show_refuses_bad_paths_in_one_line(tmp_path, capsys):
    assert show_main([str(tmp_path / "nothing.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such file" in err[0]
    write_json_atomic(tmp_path / "study" / RESULT_FILE, {"instances_file": "instances.jsonl", "n_instances": 3})
    (tmp_path / "study" / "instances.jsonl").write_text("{}\n{}\n{}\n")
    assert show_main([str(tmp_path / "study")]) == 2
    err = capsys.readouterr().err.strip()
    assert "summarises a study job of 3 records" in err and "instances.jsonl:1" in err
    assert show_main([str(tmp_path / "study" / "instances.jsonl:4")]) == 2
    assert "N must be in 1..3" in capsys.readouterr().err


def test_show_of_a_failed_job_exits_1(tmp_path, capsys):
    write_json_atomic(tmp_path / RESULT_FILE, {"model": "m", "termination": "error", "error": "SolverError: no",
                                               "latency_s": None, "strategies": None, "per_op": None})
    assert show_main([str(tmp_path)]) == 1
    assert "SolverError: no" in capsys.readouterr().err


def test_show_console_script_draws_the_diagram(tmp_path):
    _, problem, plan = _paired_problem()
    write_json_atomic(tmp_path / RESULT_FILE, plan_record(problem, plan))
    proc = console(tmp_path, "iopopt", "show", RESULT_FILE, "--plot", "plan.png")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "plan.png").stat().st_size > 5000
    assert "IOP pairs (1)" in proc.stdout


def test_plan_repr_stays_short():
    _, problem, plan = _paired_problem()
    assert "\n" not in repr(plan) and len(repr(plan)) < 80


# -- python -m iopopt.distributed ----------------------------------------------------------------------


def distributed(tmp_path: Path, *args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "iopopt.distributed", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env=env or ENV)


def test_distributed_help_names_the_cluster_and_network_it_plans_for(tmp_path):
    defaults = {}
    for entry in yaml.safe_load((CONF_DIR / "config.yaml").read_text())["defaults"]:
        if isinstance(entry, dict):
            defaults.update(entry)
    proc = distributed(tmp_path, "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert f"cluster={defaults['cluster']}" in text and f"network={defaults['network']}" in text
    assert "plan_from=" in text


def test_distributed_refuses_in_one_line(tmp_path):
    line = one_error_line(distributed(tmp_path, "model=alexnett"))
    assert "unknown option model=alexnett" in line and "alexnet" in line
    line = one_error_line(distributed(tmp_path, "plan_from=nowhere/result.json"))
    assert "plan_from=nowhere/result.json" in line and "no such file" in line
    env = dict(ENV, WORLD_SIZE="3")
    line = one_error_line(distributed(tmp_path, "model=tiny_chain", "cluster=rpi4_x2", env=env))
    assert "WORLD_SIZE=3" in line and "2 devices" in line


def test_distributed_runs_a_stored_plan_on_its_instance(tmp_path):
    # a plan stored by the app (with a cluster override), run as stored: same devices, same plan, same messages
    proc = console(tmp_path, "iopopt", "model=tiny_residual", "cluster=rpi4_x2", "network=ethernet_1g",
                   "solver=greedy_iop", "cluster.split=equal")
    assert proc.returncode == 0, proc.stderr
    (result,) = (tmp_path / "outputs" / "runs").glob(f"*/{RESULT_FILE}")
    rec = json.loads(result.read_text())
    proc = distributed(tmp_path, f"plan_from={result}", "--repeats", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "cluster rpi4_x2 (2 devices" in out and "network ethernet_1g" in out
    assert f"stored plan of greedy_iop from {result}" in out and "made for" not in out  # the same instance
    assert f"{rec['messages']} messages" in out
    assert "distributed verify PASSED" in out


def test_two_hydra_modes_are_one_line_naming_them(tmp_path):
    """`-m ... --cfg hydra` is one line naming both and the way to see the config (Hydra raises a ValueError);
    one mode alone still works."""
    line = one_error_line(console(tmp_path, "iopopt", "-m", "experiment=paper", "--cfg", "hydra"))
    assert line.startswith("iopopt: -m/--multirun and -c/--cfg cannot be given together") and "--cfg job" in line
    line = one_error_line(console(tmp_path, "iopopt", "-r", "--multi", "model=tiny_chain"))  # an abbreviation
    assert line.startswith("iopopt: -r/--run and -m/--multirun cannot be given together")
    line = one_error_line(console(tmp_path, "iopopt", "-cjob", "--info"))
    assert line.startswith("iopopt: -c/--cfg and -i/--info cannot") and "drop -m" not in line
    shown = console(tmp_path, "iopopt", "model=tiny_chain", "--cfg=job")
    assert shown.returncode == 0 and "tiny_chain" in shown.stdout, shown.stderr


_SLOW_IMPORT = """
import importlib.abc, pathlib, sys, time
MARKER, SLOW, ENTRY = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
class Slow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == SLOW:
            MARKER.touch()
            time.sleep(60)
        return None
sys.meta_path.insert(0, Slow())
import iopopt._entry
sys.argv[1:] = sys.argv[4:]
sys.exit(getattr(iopopt._entry, ENTRY)())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX signals")
@pytest.mark.parametrize("entry, slow, line", [("app", "hydra", "iopopt: interrupted by SIGINT"),
                                               ("report", "pandas", "iopopt-report: interrupted by SIGINT")])
def test_interrupted_while_importing_is_one_line(tmp_path, entry, slow, line):
    """Ctrl-C while a console script still imports Hydra or pandas: its one line and status 130, no traceback."""
    import signal
    import time

    marker = tmp_path / "importing"
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_IMPORT, str(marker), slow, entry, str(tmp_path)],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert marker.exists(), proc.stderr.read() if proc.poll() is not None else f"{slow} never imported"
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert proc.returncode == 130 and "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith(line), lines
