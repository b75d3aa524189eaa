"""Pareto fronts and robustness: checked against every plan of tiny problems, and the application's studies.

The oracle for a front is plain enumeration: every plan's latency, energy
and peak memory from the cost model, and the non-dominated set of them.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import subprocess
import sys

import pytest

import iopopt
from iopopt.app.context import JobContext
from iopopt.app.jobs import run
from iopopt.cost import energy, latency
from iopopt.frontend.synthetic import random_cnn
from iopopt.model.cluster import Cluster, Device
from iopopt.model.problem import Plan
from iopopt.network import SharedNetwork, SwitchedNetwork
from iopopt.studies.pareto import pareto_records
from iopopt.studies.robustness import robustness_records, scale_network

STEP = 1e-5  # the walk's resolution (relative)


def tiny(seed: int, k: int = 2):
    rng = random.Random(seed)
    module, shape = random_cnn(seed, n_layers=2, kind=rng.choice(["chain", "dag"]), channels=(2, 6), input_hw=(8, 8))
    devices = []
    for d in range(k):
        idle = rng.uniform(0.5, 2.0)
        devices.append(Device(f"d{d}", rng.uniform(5e6, 3e7), op_overhead_s=rng.uniform(0, 2e-4),
                              active_power_w=idle + rng.uniform(0.5, 4), idle_power_w=idle,
                              tx_power_w=idle + rng.uniform(0, 2), rx_power_w=idle + rng.uniform(0, 1)))
    net = SharedNetwork(rng.uniform(5e6, 1e8), 1e-5) if seed % 2 else SwitchedNetwork(rng.uniform(5e6, 1e8), 1e-5)
    return iopopt.Problem(iopopt.trace(module, shape), Cluster(tuple(devices)), net, name=f"tiny{seed}")


def every_plan(problem):
    names = problem.graph.order
    for combo in itertools.product(*(problem.strategies(n) for n in names)):
        plan = Plan(dict(zip(names, combo)))
        lat = latency(problem, plan)
        if math.isfinite(lat):
            yield plan, lat


def exact_front(problem, other: str) -> list[tuple[float, float]]:
    """The non-dominated (latency, energy or peak) pairs of every plan: plain enumeration."""
    pairs = []
    for plan, lat in every_plan(problem):
        value = energy(problem, plan) if other == "energy" else iopopt.evaluate(problem, plan).peak_memory_bytes
        pairs.append((lat, float(value)))
    pairs.sort()
    front, best = [], math.inf
    for lat, value in pairs:
        if value < best * (1 - 1e-12):
            front.append((lat, value))
            best = value
    return front


@pytest.mark.parametrize("seed", [4, 9, 14, 16])
def test_walked_fronts_are_the_exact_fronts(seed):
    problem = tiny(seed)
    records = pareto_records(problem, walk=200, settings={"time_limit_s": 60})
    for name, key, other in (("energy", "energy_j", "energy"), ("memory", "peak_memory_bytes", "peak_memory")):
        got = sorted((r["latency_s"], float(r[key])) for r in records if r["front"] == name and r["source"] == "front")
        pts = [r for r in records if r["front"] == name and r["source"] == "front"]
        assert all(r["proven"] and r["pareto"] and r["complete"] for r in pts)
        want = exact_front(problem, other)
        # monotone: along the front, latency rises and the other figure falls
        assert all(a[0] < b[0] and a[1] > b[1] for a, b in zip(got, got[1:])), got
        for lat, value in got:  # every point is Pareto-optimal among all plans
            assert not any(w[0] < lat * (1 - 1e-9) and w[1] <= value * (1 + 1e-9) for w in want), (lat, value)
            assert any(math.isclose(lat, w[0], rel_tol=1e-9) and math.isclose(value, w[1], rel_tol=1e-7)
                       for w in want)
        for lat, value in want:  # and every Pareto point is found, up to the walk's resolution
            assert any(g[0] <= lat * (1 + 2 * STEP) and g[1] <= value * (1 + 1e-7) for g in got), (lat, value, got)
        for b in (r for r in records if r["front"] == name and r["source"] == "baseline"):
            assert b["dominated_by"] is not None  # every baseline dominated by or on the front


def test_sampled_fronts_dominate_every_baseline():
    problem = tiny(5, k=3)  # fronts longer than the walk of 2 points
    records = pareto_records(problem, walk=2, points=4, settings={"time_limit_s": 60})
    for name in ("energy", "memory"):
        pts = [r for r in records if r["front"] == name and r["source"] == "front"]
        assert pts and not pts[0]["complete"] and all(r["proven"] for r in pts)
        axes = ("latency_s", "energy_j" if name == "energy" else "peak_memory_bytes")
        for b in (r for r in records if r["front"] == name and r["source"] == "baseline"):
            over = [p for p in pts if p["label"] == b["dominated_by"]]
            assert over and all(over[0][x] <= b[x] * (1 + 1e-7) for x in axes), b


def test_no_power_figures_no_energy_front():
    p = tiny(3)
    bare = iopopt.Problem(p.graph, Cluster.homogeneous(2, 1e7), p.network)
    records = pareto_records(bare, walk=3, points=2)
    assert {r["front"] for r in records} == {"memory"}


def test_robustness_regret_and_the_measure_hook():
    problem = tiny(9)
    seen = []

    def measure(prob, plan):
        seen.append((prob.network.bandwidth_bytes_per_s, plan))
        return 0.5

    records = robustness_records(problem, solvers=("coedge", "ilp"), factors=(0.5, 1.0, 2.0), measure=measure)
    assert len(records) == 6 and len(seen) == 6 and all(r["measured_s"] == 0.5 for r in records)
    for r in records:
        assert r["bandwidth_bytes_per_s"] == pytest.approx(problem.network.bandwidth_bytes_per_s * r["factor"])
        assert r["regret"] >= -1e-12 and r["gap_to_optimum"] >= -1e-9
        if r["solver"] == "ilp" and r["factor"] == 1.0:
            assert abs(r["regret"]) < 1e-12 and abs(r["gap_to_optimum"]) < 1e-9
        scaled = iopopt.Problem(problem.graph, problem.cluster, scale_network(problem.network, r["factor"]))
        assert r["latency_s"] == pytest.approx(latency(scaled, Plan(r["strategies"])), rel=1e-12)


def test_scale_network_scales_every_bandwidth():
    net = SwitchedNetwork(1e6, 1e-3, device_bandwidths=(1e6, 2e6))
    got = scale_network(net, 4)
    assert got.bandwidth_bytes_per_s == 4e6 and got.device_bandwidths == (4e6, 8e6) and got.latency_s == 1e-3


# -- the application --------------------------------------------------------------------------


def _compose(*overrides):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from iopopt.solvers import CONF_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose(config_name="config", overrides=list(overrides))


@pytest.mark.parametrize("study", ["pareto", "robustness"])
def test_study_jobs_write_their_tables_and_plots(tmp_path, study):
    extra = ["pareto.walk=3", "pareto.points=2"] if study == "pareto" else ["robustness.factors=[0.5,2]"]
    cfg = _compose(f"experiment={study}", "model=tiny_chain", "network=wifi_100mbps", *extra)
    rec = run(cfg, JobContext(output_dir=tmp_path))
    assert rec["termination"] == "completed" and rec["solver"] == study and rec["model"] == "tiny_chain"
    for ext in ("md", "csv", "png", "jsonl"):
        assert (tmp_path / f"{study}.{ext}").stat().st_size > 0
    lines = (tmp_path / f"{study}.jsonl").read_text().splitlines()
    assert len(lines) == rec[study]["records"] > 0
    assert json.loads((tmp_path / "result.json").read_text())["termination"] == "completed"


def test_plan_from_evaluates_a_stored_plan_elsewhere(tmp_path):
    first = run(_compose("model=tiny_residual", "solver=greedy_iop", "cluster=rpi4_x4"),
                JobContext(output_dir=tmp_path / "a"))
    again = run(_compose(f"plan_from={tmp_path / 'a' / 'result.json'}", "cluster=rpi4_x2", "network=ethernet_1g"),
                JobContext(output_dir=tmp_path / "b"))
    assert again["model"] == "tiny_residual"  # the record's model, since the command line named none
    assert again["strategies"] == first["strategies"] and again["solver"] == "plan_from"
    assert again["k"] == 2 and again["network"] == "ethernet_1g" and again["termination"] == "completed"
    module, shape = iopopt.zoo.build("tiny_residual")
    from omegaconf import OmegaConf

    from iopopt.app import configs, targets
    from iopopt.solvers import CONF_DIR

    cluster = configs.build_cluster(OmegaConf.load(CONF_DIR / "cluster" / "rpi4_x2.yaml"))
    network = targets.build_network(OmegaConf.load(CONF_DIR / "network" / "ethernet_1g.yaml"))
    problem = iopopt.Problem(iopopt.trace(module, shape), cluster, network)
    report = iopopt.evaluate(problem, Plan(first["strategies"]))
    assert again["latency_s"] == pytest.approx(report.latency_s, rel=1e-12)
    assert again["energy_j"] == pytest.approx(report.energy_j, rel=1e-12)


def test_a_plan_that_does_not_fit_is_one_line(tmp_path):
    run(_compose("model=tiny_chain", "solver=coedge"), JobContext(output_dir=tmp_path / "a"))
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    proc = subprocess.run([sys.executable, "-m", "iopopt", f"plan_from={tmp_path / 'a' / 'result.json'}",
                           "model=tiny_residual", f"hydra.run.dir={tmp_path / 'b'}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "plan_from" in lines[0] and "does not fit tiny_residual" in lines[0] and "no strategy" in lines[0]
