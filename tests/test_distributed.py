"""The distributed executor: real processes, real gloo messages, numerics against the unsplit model.

Process start-up costs a few seconds, so each fast test group spawns once and
runs many Programs (``run_many``): 2 ranks (homogeneous) and 4 ranks
(heterogeneous, so some devices get uneven or zero shares) on tiny_chain,
tiny_residual and ResNet-18 at 64×64. Every zoo model at its own size on 2
and 4 ranks is the ``slow`` test (``--runslow``).
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import socket
import time

import pytest
import torch

from iopopt import Cluster, Device, Problem, compile_plan, plans, trace, zoo
from iopopt.distributed import (
    DistributedError,
    DistributedExecutor,
    Fault,
    Job,
    check_trace,
    expected_bytes,
    find_free_port,
)
from iopopt.network import SwitchedNetwork

PLAN_KINDS = ("all_host", "all_oc", "coedge", "alternating", "random")
MODELS = (("tiny_chain", None), ("tiny_residual", None), ("resnet18", (1, 3, 64, 64)))
NETWORK = SwitchedNetwork(1e8, 1e-4)


def _cluster(k: int, hetero: bool) -> Cluster:
    if not hetero:
        return Cluster.homogeneous(k, 1e9)
    speeds = (2e9, 1e9, 4e9, 1.5e9, 3e9, 0.5e9)[:k]
    return Cluster(tuple(Device(f"d{i}", f) for i, f in enumerate(speeds)))


@functools.cache
def _model(name: str, shape):
    module, default = zoo.build(name)
    return module, trace(module, shape or default)


def _jobs(k: int, hetero: bool, kinds=PLAN_KINDS):
    out = []
    for name, shape in MODELS:
        module, graph = _model(name, shape)
        problem = Problem(graph, _cluster(k, hetero), NETWORK)
        for kind in kinds:
            plan = plans.build_plan(problem, kind, seed=k)
            out.append((f"{name}-{kind}", Job(compile_plan(problem, plan), module)))
    # a fused spatial stack (conv1 … pool, halos recomputed, DESIGN §3) after a plain row-split conv3
    module, graph = _model("tiny_chain", None)
    problem = Problem(graph, _cluster(k, hetero), NETWORK)
    stack = ("rows_fused4", "rows_fused3", "rows_fused2", "rows_fused1", "rows", "rows", "rows")
    plan = problem.plan(dict(zip(("conv1", "relu1", "conv2", "relu2", "pool", "conv3", "relu3"), stack)))
    out.append(("tiny_chain-fused", Job(compile_plan(problem, plan), module)))
    return out


def _assert_no_orphans():
    from iopopt import distributed

    assert multiprocessing.active_children() == []
    for pid in distributed.last_pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # reaped: the pid no longer exists


@pytest.fixture(scope="module", params=[(2, False), (4, True)], ids=["2ranks", "4ranks-hetero"])
def runs(request):
    k, hetero = request.param
    jobs = _jobs(k, hetero)
    start = time.perf_counter()
    traces = DistributedExecutor(warmup=0, repeats=1, timeout_s=60, run_timeout_s=300).run_many([j for _, j in jobs])
    _assert_no_orphans()
    return k, jobs, traces, time.perf_counter() - start


def test_numerics_and_bytes(runs):
    """Every plan: output equal to the unsplit forward (float64, 1e-9 × scale), bytes per rank as the Program says."""
    k, jobs, traces, _ = runs
    failures = []
    for (label, job), tr in zip(jobs, traces):
        rep = check_trace(job.program, tr, job.module)
        if not rep.passed:
            failures.append(f"{label}: {rep.summary()}")
        n_msgs = len(job.program.messages())
        assert tr.messages == n_msgs
        assert sum(r.messages_received for r in tr.ranks) == n_msgs
        assert len(tr.ranks) == k and tr.latency_s > 0
        assert all(len(r.steps) == len(job.program.steps) for r in tr.ranks)
    assert not failures, "\n".join(failures)


def test_trace_contents(runs):
    k, jobs, traces, _ = runs
    label, job = jobs[0]  # tiny_chain, all_host: only the host computes, nothing is sent
    tr = traces[0]
    assert tr.messages == 0 and sum(tr.bytes_sent) == 0
    host = job.program.problem.host
    assert tr.ranks[host].compute_s > 0
    assert all(r.weight_bytes == 0 for d, r in enumerate(tr.ranks) if d != host)
    # weights: every rank built exactly the cost model's shard bytes
    for (_, job), tr in zip(jobs, traces):
        exp = [sum(s.term.weight_bytes[d] for s in job.program.steps) for d in range(k)]
        assert [r.weight_bytes for r in tr.ranks] == exp
        assert tuple(tr.bytes_sent) == expected_bytes(job.program)
    rows = traces[2].step_table()
    assert [r["node"] for r in rows] == [s.op.name for s in jobs[2][1].program.steps]


def _tiny_program(k: int = 2, kind: str = "alternating"):
    module, graph = _model("tiny_chain", None)
    problem = Problem(graph, Cluster.homogeneous(k, 1e9), NETWORK)
    return compile_plan(problem, plans.build_plan(problem, kind)), module


def test_raising_rank_ends_all():
    program, module = _tiny_program()
    ex = DistributedExecutor(repeats=1, fault=Fault(rank=1, step="conv1"), timeout_s=30, run_timeout_s=120)
    with pytest.raises(DistributedError) as err:
        ex.run(program, module)
    assert err.value.rank == 1
    msg = str(err.value)
    assert "rank 1" in msg and "conv1" in msg and "injected fault" in msg
    assert "Traceback" in err.value.remote_traceback
    _assert_no_orphans()


def test_crashed_rank_is_named():
    program, module = _tiny_program()
    ex = DistributedExecutor(repeats=1, fault=Fault(rank=1, step="conv2", kind="exit"), timeout_s=30, run_timeout_s=120)
    with pytest.raises(DistributedError, match=r"rank 1 exited with code 17") as err:
        ex.run(program, module)
    assert err.value.rank == 1
    _assert_no_orphans()


def test_message_timeout_ends_all():
    program, module = _tiny_program()
    ex = DistributedExecutor(repeats=1, fault=Fault(rank=1, step="conv1", kind="hang"), timeout_s=2, run_timeout_s=120)
    start = time.perf_counter()
    with pytest.raises(DistributedError, match=r"timeout_s=2") as err:
        ex.run(program, module)
    assert err.value.rank == 0 and err.value.setting == "timeout_s"
    assert time.perf_counter() - start < 60
    _assert_no_orphans()


@pytest.mark.slow
def test_run_timeout_ends_all():
    program, module = _tiny_program()
    ex = DistributedExecutor(repeats=1, fault=Fault(rank=1, step="conv1", kind="hang"), timeout_s=300, run_timeout_s=8)
    with pytest.raises(DistributedError, match=r"run_timeout_s=8") as err:
        ex.run(program, module)
    assert err.value.setting == "run_timeout_s"
    _assert_no_orphans()


def test_port_in_use_is_a_clear_error():
    program, module = _tiny_program()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(DistributedError, match=rf"master_port {port} .* in use") as err:
            DistributedExecutor(master_port=port, run_timeout_s=60).run(program, module)
        assert err.value.setting == "master_port"
        # the same inside a rank (multi-host mode: this process is rank 0 and must host the rendezvous)
        program1, module1 = _tiny_program(k=1)
        ex = DistributedExecutor(rank=0, world_size=1, master_addr="127.0.0.1", master_port=port, timeout_s=5)
        with pytest.raises(DistributedError, match=rf"master_port {port} .* in use"):
            ex.run(program1, module1)
    _assert_no_orphans()


def test_single_rank_in_process():
    """The multi-host entry (this process is one rank) with a world of one: output and trace."""
    program, module = _tiny_program(k=1, kind="all_oc")
    ex = DistributedExecutor(rank=0, world_size=1, master_addr="127.0.0.1", master_port=find_free_port(), repeats=2)
    assert ex.external
    tr = ex.run(program, module)
    assert check_trace(program, tr, module).passed
    assert len(tr.latencies_s) == 2 and tr.messages == 0


def test_env_settings(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("MASTER_ADDR", "10.1.2.3")
    monkeypatch.setenv("MASTER_PORT", "29501")
    ex = DistributedExecutor()
    assert (ex.rank, ex.world_size, ex.master_addr, ex.master_port) == (1, 3, "10.1.2.3", 29501)
    assert ex.external and ex._settings().ifname is None  # not loopback: gloo picks the interface
    monkeypatch.delenv("MASTER_PORT")
    with pytest.raises(ValueError, match="master_port"):
        DistributedExecutor()


def test_float32_with_prepost_and_step_barrier():
    """float32 numerics; also the two execution options: receives posted a step ahead, a barrier per step."""
    program, module = _tiny_program(kind="coedge")
    ex = DistributedExecutor(dtype=torch.float32, warmup=0, repeats=2, prepost=True, step_barrier=True)
    tr = ex.run(program, module)
    rep = check_trace(program, tr, module, dtype=torch.float32)
    assert rep.passed, rep.summary()
    assert tr.ranks[0].wire_bytes == tr.ranks[0].bytes_sent  # float32 on the wire = the model's 4 bytes
    assert all(s.sync_s > 0 for s in tr.ranks[0].steps)  # the barrier after every step is timed apart


@pytest.mark.slow
@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("name", zoo.names())
def test_zoo_distributed(name, k):
    module, shape = zoo.build(name)
    speeds = (2e9, 1e9, 4e9, 1.5e9)[:k]
    problem = Problem(trace(module, shape), Cluster(tuple(Device(f"d{i}", f) for i, f in enumerate(speeds))), NETWORK)
    kinds = ("all_oc", "coedge", "alternating", "random")
    programs = [compile_plan(problem, plans.build_plan(problem, kind, seed=1)) for kind in kinds]
    traces = DistributedExecutor(warmup=0, repeats=1, timeout_s=300).run_many([Job(p, module) for p in programs])
    for kind, program, tr in zip(kinds, programs, traces):
        rep = check_trace(program, tr, module)
        assert rep.passed, f"{name} {kind} k={k}: {rep.summary()}"
    _assert_no_orphans()


# -- profile and fidelity helpers (no processes) ----------------------------------------------------


def test_network_fit_recovers_alpha_and_bandwidth():
    from iopopt.studies.profile import fit_network

    alpha, bw = 60e-6, 2e9
    pp = {s: alpha + s / bw for s in (4, 1024, 65536, 1 << 20, 4 << 20)}
    a, b, rows = fit_network(pp)
    assert a == pytest.approx(alpha, rel=1e-6) and b == pytest.approx(bw, rel=1e-6)
    assert all(abs(r["rel_err"]) < 1e-6 for r in rows)


def _fake_profile(ranks=4):
    return {
        "machine": {"cpu_count": 2, "torch": torch.__version__, "threads_per_rank": 1, "platform": "linux"},
        "ranks": ranks, "stamp": "test", "convs": [{}] * 8,
        "conv_flops_per_s": 8e10, "linear_flops_per_s": 8e9, "mem_bytes_per_s": 5e10, "pool_flops_per_s": 3e8,
        "concurrent_world": 4, "concurrent_mean_flops_per_s": 3.5e10, "op_overhead_s": 3e-6,
        "concurrent_flops_per_s": {"2": 7e10, "4": 3.5e10}, "exchange_loaded_s": {"2": 1e-3, "4": 2e-3},
        "exchange_idle_s": {"2": 1e-4, "4": 2e-4}, "pingpong_latency_s": 5e-5,
        "network_fit": [{"bytes": 4, "one_way_s": 5e-5}], "latency_s": 5e-5, "bandwidth_bytes_per_s": 2e9,
    }


def test_presets_load_as_cluster_and_network(tmp_path):
    from iopopt.studies.profile import load_presets, preset_flops, preset_latency, write_presets

    prof = _fake_profile()
    write_presets(prof, tmp_path)
    cluster, network = load_presets(tmp_path)
    assert cluster.k == 4 and cluster.devices[0].flops_per_s == pytest.approx(3.5e10)  # measured with 4 at once
    assert network.latency_s == pytest.approx(2e-3) and network.bandwidth_bytes_per_s == pytest.approx(2e9)
    assert preset_flops(prof, 1) == 8e10 and preset_flops(prof, 2) == 7e10
    assert preset_flops(prof, 3) == pytest.approx(5.25e10)  # interpolated
    assert preset_flops(prof, 8) == pytest.approx(8e10 * 2 / 8)  # beyond the measured counts: core share
    assert preset_latency(prof, 3) == pytest.approx(1.5e-3)


def test_contention_prediction_equals_model_when_ranks_fit_the_cores():
    from iopopt.cost import evaluate_program
    from iopopt.studies.fidelity import predict_contention, predict_extended

    module, graph = _model("tiny_residual", None)
    problem = Problem(graph, Cluster.homogeneous(2, 8e10, op_overhead_s=3e-6), NETWORK)
    program = compile_plan(problem, plans.coedge(problem))
    model = evaluate_program(program).latency_s
    assert predict_contention(program, 8e10, 3e-6, cores=2) == pytest.approx(model, rel=1e-12)
    assert predict_contention(program, 8e10, 3e-6, cores=1) > model  # two ranks on one core
    assert predict_extended(program, _fake_profile(), cores=2) > model  # pools and linears are slower
