"""The emulated testbed: quotas and the emulated cluster (pure), and, where the machine allows it, real runs.

Runs on the testbed need root, the cgroup-v1 cpu controller and ip/tc; elsewhere they skip with the
testbed's own one-line reason. Every run checks that nothing is left behind: no testbed cgroup, no
process of the run, no namespace (looked up by inode in every process's ``ns/net`` link).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from iopopt import Cluster, Device, Problem, compile_plan, evaluate, plans, trace, zoo
from iopopt._lifecycle import pid_exists
from iopopt.exec import testbed as tb
from iopopt.exec.distributed import DistributedError, Fault, check_trace, last_pids, launch
from iopopt.exec.testbed import _sys, cpu_fractions, cpu_period, emulated_cluster, unavailable_reason
from iopopt.exec.testbed.selfcheck import check_link
from iopopt.network import SharedNetwork, SwitchedNetwork

REASON = unavailable_reason()
needs_testbed = pytest.mark.skipif(REASON is not None, reason=f"testbed unavailable here: {REASON}")


# -- pure parts ------------------------------------------------------------------------------------


def test_cpu_period_respects_the_kernel_limits():
    assert cpu_period(0.2) == (10_000, 2000)
    assert cpu_period(1.0) == (10_000, 10_000)
    period, quota = cpu_period(0.047)  # an RPi-class device on this machine's core
    assert quota >= 1000 and abs(quota / period - 0.047) < 0.001
    with pytest.raises(ValueError, match="positive"):
        cpu_period(0.0)


def test_fractions_scale_down_uniformly_to_fit_the_cores():
    core = Device("core", 1e10)
    small = Cluster(tuple(Device(f"d{i}", 2e9) for i in range(4)))
    assert cpu_fractions(small, core, cores=2) == ((0.2, 0.2, 0.2, 0.2), 1.0)
    big = Cluster((Device("a", 1e10), Device("b", 2e10), Device("c", 1e10)))
    fr, scale = cpu_fractions(big, core, cores=2)
    assert sum(fr) <= 2 + 1e-12 and max(fr) <= 1.0
    assert fr[1] / fr[0] == pytest.approx(2.0) and scale == pytest.approx(0.5)


def test_emulated_cluster_is_the_core_slowed_by_each_fraction():
    core = Device("core", 1e11, op_overhead_s=1e-5, kind_flops_per_s={"maxpool": 1e9},
                  kind_bytes_per_s={"conv": 4e9}, memory_bandwidth_bytes_per_s=4e10, cache_bytes=1e7,
                  dram_bytes_per_s=2e10, weight_bytes_per_s=5e9)
    cluster = Cluster((Device("a", 2e10, memory_bytes=1e9), Device("b", 1e10)))
    fr, _ = cpu_fractions(cluster, core, cores=2)
    emu = emulated_cluster(cluster, core, fr)
    for dev, f in zip(emu.devices, fr):
        for kind, flops, nbytes in (("conv", 1e9, 1e6), ("maxpool", 1e7, 1e5), ("linear", 1e8, 1e8),
                                    ("act", 1e6, 2e7), ("pwconv", 1e8, 1e6)):
            assert dev.compute_s(kind, flops, nbytes) - dev.op_overhead_s == pytest.approx(
                (core.compute_s(kind, flops, nbytes) - core.op_overhead_s) / f)
        # a quarter of a conv's rows with 9 MB of weights: its weight pass slows down with the device too
        share = dict(weight_bytes=9e6, row_fraction=0.25)
        assert dev.compute_s("conv", 1e8, 1e6, **share) - dev.op_overhead_s == pytest.approx(
            (core.compute_s("conv", 1e8, 1e6, **share) - core.op_overhead_s) / f)
    assert [d.name for d in emu.devices] == ["a", "b"] and emu.devices[0].memory_bytes == 1e9


def test_spec_follows_the_network_kind():
    core = Device("core", 1e11)
    cl = Cluster.homogeneous(3, 8e9)
    spec, _ = tb.testbed_spec(cl, SharedNetwork(6.25e6, 1e-3), core, cores=2)
    assert (spec.topology, spec.k, spec.bandwidth_bytes_per_s, spec.latency_s) == ("shared", 3, 6.25e6, 1e-3)
    spec, _ = tb.testbed_spec(cl, SwitchedNetwork(1.25e8, 1e-4), core, cores=2)
    assert spec.topology == "switched"


@pytest.mark.skipif(REASON is None, reason="the testbed is available here")
def test_refuses_in_one_line_where_the_machine_does_not_allow_it():
    with pytest.raises(tb.TestbedUnavailable) as err, tb.Testbed(tb.TestbedSpec(k=1, cpu_fractions=(None,))):
        pass
    assert "\n" not in str(err.value)


# -- on the testbed --------------------------------------------------------------------------------


def _netns_inodes_in_use() -> set[int]:
    out = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            with contextlib.suppress(OSError):
                out.add(os.stat(f"/proc/{pid}/ns/net").st_ino)
    return out


def _assert_nothing_left(cgroup_root: str, inodes: set[int], pids: list[int], timeout_s: float = 15.0,
                         lock_dir: str = "/nonexistent"):
    deadline = time.monotonic() + timeout_s
    while True:
        left = {
            "cgroup": os.path.exists(cgroup_root),
            "lock_dir": os.path.exists(lock_dir),
            "netns": sorted(inodes & _netns_inodes_in_use()),
            "processes": [p for p in pids if pid_exists(p)],  # alive and not a zombie
        }
        if not any(left.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not any(left.values()), f"left behind: {left}"


def _problem(k: int, network):
    module, _ = zoo.build("tiny_chain")
    graph = trace(module, (1, 3, 32, 32))
    return module, Problem(graph, Cluster.homogeneous(k, 1e9), network)


@needs_testbed
def test_a_plan_runs_correctly_on_a_shaped_switched_testbed_and_leaves_nothing():
    module, problem = _problem(2, SwitchedNetwork(12.5e6, 1e-3))
    program = compile_plan(problem, plans.build_plan(problem, "all_oc"))
    spec = tb.TestbedSpec(k=2, cpu_fractions=(0.5, 0.5), topology="switched", bandwidth_bytes_per_s=12.5e6,
                       latency_s=1e-3)
    ex = tb.TestbedExecutor(spec, dtype=torch.float64, warmup=1, repeats=2, timeout_s=30, run_timeout_s=120)
    t = ex.run(program, module)
    rep = check_trace(program, t, module)
    assert rep.passed, rep.summary()
    # the emulated latency: every message waits at least 1 ms, so the run cannot be faster than that
    assert t.latency_s >= 1e-3 * evaluate(problem, plans.build_plan(problem, "all_oc")).messages / 2
    assert all(r.peak_memory_bytes and r.peak_memory_bytes >= r.weight_bytes for r in t.ranks)
    assert ex.description and ex.description["network"]["topology"] == "switched"
    # this process's testbed cgroup is gone (a parallel test worker may hold its own, named by its pid)
    assert f"{_sys.CGROUP_PREFIX}{os.getpid()}" not in os.listdir(_sys.cgroup_mount("cpu"))
    _assert_nothing_left("/nonexistent", set(), list(last_pids))


@needs_testbed
def test_a_shaped_link_moves_bytes_at_its_rate():
    # the median of three transfers: one transfer slowed by the other tests' processes on the two cores took 0.48 s
    got = check_link(bandwidth_bytes_per_s=2.5e6, nbytes=1_000_000, topology="shared", repeats=3)
    assert got["median_s"] == pytest.approx(0.4, rel=0.15), got


@needs_testbed
@pytest.mark.parametrize("kind", ["exit", "hang"])
def test_a_rank_killed_or_hanging_ends_the_run_with_one_error_and_nothing_left(kind):
    module, problem = _problem(2, SharedNetwork(12.5e6, 0.0))
    program = compile_plan(problem, plans.build_plan(problem, "all_oc"))
    step = program.steps[2].op.name
    spec = tb.TestbedSpec(k=2, cpu_fractions=(0.5, 0.5), topology="shared", bandwidth_bytes_per_s=12.5e6)
    ex = tb.TestbedExecutor(spec, warmup=0, repeats=1, timeout_s=20, run_timeout_s=8,
                         fault=Fault(rank=1, step=step, kind=kind))
    with pytest.raises(DistributedError) as err:
        ex.run(program, module)
    assert ("rank 1" in str(err.value)) if kind == "exit" else ("run_timeout_s" in str(err.value))
    _assert_nothing_left("/nonexistent", set(), list(last_pids))


_CHILD = textwrap.dedent("""
    import json, signal, sys
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a test runner's worker may ignore SIGINT
    from iopopt.exec.distributed import launch
    from iopopt.exec.testbed import Testbed, TestbedSpec
    from iopopt.exec.testbed.selfcheck import _transfer
    spec = TestbedSpec(k=2, cpu_fractions=(0.5, 0.5), topology="switched", bandwidth_bytes_per_s=1.25e5)
    with Testbed(spec) as bed:
        print(json.dumps({"cgroup": bed.cgroup_root, "locks": bed.lock_dir,
                          "inodes": [ns.inode for ns in bed.topology.all_ns],
                          "holders": [ns.pid for ns in bed.topology.all_ns]}), flush=True)
        launch(_transfer, 2, (10_000_000, 3), threads=1, master_addr=bed.master_addr,
               ifname=bed.topology.ifname, rank_setup=bed.placement(), timeout_s=300)
