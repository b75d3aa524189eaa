"""Solvers and configs from outside the repository: entry points, Hydra search paths, the console script.

The fixture package ``tests/fixtures/ext_solver`` registers a solver through the ``iopopt.solvers``
entry-point group and has no YAML inside iopopt. Here it is made "installed" the way Python sees an
installed distribution (its ``.dist-info`` metadata on ``sys.path``); the slow wheel test installs it
with pip into a fresh virtual environment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from iopopt.solvers import Solver, make_solver, registered_solvers
from iopopt.solvers.testing import check_solver, contract_problems

FIXTURE = Path(__file__).parent / "fixtures" / "ext_solver"


def install_fixture(root: Path) -> Path:
    """Copy the fixture package to ``root`` with its distribution metadata, as pip would install it."""
    shutil.copytree(FIXTURE / "iopopt_ext_solver", root / "iopopt_ext_solver")
    dist = root / "iopopt_ext_solver-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: iopopt-ext-solver\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text('[iopopt.solvers]\next_best = iopopt_ext_solver:BestOfBases\n')
    return root


@pytest.fixture
def installed(tmp_path, monkeypatch) -> Iterator[Path]:
    root = install_fixture(tmp_path / "site")
    monkeypatch.syspath_prepend(str(root))
    yield root
    # the plugin's solver leaves Hydra's ConfigStore with the package: other tests of this process count options
    from hydra.core.config_store import ConfigStore

    from iopopt.app import plugins

    ConfigStore.instance().repo.get("solver", {}).pop("ext_best.yaml", None)
    plugins._REGISTERED.discard("ext_best")


def run_cli(cwd: Path, *args: str, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "iopopt", *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env
    )


def test_entry_point_solver_is_registered_and_passes_the_contract(installed):
    spec = registered_solvers()["ext_best"]
    assert spec.target == "iopopt_ext_solver.BestOfBases" and "entry point" in spec.source
    solver = make_solver("ext_best")
    assert isinstance(solver, Solver) and solver.get_params() == {"include_host": True}
    assert make_solver("ext_best", include_host=False).include_host is False
    for case in contract_problems()[:3]:
        result = check_solver(solver, case.problem)
        assert result.termination == "completed" and result.plan is not None


def test_entry_point_solver_runs_from_the_cli(installed, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    proc = run_cli(run, "model=tiny_chain", "solver=ext_best", "solver.include_host=false", pythonpath=installed)
    assert proc.returncode == 0, proc.stderr
    (result,) = run.glob("outputs/runs/*/result.json")
    rec = json.loads(result.read_text())
    assert rec["solver"] == "ext_best" and rec["termination"] == "completed" and rec["latency_s"] > 0
    assert set(rec["strategies"].values()) != {"host"}  # include_host=false reached the solver


def test_glob_sweep_lists_every_solver_including_plugins(installed, tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(tmp_path, "-m", "model=tiny_chain", "solver=glob(*)", f"hydra.sweep.dir={sweep}",
                   "hydra.callbacks.report.plots=false", pythonpath=installed)
    assert proc.returncode == 0, proc.stderr
    solvers = {json.loads(p.read_text())["solver"] for p in sweep.glob("*/result.json")}
    shipped = {p.stem for p in (Path(__file__).parents[1] / "iopopt" / "conf" / "solver").glob("*.yaml")}
    assert solvers == shipped | {"ext_best"}


def test_unknown_solver_lists_plugins_among_valid_options(installed, tmp_path):
    proc = run_cli(tmp_path, "solver=ext_bset", pythonpath=installed)
    assert proc.returncode == 2
    assert "unknown option solver=ext_bset" in proc.stderr and "ext_best" in proc.stderr


def test_hydra_searchpath_adds_options_the_precheck_accepts(tmp_path, installed):
    conf = tmp_path / "more_conf"
    (conf / "solver").mkdir(parents=True)
    (conf / "solver" / "ext_no_host.yaml").write_text(
        "# a variant of the plugin solver, from a config directory outside iopopt\n"
        "_target_: iopopt_ext_solver.BestOfBases  # solver class\ninclude_host: false  # skip all-host\n"
    )
    proc = run_cli(tmp_path, "model=tiny_chain", "solver=ext_no_host", f"hydra.searchpath=[file://{conf}]",
                   pythonpath=installed)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(next(tmp_path.glob("outputs/runs/*/result.json")).read_text())
    assert rec["solver"] == "ext_no_host" and rec["latency_s"] > 0
    # without the search path the same option is unknown, in one line
    proc = run_cli(tmp_path, "model=tiny_chain", "solver=ext_no_host", pythonpath=installed)
    assert proc.returncode == 2 and "unknown option solver=ext_no_host" in proc.stderr


def test_import_does_not_load_the_app_stack():
    """`import iopopt` and importing the solvers load neither hydra, matplotlib nor pandas."""
    code = (
        "import sys, iopopt, iopopt.solvers, iopopt.solvers.baselines, iopopt.solvers.greedy_iop, "
        "iopopt.solvers.exact, iopopt.solvers.ilp\n"
        "heavy = sorted(m for m in ('hydra', 'omegaconf', 'matplotlib', 'pandas') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_wheel_installs_and_runs_from_any_directory(tmp_path):
    """`pip install .` (not editable) into a fresh venv; the CLI runs from an unrelated directory."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    repo = Path(__file__).parents[1]
    subprocess.run([*pip, "torch==2.13.0", str(repo), str(FIXTURE)], check=True, timeout=1800)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    exe = venv / "bin" / "iopopt"
    proc = subprocess.run([str(exe), "model=alexnet", "solver=greedy_iop"], cwd=elsewhere, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    sweep = elsewhere / "sweep"
    proc = subprocess.run([str(exe), "-m", "model=alexnet", "solver=glob(*)", f"hydra.sweep.dir={sweep}"],
                          cwd=elsewhere, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr
    solvers = {json.loads(p.read_text())["solver"] for p in sweep.glob("*/result.json")}
    assert {"greedy_iop", "ilp", "coedge", "single", "ext_best"} <= solvers
    # the contract suite accepts the installed plugin, run from that venv
    code = (
        "from iopopt.solvers import make_solver\nfrom iopopt.solvers.testing import check_solver, contract_problems\n"
        "s = make_solver('ext_best')\nfor c in contract_problems()[:3]:\n    check_solver(s, c.problem)\n"
    )
    subprocess.run([str(venv / "bin" / "python"), "-c", code], cwd=elsewhere, check=True, timeout=600)