""")


@needs_testbed
@pytest.mark.parametrize("how", ["ctrl-c", "sigkill"])
def test_interrupted_or_killed_testbed_leaves_nothing(how):
    p = subprocess.Popen([sys.executable, "-c", _CHILD], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        info = json.loads(p.stdout.readline())
        assert os.path.isdir(info["locks"])
        deadline = time.monotonic() + 60
        while len(ranks := [_sys.members(os.path.join(info["cgroup"], f"rank{i}")) for i in (0, 1)]) and not all(
            ranks
        ):
            assert time.monotonic() < deadline, "ranks did not start"
            time.sleep(0.2)
        pids = [p.pid, *info["holders"], *(q for r in ranks for q in r)]
        time.sleep(1.0)  # in the middle of the transfer
        if how == "ctrl-c":
            os.killpg(p.pid, signal.SIGINT)  # what a terminal does
        else:
            p.kill()  # the watchdog cleans up
        p.wait(timeout=120)  # generous: the machine running the suite may be loaded
        _assert_nothing_left(info["cgroup"], set(info["inodes"]), pids, lock_dir=info["locks"])
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


@needs_testbed
def test_launch_places_a_rank_in_its_cgroup():
    spec = tb.TestbedSpec(k=1, cpu_fractions=(0.3,))
    with tb.Testbed(spec) as bed:
        got = launch(_own_cgroup_and_netns, 1, init_group=False, rank_setup=bed.placement())[0]
        assert f"{_sys.CGROUP_PREFIX}{os.getpid()}/rank0" in got[0]
        assert got[1] == bed.topology.rank_ns[0].inode != os.stat("/proc/self/ns/net").st_ino


def _own_cgroup_and_netns(rank, world, where):
    return _sys.read("/proc/self/cgroup"), os.stat("/proc/self/ns/net").st_ino


# -- the app: executor=testbed ----------------------------------------------------------------------

_PROFILE = """name: profiled_local
host: 0
split: proportional
devices:
  - name: r0
    flops_per_s: 2.0e+10
    op_overhead_s: 1.0e-05
"""
_PROFILE_NETWORK = """_target_: iopopt.network.SwitchedNetwork
name: profiled_loopback
bandwidth_bytes_per_s: 3.0e+09
latency_s: 2.0e-03
"""


def _profile(tmp_path) -> Path:
    prof = tmp_path / "profile"
    prof.mkdir()
    (prof / "cluster.yaml").write_text(_PROFILE)
    (prof / "network.yaml").write_text(_PROFILE_NETWORK)
    return prof


def _app(tmp_path, *overrides):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from iopopt.app.context import JobContext
    from iopopt.app.jobs import run
    from iopopt.solvers import CONF_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="config", overrides=list(overrides))
    return run(cfg, JobContext(output_dir=tmp_path, choices={}))


def test_the_testbed_reference_is_the_profiles_core_and_its_message_cost(tmp_path, caplog):
    from iopopt.app.measure import testbed_reference

    prof = _profile(tmp_path)
    core, overhead = testbed_reference(str(prof))
    assert (core.flops_per_s, core.op_overhead_s, overhead) == (2e10, 1e-5, 2e-3)
    (prof / "network.yaml").unlink()  # a profile made with --no-network: said, and messages priced by the preset
    assert testbed_reference(str(prof))[1] == 0.0
    assert any("no network.yaml" in r.getMessage() for r in caplog.records)
    from iopopt.app.configs import ConfigError

    with pytest.raises(ConfigError, match=r"testbed\.profile .*nowhere.* does not exist; valid: 'latest'"):
        testbed_reference(str(tmp_path / "nowhere"))


def test_app_refuses_an_unknown_executor_in_one_line(tmp_path):
    from iopopt.app.configs import ConfigError

    with pytest.raises(ConfigError, match="executor must be null or one of distributed, testbed, got 'board'"):
        _app(tmp_path, "model=tiny_chain", "executor=board")


@needs_testbed
def test_app_measures_the_plan_on_the_testbed_beside_the_prediction(tmp_path):
    prof = _profile(tmp_path)
    rec = _app(tmp_path, "model=tiny_chain", "cluster=rpi4_x2", "network=wifi_100mbps", "solver=coedge",
               "executor=testbed", f"testbed.profile={prof}", "testbed.repeats=2")
    m = rec["measured"]
    assert m["executor"] == "testbed" and m["output_ok"], m
    assert len(m["per_rank"]) == 2 and m["latency_s"] > 0 and m["predicted"]["latency_s"] > 0
    assert m["bytes_sent"] == rec["bytes_sent"]  # measured from the tensors sent: the model's figure
    assert all(r["peak_memory_bytes"] >= r["weights_bytes"] for r in m["per_rank"])
    setup = m["setup"]
    assert setup["cpu_scale"] == 1.0 and setup["network"]["topology"] == "shared"
    assert [r["fraction"] for r in setup["cpu"]["ranks"]] == pytest.approx([8e9 / 2e10] * 2)
    # the prediction adds the profile's per-message cost: on 2 devices a phase's busiest device has between half
    # and all of its messages, and the link's own share is the model's for the real cluster (same network)
    assert setup["predicted_message_overhead_s"] == 2e-3
    extra = m["predicted"]["comm_s"] - rec["comm_s"]
    assert 2e-3 * rec["messages"] / 2 - 1e-12 <= extra <= 2e-3 * rec["messages"] + 1e-12 and extra > 0, (extra, rec)


def test_study_summary_judges_groups_by_their_spread_and_counts_repeatability():
    from iopopt.studies.testbed_study import summarize

    def row(model, plan, meas, pred, again):
        return {"model": model, "cluster": "c", "network": "n", "plan": plan, "measured_s": meas,
                "predicted_s": pred, "measured_passes_s": [meas, again]}

    rows = [row("a", "p0", 1.0, 1.1, 1.05), row("a", "p1", 2.0, 1.9, 2.5), row("a", "p2", 3.0, 3.3, 3.0),
            row("b", "p0", 1.0, 2.0, 1.0), row("b", "p1", 1.1, 1.0, 1.1), row("b", "p2", 1.2, 3.0, 1.2)]
    s = summarize(rows)
    assert s["measured"] == "per plan the median of its 2 testbed passes"
    a, b = s["groups"]
    assert a["judged"] and a["spearman"] == pytest.approx(1.0) and a["mdape"] == pytest.approx(0.1)
    assert not b["judged"] and b["meets_0.8"] is None  # spread 1.2 < 1.3
    assert s["groups_judged"] == 1 and s["groups_meeting_0.8"] == 1
    assert s["repeatability"]["median_abs_diff"] == pytest.approx(0.0) and s["repeatability"]["within_10pct"] == 5


def test_a_plans_measured_figure_is_the_median_of_its_passes_also_in_points_written_before_the_passes_were_kept(
        tmp_path):
    from iopopt.studies.testbed_study import load_points, summarize

    old = {"model": "a", "cluster": "c", "network": "n", "plan": "p0", "measured_s": 1.0, "measured_again_s": [1.5],
           "predicted_s": 1.2}
    new = dict(old, plan="p1", measured_s=2.0, measured_passes_s=[1.0, 3.0, 2.0])
    del new["measured_again_s"]
    (tmp_path / "points.jsonl").write_text(json.dumps(old) + "\n" + json.dumps(new) + "\n")
    a, b = load_points(tmp_path / "points.jsonl")
    assert (a["measured_s"], a["measured_passes_s"], "measured_again_s" in a) == (1.25, [1.0, 1.5], False)
    assert (b["measured_s"], b["measured_passes_s"]) == (2.0, [1.0, 3.0, 2.0])
    s = summarize([a, b])  # repeatability is the first two passes apart: 50 % and 200 %
    assert s["repeatability"]["median_abs_diff"] == pytest.approx(1.25) and s["repeatability"]["plans"] == 2
    assert s["model"]["mdape"] == pytest.approx(statistics.median([abs(1.2 / 1.25 - 1), abs(1.2 / 2.0 - 1)]))
    assert s["measured"] == "per plan the median of its 2/3 testbed passes"


def test_the_testbed_experiments_compose():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from iopopt.app.configs import check_top_level
    from iopopt.solvers import CONF_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="config", overrides=["experiment=paper_measured"])
    assert check_top_level(cfg)["study"] == "paper_measured" and cfg.executor == "testbed"


def test_owed_dilation_time_is_the_stretched_cpu_time_beyond_what_the_kernel_took():
    from iopopt.exec.distributed.rank import _owed

    assert _owed(0.001, 0.001, 30.0) == pytest.approx(0.029)
    assert _owed(0.001, 0.004, 30.0) == pytest.approx(0.026)  # preempted for 3 ms: that part is already spent
    assert _owed(0.001, 0.05, 30.0) == 0.0
    assert _owed(0.0, 0.0, 30.0) == 0.0


def test_dilated_kernels_are_slept_before_the_next_message_and_the_end():
    """Time dilation sleeps what a rank's kernels owe before its next exchange (not after every kernel).

    Every rank's inference must still last at least its dilated compute, and messages depend on it: each
    rank of the all-OC plan waits for the other's dilated kernels, so neither finishes sooner.
    """
    from iopopt.exec.distributed import DistributedExecutor

    module, problem = _problem(2, SwitchedNetwork(1e9))
    program = compile_plan(problem, plans.build_plan(problem, "all_oc"))
    factor = 200.0
    runs = {}
    for name, dil in (("raw", None), ("dilated", (factor, factor))):
        ex = DistributedExecutor(2, threads=1, dtype=torch.float64, warmup=1, repeats=3, timeout_s=60,
                                 run_timeout_s=120, compute_dilation=dil)
        t = ex.run(program, module)
        assert check_trace(program, t, module).passed
        runs[name] = t
    raw, dil = runs["raw"], runs["dilated"]
    compute = [sum(s.compute_s for s in r.steps) for r in dil.ranks]
    for r, c in zip(dil.ranks, compute):
        assert min(r.e2e_s) >= 0.9 * c, (r.e2e_s, c)  # the owed time was slept inside the inference
    assert dil.latency_s >= 0.9 * max(compute)
    raw_compute = max(sum(s.compute_s for s in r.steps) for r in raw.ranks)
    assert max(compute) >= 20 * raw_compute, (compute, raw_compute)  # stretched (200x the CPU time)


def test_calibration_keeps_each_kernels_least_time_from_passes_over_all_kernels(tmp_path):
    """After the warm-up a dilated rank times its kernels again: passes over all of them, on fresh buffers of the
    warm-up's input shapes, each kernel run twice and the second run timed, under the compute lock. The reference
    is the least time seen: a kernel timed slow in the warm-up (the machine was busy then) gets its quieter time;
    one timed faster in the warm-up keeps that. Without a compute lock (not the testbed) nothing is timed again.
    """
    import fcntl
    import types

    from iopopt.exec.distributed import rank as rk

    lock = tmp_path / "compute"
    lock.touch()
    calls = []

    def kernel(step, p, bufs):
        fd = os.open(lock, os.O_RDWR)
        try:  # the runner holds the lock: another open file cannot take it
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        calls.append((p, step, [None if b is None else (tuple(b.shape), b.dtype) for b in bufs]))
        c = time.thread_time()
        while time.thread_time() - c < 0.002:  # 2 ms of CPU time
            pass
        return torch.zeros(1)

    def runner(compute_lock):
        r = object.__new__(rk._RankRunner)
        r.s = types.SimpleNamespace(compute_lock=compute_lock)
        r.job = types.SimpleNamespace(steps=["s0", "s1", "s2"])
        r._kernel_inputs = {0: [((2, 3), torch.float32), None], 2: [((5,), torch.float64)]}
        r._warm_cpu = {0: 1.0, 2: 1e-9}  # step 0 timed slow in the warm-up, step 2 faster than 2 ms can be
        r._kernel = kernel
        return r

    r = runner(str(lock))
    r._calibrate()
    assert [c[0] for c in calls] == [0, 0, 2, 2] * rk.CALIBRATION_PASSES  # whole passes, each kernel twice
    want = {0: ("s0", [((2, 3), torch.float32), None]), 2: ("s2", [((5,), torch.float64)])}
    assert all((step, shapes) == want[p] for p, step, shapes in calls)  # the step, on buffers of its shapes
    assert 0.002 <= r._warm_cpu[0] < 0.5
    assert r._warm_cpu[2] == 1e-9 and 1 not in r._warm_cpu
    calls.clear()
    r = runner(None)
    r._calibrate()
    assert calls == [] and r._warm_cpu == {0: 1.0, 2: 1e-9}


def test_a_study_stops_starting_configurations_after_its_time_and_says_how_to_resume(tmp_path):
    from iopopt.studies.testbed_study import Config, _run

    cfg = Config("synthetic", "c", Cluster.homogeneous(2, 1e9), "n", SwitchedNetwork(1e9))
    said: list[str] = []
    rows, _ = _run([cfg], tmp_path, Device("core", 1e10), said.append, stop_after_s=0.0)
    assert rows == [] and not (tmp_path / "points.jsonl").exists()
    assert len(said) == 1 and "resumes from" in said[0] and str(tmp_path / "points.jsonl") in said[0]


@needs_testbed
def test_a_fidelity_study_on_the_testbed_measures_each_plan_in_every_pass_and_judges_their_median(tmp_path):
    from iopopt.studies.testbed_study import Config, load_points, run_fidelity

    cfg = Config("synthetic", "c2", Cluster.homogeneous(2, 2e9), "eth", SwitchedNetwork(12.5e6, 1e-3))
    s = run_fidelity([cfg], tmp_path, Device("core", 2e10), lambda _: None, solvers=("single",), randoms=1,
                     passes=2, repeats=1, warmup=0, timeout_s=60, message_overhead_s=1e-3)
    rows = load_points(tmp_path / "points.jsonl")
    assert [r["plan"] for r in rows] == ["single", "random0"] and all(r["output_ok"] for r in rows)
    for r in rows:
        assert len(r["measured_passes_s"]) == 2 and min(r["measured_passes_s"]) > 0
        assert r["measured_s"] == pytest.approx(sum(r["measured_passes_s"]) / 2)
    assert rows[1]["messages"] > 0 and rows[0]["messages"] == 0  # the random plan splits; single does not
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["n"] == s["n"] == 2 and saved["repeatability"]["plans"] == 2
    assert saved["testbed"]["network"]["topology"] == "switched"
    assert saved["testbed"]["predicted_message_overhead_s"] == 1e-3


@pytest.mark.parametrize("bad", ["soon", "-1", "true"])
def test_study_minutes_must_be_a_number_of_minutes(bad):
    from iopopt.app.configs import ConfigError
    from iopopt.app.measure import check_executor

    value = {"soon": "soon", "-1": -1, "true": True}[bad]
    with pytest.raises(ConfigError, match="testbed.study_minutes must be null or a number"):
        check_executor({"executor": "distributed", "testbed": {"study_minutes": value}})


@needs_testbed
def test_a_completed_testbed_study_exits_0_though_its_record_has_no_plan(tmp_path):
    prof = _profile(tmp_path)
    run_dir = tmp_path / "run"
    got = subprocess.run([sys.executable, "-m", "iopopt", "experiment=paper_measured", "testbed.study_minutes=0",
                          f"testbed.profile={prof}", f"hydra.run.dir={run_dir}"], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert got.returncode == 0, got.stderr[-2000:]
    rec = json.loads((run_dir / "result.json").read_text())
    assert rec["termination"] == "completed" and rec["latency_s"] is None


def _lock_waiters(path) -> int:
    """Processes waiting for a flock on ``path`` (``->`` lines of /proc/locks for its inode)."""
    inode = f":{os.stat(path).st_ino} "
    with open("/proc/locks") as f:
        return sum(1 for line in f if "->" in line and inode in line)


@pytest.mark.skipif(not os.path.exists("/proc/locks"), reason="needs /proc/locks")
@pytest.mark.parametrize("case", ["warm-up", "no warm-up", "not dilated"])
def test_dilated_ranks_time_their_warm_up_kernels_under_the_shared_lock(tmp_path, case):
    """Only a dilated rank in a warm-up inference takes the compute lock, and waits for it.

    The test holds the lock while the run goes on in a thread. With a warm-up, the ranks must wait for it (a
    waiter appears in /proc/locks, and the run cannot end until the test lets go). Without a warm-up, or
    without dilation, nothing waits: the run ends while the test still holds the lock.
    """
    import fcntl
    import threading

    from iopopt.exec.distributed import DistributedExecutor

    module, problem = _problem(2, SwitchedNetwork(1e9))
    program = compile_plan(problem, plans.build_plan(problem, "all_oc"))
    lock = tmp_path / "compute"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    got: dict = {}

    def run():
        try:
            ex = DistributedExecutor(2, threads=1, dtype=torch.float64, warmup=0 if case == "no warm-up" else 1,
                                     repeats=1, timeout_s=60, run_timeout_s=120,
                                     compute_dilation=None if case == "not dilated" else (2.0, 2.0),
                                     compute_lock=str(lock))
            got["trace"] = ex.run(program, module)
        except BaseException as e:  # reported by the main thread
            got["error"] = e

    runner = threading.Thread(target=run)
    runner.start()
    waited = False
    try:
        deadline = time.monotonic() + 150
        while runner.is_alive() and time.monotonic() < deadline:
            if _lock_waiters(lock):
                waited = True
                break
            time.sleep(0.05)
        ended_while_held = not runner.is_alive()
    finally:
        os.close(fd)
        runner.join(150)
    assert "error" not in got, got.get("error")
    assert check_trace(program, got["trace"], module).passed
    if case == "warm-up":
        assert waited and not ended_while_held
    else:
        assert ended_while_held and not waited


@pytest.mark.parametrize("argv, named", [
    (["fidelty"], "'fidelty' (choose from 'paper', 'fidelity')"),
    (["paper", "--minutes", "-1"], "--minutes must be a positive number of minutes, got -1"),
    (["paper", "--profile", "/no/such/profile"], "'/no/such/profile' does not exist; valid: 'latest'"),
])
def test_testbed_studies_script_refuses_bad_input_in_one_line(argv, named):
    """scripts/testbed_studies.py: a bad study, duration or profile is one line naming it, exit 2, before any
    measurement (a misspelt study used to start the 90-minute fidelity run)."""
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "scripts" / "testbed_studies.py"), *argv], cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line or "does not exist" in line]
    assert len(errors) == 1 and named in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
