"""``iopopt profile`` presets used at once: the roofline fit, the profile directory, ``cluster=profiled``.

Oracles: samples generated from a known roofline (the fit must give it back),
a profile directory written by hand, and the CLI's exit status and message.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from iopopt.app import configs, targets
from iopopt.solvers import CONF_DIR
from iopopt.studies.profile.fit import CACHE_SIZES, fit_roofline
from iopopt.studies.profile.presets import (
    cluster_yaml,
    device_figures,
    list_profiles,
    load_presets,
    mark_latest,
    resolve_profile,
    write_presets,
)

PYTHON = sys.executable


# -- the fit gives back the roofline that made the samples -----------------------------------------

TRUE = {"conv": (1.5e11, 4e9), "act": (5e9, None), "maxpool": (4e8, None), "linear": (None, 2e10),
        "bn": (None, 3e10), "(copy)": (None, 3e10)}
OVERHEAD = 5e-6


def _truth(kind, flops, nbytes):
    rate, bw = TRUE["(copy)" if kind in ("cat", "flatten", "dropout") else kind]
    t = 0.0
    if rate:
        t = flops / rate
    if bw:
        t = max(t, nbytes / bw)
    return t + OVERHEAD


def test_fit_recovers_a_known_roofline():
    rng = np.random.default_rng(0)
    samples = []
    for kind, n in (("conv", 30), ("act", 20), ("maxpool", 8), ("linear", 6), ("bn", 12), ("cat", 4), ("flatten", 3)):
        for _ in range(n):
            nbytes = float(10 ** rng.uniform(4.5, 7.5))
            # a kind whose FLOPs per byte never vary cannot tell its rate from its bandwidth: vary them
            intensity = {"conv": 10 ** rng.uniform(0.3, 2.5), "act": 0.125, "maxpool": rng.uniform(0.3, 2.5),
                         "linear": rng.uniform(0.4, 0.6), "bn": 0.125}.get(kind, 0.0)
            flops = nbytes * intensity
            samples.append({"kind": kind, "flops": flops, "bytes": nbytes, "time_s": _truth(kind, flops, nbytes)})
    fit = fit_roofline(samples)
    assert fit["op_overhead_s"] == pytest.approx(OVERHEAD, rel=0.1)
    assert fit["flops_per_s"] == pytest.approx(1.5e11, rel=0.1)
    assert fit["kind_bytes_per_s"]["conv"] == pytest.approx(4e9, rel=0.1)
    assert fit["kind_flops_per_s"]["maxpool"] == pytest.approx(4e8, rel=0.1)
    assert fit["memory_bandwidth_bytes_per_s"] == pytest.approx(3e10, rel=0.1)
    # whatever figures it keeps, the device it describes times every sample as the truth does
    from iopopt import Device

    dev = Device("fit", **{k: fit[k] for k in ("flops_per_s", "kind_flops_per_s", "memory_bandwidth_bytes_per_s",
                                               "kind_bytes_per_s", "op_overhead_s")})
    errors = [abs(dev.compute_s(s["kind"], s["flops"], s["bytes"]) / s["time_s"] - 1) for s in samples]
    assert max(errors) < 0.12 and float(np.median(errors)) < 0.05


def test_fit_recovers_pointwise_convs_and_the_working_set():
    """Truth: 1x1 convs at their own rate; beyond 4 MB every kind's bytes move at most at the DRAM's 2e10 B/s."""
    rng = np.random.default_rng(1)
    rates = {"conv": (1.5e11, 4e9), "pwconv": (6e10, 1e10), "act": (None, 1e11), "bn": (None, 5e10)}
    samples = []
    for kind, n in (("conv", 25), ("pwconv", 25), ("act", 30), ("bn", 20), ("cat", 5)):
        rate, bw = rates.get(kind, (None, 3e10))
        for _ in range(n):
            nbytes = float(10 ** rng.uniform(5, 7.5))
            flops = nbytes * {"conv": 10 ** rng.uniform(0.3, 2.5), "pwconv": 10 ** rng.uniform(0.3, 2.5),
                              "act": 0.125, "bn": 0.125}.get(kind, 0.0)
            t = max(flops / rate if rate else 0.0, nbytes / bw, nbytes / 2e10 if nbytes > 4e6 else 0.0)
            samples.append({"kind": kind, "flops": flops, "bytes": nbytes, "time_s": t + OVERHEAD})
    plain = fit_roofline(samples)
    fit = fit_roofline(samples, dram_bytes_per_s=2e10)
    assert plain["cache_bytes"] is None and plain["dram_bytes_per_s"] is None  # not asked: no working set
    assert fit["cache_bytes"] == 4e6 and fit["dram_bytes_per_s"] == 2e10
    assert fit["kind_flops_per_s"]["pwconv"] == pytest.approx(6e10, rel=0.1)
    assert fit["flops_per_s"] == pytest.approx(1.5e11, rel=0.1)
    from iopopt import Device

    keys = ("flops_per_s", "kind_flops_per_s", "memory_bandwidth_bytes_per_s", "kind_bytes_per_s", "op_overhead_s")
    dev = Device("fit", **{k: fit[k] for k in (*keys, "cache_bytes", "dram_bytes_per_s")})
    errors = [abs(dev.compute_s(s["kind"], s["flops"], s["bytes"]) / s["time_s"] - 1) for s in samples]
    assert max(errors) < 0.12 and float(np.median(errors)) < 0.05
    # one bandwidth per kind cannot do that: its acts below and beyond the cache are off
    flat = Device("flat", **{k: plain[k] for k in keys})
    acts = [s for s in samples if s["kind"] == "act"]
    assert max(abs(flat.compute_s("act", s["flops"], s["bytes"]) / s["time_s"] - 1) for s in acts) > 0.3


def test_fit_recovers_spill_weight_bytes_from_operators_whose_input_left_the_caches():
    """Truth: beyond 4 MB bytes move at the DRAM's 2e10 B/s, also for an operator whose input was written by one
    holding more than 1e5 bytes of weights (its producer_weight_bytes), whatever its own size. The fit finds both
    sizes; the device it describes times every sample as the truth does, one without spill_weight_bytes does not."""
    rng = np.random.default_rng(3)
    samples = []
    for kind, bw, n in (("act", 1e11, 40), ("bn", 5e10, 30), ("cat", 3e10, 6)):
        for _ in range(n):
            nbytes = float(10 ** rng.uniform(5, 7.5))
            producer = float(10 ** rng.uniform(3, 7))
            cold = nbytes > 4e6 or producer > 1e5
            t = nbytes / (2e10 if cold else bw) + OVERHEAD
            samples.append({"kind": kind, "flops": 0.0 if kind == "cat" else nbytes * 0.125, "bytes": nbytes,
                            "producer_weight_bytes": producer, "time_s": t})
    samples += [{"kind": "conv", "flops": f, "bytes": f / 50, "producer_weight_bytes": 0.0,
                 "time_s": f / 1.5e11 + OVERHEAD} for f in 10 ** rng.uniform(6, 9, 20)]
    fit = fit_roofline(samples, dram_bytes_per_s=2e10)
    assert fit["cache_bytes"] == 4e6 and fit["spill_weight_bytes"] == 1e5
    assert fit_roofline([{k: v for k, v in s.items() if k != "producer_weight_bytes"} for s in samples],
                        dram_bytes_per_s=2e10)["spill_weight_bytes"] is None  # samples without producers: none
    from iopopt import Device

    keys = ("flops_per_s", "kind_flops_per_s", "memory_bandwidth_bytes_per_s", "kind_bytes_per_s", "op_overhead_s",
            "cache_bytes", "dram_bytes_per_s")
    dev = Device("fit", **{k: fit[k] for k in (*keys, "spill_weight_bytes")})
    errors = [abs(dev.compute_s(s["kind"], s["flops"], s["bytes"], producer_weight_bytes=s["producer_weight_bytes"])
                  / s["time_s"] - 1) for s in samples]
    assert max(errors) < 0.12 and float(np.median(errors)) < 0.05
    blind = Device("blind", **{k: fit[k] for k in keys})
    spilled = [s for s in samples if s["kind"] == "act" and s["producer_weight_bytes"] > 1e5 and s["bytes"] < 4e6]
    assert spilled and max(abs(blind.compute_s("act", s["flops"], s["bytes"]) / s["time_s"] - 1) for s in spilled) > 0.5


def test_a_larger_cache_size_must_lower_the_fit_loss_by_cache_gain(monkeypatch):
    """ReLUs up to 12 MB at cache speed (so the cache is at least 16 MB), with 20 % noise, and batchnorms of 30-40 MB
    at one of the fit's bandwidths, 0.05 % above the DRAM's: 64 MB prices them a little better than 16 MB, by far
    less than CACHE_GAIN of the loss, so the fit keeps 16 MB; with no least gain it takes 64 MB. Batchnorms that
    run at cache speed up to 40 MB do earn it."""
    from iopopt.studies.profile import fit as fit_module

    rng = np.random.default_rng(5)
    samples = [{"kind": "act", "flops": b / 8, "bytes": b, "time_s": b / 1e11 * rng.uniform(0.8, 1.25) + OVERHEAD}
               for b in 10 ** rng.uniform(5, math.log10(1.2e7), 60)]
    samples += [{"kind": "conv", "flops": f, "bytes": f / 50, "time_s": f / 1.5e11 + OVERHEAD}
                for f in 10 ** rng.uniform(6, 9, 20)]
    grid_bw = float(fit_module._BANDWIDTHS[np.searchsorted(fit_module._BANDWIDTHS, 2e10)])
    dram = grid_bw / 1.0005

    def bns(bw: float) -> list[dict]:
        return [{"kind": "bn", "flops": b / 4, "bytes": b, "time_s": b / bw + OVERHEAD} for b in (3e7, 3.5e7, 4e7)]

    assert fit_roofline(samples + bns(grid_bw), dram_bytes_per_s=dram)["cache_bytes"] == 16e6
    assert fit_roofline(samples + bns(8e10), dram_bytes_per_s=dram)["cache_bytes"] == 64e6
    monkeypatch.setattr(fit_module, "CACHE_GAIN", 0.0)
    assert fit_roofline(samples + bns(grid_bw), dram_bytes_per_s=dram)["cache_bytes"] == 64e6


def test_fit_keeps_the_working_set_where_no_sample_needs_it():
    """With the DRAM figure given the fit always has a working set; on samples that all run at cache speed it is
    the smallest size above every one of them (ties keep the smaller), so every sample is timed as without it."""
    rng = np.random.default_rng(2)
    samples = []
    for kind, bw in (("act", 1e11), ("bn", 5e10), ("cat", 3e10)):
        for _ in range(20):
            nbytes = float(10 ** rng.uniform(4, 6.5))
            flops = 0.0 if kind == "cat" else nbytes * 0.125  # a concat only copies
            samples.append({"kind": kind, "flops": flops, "bytes": nbytes, "time_s": nbytes / bw + OVERHEAD})
    samples += [{"kind": "conv", "flops": f, "bytes": f / 50, "time_s": f / 1.5e11 + OVERHEAD}
                for f in 10 ** rng.uniform(6, 9, 20)]
    fit = fit_roofline(samples, dram_bytes_per_s=2e10)
    largest = max(s["bytes"] for s in samples if s["kind"] != "conv")  # the convs are compute-bound at any size
    assert fit["cache_bytes"] == min(c for c in CACHE_SIZES if c >= largest) and fit["dram_bytes_per_s"] == 2e10
    from iopopt import Device

    keys = ("flops_per_s", "kind_flops_per_s", "memory_bandwidth_bytes_per_s", "kind_bytes_per_s", "op_overhead_s")
    dev = Device("fit", **{k: fit[k] for k in (*keys, "cache_bytes", "dram_bytes_per_s")})
    errors = [abs(dev.compute_s(s["kind"], s["flops"], s["bytes"]) / s["time_s"] - 1) for s in samples]
    assert max(errors) < 0.12


def test_row_shares_give_back_the_weight_pass_that_made_their_times(monkeypatch):
    # each conv call: a time per output row plus one pass over all its weights at 3 GB/s, whole layer or share
    from iopopt.studies.profile import kinds

    def fake_median(fn, repeats, clock, warmup=2):
        out = fn()
        c = out.shape[1]
        return out.shape[2] * 2e-5 + 4 * c * c * 9 / 3e9

    monkeypatch.setattr(kinds, "_median", fake_median)
    got = kinds.row_shares(convs=((16, 12), (32, 8)), parts=(2, 4))
    assert got["weight_bytes_per_s"] == pytest.approx(3e9, rel=1e-9)
    assert [r["fraction"] for r in got["shares"]] == [0.5, 0.25, 0.5, 0.25]
    assert all(r["ratio"] > 1 for r in got["shares"])
    # shares no slower than their fraction of the layer: no pass to price
    monkeypatch.setattr(kinds, "_median", lambda fn, repeats, clock, warmup=2: fn().shape[2] * 2e-5)
    assert kinds.row_shares(convs=((16, 12),))["weight_bytes_per_s"] is None


# -- a profile directory -----------------------------------------------------------------------------


def fake_profile(devices=1, with_network=True):
    prof = {
        "machine": {"cpu_count": 2, "torch": "2.x", "threads_per_rank": 1, "cpu_model": "Test CPU", "hostname": "h"},
        "ranks": 2, "devices": devices, "stamp": "2030-01-01_00-00-00", "clock": "cpu", "samples": [{}] * 3,
        "device": {"flops_per_s": 1e11, "kind_flops_per_s": {"maxpool": 4e8, "pwconv": 5e10},
                   "memory_bandwidth_bytes_per_s": 3e10, "kind_bytes_per_s": {"conv": 4e9}, "op_overhead_s": 5e-6,
                   "cache_bytes": 8e6, "dram_bytes_per_s": 2e10, "weight_bytes_per_s": 6e9, "spill_weight_bytes": 8e6},
        "conv_flops_per_s": 1e11, "concurrent_flops_per_s": {"2": 5e10}, "op_overhead_s": 5e-6,
    }
    if with_network:
        prof.update({"exchange_loaded_s": {"2": 1e-3}, "exchange_idle_s": {"2": 2e-4}, "pingpong_latency_s": 6e-5,
                     "network_fit": [{"bytes": 4, "one_way_s": 6e-5}], "bandwidth_bytes_per_s": 2e9})
    return prof


def test_presets_round_trip_and_scale_for_ranks_sharing_cores(tmp_path):
    write_presets(fake_profile(), tmp_path / "p")
    cluster, network = load_presets(tmp_path / "p")
    (dev,) = cluster.devices
    assert dev.flops_per_s == pytest.approx(1e11, rel=1e-3) and dev.rate("maxpool") == pytest.approx(4e8, rel=1e-3)
    assert dev.bandwidth("conv") == pytest.approx(4e9, rel=1e-3)
    assert dev.bandwidth("act") == pytest.approx(3e10, rel=1e-3)
    assert dev.op_overhead_s == pytest.approx(5e-6, rel=1e-3)
    assert dev.rate("pwconv") == pytest.approx(5e10, rel=1e-3)
    assert dev.bandwidth("pwconv") == pytest.approx(4e9, rel=1e-3)  # the conv's
    assert dev.cache_bytes == pytest.approx(8e6, rel=1e-3)
    assert dev.bandwidth("act", 9e6) == pytest.approx(2e10, rel=1e-3)
    assert dev.weight_bytes_per_s == pytest.approx(6e9, rel=1e-3)
    assert dev.spill_weight_bytes == pytest.approx(8e6, rel=1e-3)
    assert network.latency_s == pytest.approx(1e-3) and network.bandwidth_bytes_per_s == pytest.approx(2e9)
    # two ranks on this machine measured half the solo conv throughput: every figure halves, the overhead doubles
    fig = device_figures(fake_profile(), 2)
    assert fig["flops_per_s"] == pytest.approx(5e10) and fig["kind_flops_per_s"]["maxpool"] == pytest.approx(2e8)
    assert fig["op_overhead_s"] == pytest.approx(1e-5)
    assert fig["dram_bytes_per_s"] == pytest.approx(1e10) and fig["cache_bytes"] == 8e6  # the caches stay whole
    assert fig["weight_bytes_per_s"] == pytest.approx(3e9)
    assert fig["spill_weight_bytes"] == 8e6  # a size, like the cache: not scaled
    text = cluster_yaml(fake_profile(), k=2)
    assert "Test CPU" in text and "2030-01-01" in text and text.count("- name: r") == 2


def test_latest_and_explicit_profiles(tmp_path):
    root = tmp_path / "outputs" / "profile"
    with pytest.raises(FileNotFoundError, match="'latest': no profile under .*run `iopopt profile`"):
        resolve_profile("latest", root)
    old, new = root / "2030-01-01_00-00-00", root / "2030-02-01_00-00-00"
    for d in (old, new):
        write_presets(fake_profile(), d)
    assert resolve_profile("latest", root) == new  # no link yet: the newest stamp
    link = mark_latest(old, root)
    assert link is not None and resolve_profile("latest", root) == old.resolve()
    assert resolve_profile(new / "cluster.yaml", root) == new
    assert list_profiles(root) == [old, new]
    with pytest.raises(FileNotFoundError, match="'/nonexistent/prof' does not exist; valid: 'latest' or a directory"):
        resolve_profile("/nonexistent/prof", root)


# -- cluster=profiled network=profiled in the app ----------------------------------------------------


def compose_cfg(*overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose(config_name="config", overrides=list(overrides))


def test_profiled_cluster_and_network_read_the_newest_profile(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_presets(fake_profile(), Path("outputs/profile/2030-01-01_00-00-00"))
    write_presets(dict(fake_profile(), device=dict(fake_profile()["device"], flops_per_s=2e11)),
                  Path("outputs/profile/2030-02-01_00-00-00"))
    cfg = compose_cfg("cluster=profiled", "network=profiled")
    cluster = configs.build_cluster(cfg.cluster)
    assert cluster.k == 1 and cluster.devices[0].flops_per_s == pytest.approx(2e11, rel=1e-3)
    assert cluster.devices[0].dram_bytes_per_s == pytest.approx(2e10, rel=1e-3)
    assert cluster.devices[0].kind_flops_per_s["pwconv"] == pytest.approx(5e10, rel=1e-3)
    assert targets.build_network(cfg.network).latency_s == pytest.approx(1e-3)
    older = compose_cfg("cluster=profiled", "cluster.profile=outputs/profile/2030-01-01_00-00-00", "cluster.count=3")
    cluster = configs.build_cluster(older.cluster)
    assert cluster.k == 3 and cluster.devices[2].flops_per_s == pytest.approx(1e11, rel=1e-3)
    assert len({d.name for d in cluster.devices}) == 3


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run([PYTHON, "-m", "iopopt", *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env=env)


def assert_one_line(proc, needles):
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert "Traceback" not in proc.stderr


BAD = {
    "missing-profile": (["cluster=profiled", "cluster.profile=/no/such/profile"],
                        ["cluster.profile", "'/no/such/profile' does not exist", "valid: 'latest'"]),
    "no-profile-yet": (["cluster=profiled"], ["cluster.profile", "'latest'", "run `iopopt profile`"]),
    "unknown-kind": (["++cluster.devices.0.kind_flops_per_s.pooling=1e8"],
                     ["cluster.devices[0].kind_flops_per_s.pooling", "valid kinds:", "maxpool", "avgpool"]),
    "zero-rate": (["++cluster.devices.0.kind_flops_per_s.linear=0"],
                  ["cluster.devices[0].kind_flops_per_s.linear must be a number > 0, got 0"]),
    "negative-bandwidth": (["++cluster.devices.0.memory_bandwidth_bytes_per_s=-1e9"],
                           ["cluster.devices[0].memory_bandwidth_bytes_per_s must be a number > 0", "-1000000000.0"]),
    "negative-kind-bandwidth": (["++cluster.devices.0.kind_bytes_per_s.conv=-4e9"],
                                ["cluster.devices[0].kind_bytes_per_s.conv must be a number > 0"]),
    "cache-without-dram": (["++cluster.devices.0.cache_bytes=8e6"],
                           ["cluster.devices[0]", "cache_bytes given but not dram_bytes_per_s"]),
    "zero-dram": (["++cluster.devices.0.cache_bytes=8e6", "++cluster.devices.0.dram_bytes_per_s=0"],
                  ["cluster.devices[0].dram_bytes_per_s must be a number > 0, got 0"]),
    "negative-weight-pass": (["++cluster.devices.0.weight_bytes_per_s=-5e9"],
                             ["cluster.devices[0].weight_bytes_per_s must be a number > 0", "-5000000000.0"]),
    "negative-spill": (["++cluster.devices.0.spill_weight_bytes=-4e6"],
                       ["cluster.devices[0].spill_weight_bytes must be a number > 0", "-4000000.0"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_roofline_input_exits_2_with_one_line(tmp_path, case):
    overrides, needles = BAD[case]
    assert_one_line(cli(tmp_path, "model=tiny_chain", "solver=single", *overrides), needles)


def test_a_profile_with_an_unknown_device_key_is_refused_by_every_reader(tmp_path):
    """A profile of an earlier iopopt carrying ``spill_bytes`` (another meaning than ``spill_weight_bytes``) is
    refused with one line by load_presets, by ``cluster=profiled`` and by ``iopopt opfit --profile`` (before it
    times anything), never read without the figure."""
    old = tmp_path / "outputs" / "profile" / "2030-01-01_00-00-00"
    write_presets(fake_profile(), old)
    tree = yaml.safe_load((old / "cluster.yaml").read_text())
    tree["devices"][0]["spill_bytes"] = 8e6
    (old / "cluster.yaml").write_text(yaml.safe_dump(tree))
    with pytest.raises(ValueError, match=r"unknown key devices\[0\]\.spill_bytes .*valid keys: .*spill_weight_bytes"):
        load_presets(old)
    assert_one_line(cli(tmp_path, "model=tiny_chain", "solver=single", "cluster=profiled", "network=profiled"),
                    ["spill_bytes", "valid keys"])
    opfit = subprocess.run([PYTHON, "-m", "iopopt", "opfit", "--profile", str(old), "--models", "alexnet",
                            "--out", str(tmp_path / "opfit")], cwd=tmp_path, capture_output=True, text=True,
                           timeout=300)
    assert_one_line(opfit, ["--profile", "unknown key devices[0].spill_bytes", "run `iopopt profile` again"])
    assert not (tmp_path / "opfit").exists()


def test_board_presets_cite_their_sources():
    for name in ("rpi4_x4", "rpi5_x4", "jetson_nano_cpu_x4", "esp32s3_x4", "laptop_x2"):
        path = CONF_DIR / "cluster" / f"{name}.yaml"
        text = path.read_text()
        tree = yaml.safe_load(text)
        for d in tree["devices"]:
            assert d.get("memory_bandwidth_bytes_per_s") and d.get("kind_flops_per_s"), (name, d)
            assert (d.get("weight_bytes_per_s") is None) == (name == "esp32s3_x4"), (name, d)
        assert "weight_bytes_per_s: " in text.split("name:")[0], name  # its source, in the header
        assert "source" in text.lower() and "estimate" in text.lower(), name
        cluster = configs.build_cluster(compose_cfg(f"cluster={name}").cluster)
        assert all(dev.is_roofline and math.isfinite(dev.flops_per_s) for dev in cluster.devices)


# -- the per-operator prediction study ---------------------------------------------------------------


def test_opfit_summary_by_hand():
    from iopopt.studies.opfit.report import summarize

    rows = [
        {"model": "m", "kind": "conv", "measured_s": 2e-3, "predicted_s": 2.2e-3},   # +10%
        {"model": "m", "kind": "conv", "measured_s": 1e-3, "predicted_s": 0.5e-3},   # -50%
        {"model": "m", "kind": "act", "measured_s": 1e-4, "predicted_s": 1.3e-4},    # +30%, kind under 1 ms
    ]
    s = summarize(rows)["m"]
    assert s["measured_s"] == pytest.approx(3.1e-3) and s["predicted_s"] == pytest.approx(2.83e-3)
    assert s["error"] == pytest.approx(2.83 / 3.1 - 1)
    assert s["op_median_abs_error"] == pytest.approx(0.3)  # median of 0.1, 0.5, 0.3
    assert s["kinds"]["conv"]["error"] == pytest.approx(2.7 / 3.0 - 1) and s["kinds"]["conv"]["checked"]
    assert not s["kinds"]["act"]["checked"]
    assert s["total_ok"] and s["kinds_ok"] and not s["ops_ok"]


def test_time_ops_and_the_prediction_on_a_tiny_model():
    import iopopt
    from iopopt import Device
    from iopopt.studies.opfit.measure import predict_ops, time_ops

    module, shape = iopopt.zoo.build("tiny_chain")
    graph = iopopt.trace(module, shape)
    measured = time_ops(graph, module, repeats=3, warmup=1, clock="cpu")
    ops = [op for op in graph if op.kind not in ("input", "output")]
    assert set(measured.per_op) == {op.name for op in ops} and len(measured.passes_s) == 3
    assert all(t >= 0 for t in measured.per_op.values())
    dev = Device("d", 2e9, op_overhead_s=3e-6)
    predicted = predict_ops(graph, dev)
    for op in ops:  # one device, only a FLOP/s figure: FLOPs / rate + overhead
        assert predicted[op.name] == pytest.approx(op.flops / 2e9 + 3e-6, rel=1e-12)


def test_reference_kernels_and_the_drift_line():
    """The reference kernels time both a conv and a copy; a drift beyond 10% either way, against the profile or
    within the run, gets the warning line and the paragraph says it; a profile without them says so."""
    from iopopt.studies.opfit.measure import drift, reference_times
    from iopopt.studies.opfit.report import DRIFT_WARN, _drift_paragraph, drift_line

    ref = reference_times(repeats=3)
    assert set(ref) == {"conv", "copy"} and all(0 < t < 1 for t in ref.values())
    assert drift(ref, ref) == {"conv": 0.0, "copy": 0.0}
    then = {"conv": 2e-3, "copy": 4e-3}
    assert drift({"conv": 2.5e-3, "copy": 3e-3}, then) == {"conv": 0.25, "copy": -0.25}
    quiet = {"reference_drift_vs_profile": drift({"conv": 2.1e-3, "copy": 3.9e-3}, then),
             "reference_drift_in_run": {"conv": 0.02, "copy": -0.01}}
    assert drift_line(quiet) is None and "conv +5.0%" in _drift_paragraph(quiet)
    for vs, inrun in (({"conv": DRIFT_WARN + 0.01, "copy": 0.0}, {"conv": 0.0}),
                      ({"conv": 0.0, "copy": -DRIFT_WARN - 0.01}, {"conv": 0.0}),
                      ({"conv": 0.0}, {"copy": 0.2})):
        meta = {"reference_drift_vs_profile": vs, "reference_drift_in_run": inrun}
        line = drift_line(meta)
        assert line is not None and line.startswith("WARNING") and line in _drift_paragraph(meta)
    why = "the profile has no reference kernels"
    old = {"reference_drift_vs_profile": None, "reference_drift_in_run": {"conv": 0.0},
           "reference_vs_profile_why_none": why}
    assert "unknown" in drift_line(old) and why in _drift_paragraph(old)
    # without a profile to compare with, a drift within the run is still called out
    old_moving = dict(old, reference_drift_in_run={"conv": 0.3})
    assert drift_line(old_moving).startswith("WARNING") and "conv in this run +30%" in drift_line(old_moving)
    fresh = {"reference_drift_vs_profile": None, "reference_drift_in_run": {"copy": 0.01},
             "reference_vs_profile_why_none": "fresh: the profile is of this run"}
    assert drift_line(fresh) is None and "fresh: the profile is of this run" in _drift_paragraph(fresh)
    # the kernels run on one thread whatever the caller set, and give the caller's setting back
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        reference_times(repeats=1)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


_FAULTS = """
import resource, sys, torch
from iopopt.studies.opfit import measure as m
if sys.argv[1] == "steady":
    assert m.steady_allocator() and m.steady_allocator()
x = torch.ones(10 << 20)  # 40 MB: above glibc's largest default mmap threshold (32 MB)
for _ in range(3):
    y = x * 2
    del y
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    y = x * 2
    del y
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _glibc() -> bool:
    import platform

    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not _glibc(), reason="glibc mallopt")
def test_the_allocator_is_made_steady_for_measurements():
    """With the allocator steady, a large output freed and allocated again is reused, not page-faulted in afresh
    on every pass (the kernel's minor-fault counter is the oracle): 10 passes of a 40 MB output."""
    import subprocess

    faults = {mode: int(subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True,
                                       check=True).stdout) for mode in ("default", "steady")}
    pages = 10 * (40 << 20) // 4096
    assert faults["default"] > 0.9 * pages, faults  # glibc's default: every pass faults its output in
    assert faults["steady"] < 0.25 * pages, faults  # reused (seen: no pass faulting, at times two of the ten)


def test_calibration_rounds_interleave_with_the_callers():
    """measure_samples calls between_rounds after each of its rounds: what `opfit --profile fresh` times there
    sees the machine at the speed the calibration saw."""
    from iopopt.studies.profile.kinds import measure_samples

    calls = []
    samples = measure_samples(repeats=1, warmup=0, rounds=2, between_rounds=calls.append)
    assert calls == [0, 1]
    assert {s["kind"] for s in samples} >= {"conv", "pwconv", "dwconv", "linear", "act", "bn", "maxpool", "cat"}
    for s in samples:  # every round kept, the sample's time the least of them
        assert len(s["rounds_s"]) == 2 and s["time_s"] == min(s["rounds_s"])


def test_opfit_with_a_fresh_profile_writes_it_and_predicts_with_it(tmp_path):
    """`iopopt opfit --profile fresh`: the profile of this run is written under OUT/profile, and every predicted
    time in opfit.csv is what the device of that profile predicts (recomputed here)."""
    import csv
    import subprocess

    import iopopt
    from iopopt.studies.opfit.measure import predict_ops

    out = tmp_path / "fit"
    proc = subprocess.run([str(Path(sys.executable).parent / "iopopt"), "opfit", "--profile", "fresh", "--models",
                           "tiny_chain", "--rounds", "3", "--repeats", "1", "--warmup", "0", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    cluster, network = load_presets(out / "profile", network=False)
    assert network is None and len(cluster.devices) == 1
    meta = json.loads((out / "summary.json").read_text())["meta"]
    assert Path(meta["profile"]) == out / "profile"
    prof = json.loads((out / "profile" / "profile.json").read_text())
    assert "interleaved" in prof["command"]
    # the drift within the run is the profile's own reference kernels, which bracket the models' rounds too
    assert meta["reference_s"] == prof["reference_s"] and meta["reference_drift_in_run"] == prof["reference_drift"]
    copies = prof["standalone"]["copy_rounds"]  # one DRAM copy per calibration round and one at the end
    assert len(copies) == 4 and prof["standalone"]["copy"] == max(copies, key=lambda c: c["bytes_per_s"])
    assert prof["device"]["dram_bytes_per_s"] == prof["standalone"]["copy"]["bytes_per_s"]
    module, shape = iopopt.zoo.build("tiny_chain")
    expected = predict_ops(iopopt.trace(module, shape, name="tiny_chain"), cluster.devices[0])
    with open(out / "opfit.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["node"] for r in rows} == set(expected)
    for r in rows:
        assert float(r["predicted_s"]) == pytest.approx(expected[r["node"]], rel=1e-9)
        rounds = [float(t) for t in r["rounds_s"].split()]  # each round's time kept, the measured one the least
        assert len(rounds) == 3 and float(r["measured_s"]) == pytest.approx(min(rounds), rel=1e-5)


def test_the_profiles_message_cost_is_the_median_of_its_exchange_rounds():
    """Each rank times the ring exchange in EXCHANGE_ROUNDS rounds and reports their median; a round's mean
    moves a lot on a shared machine, so one slow or fast round does not set the figure."""
    import statistics

    from iopopt.exec.distributed.launcher import launch
    from iopopt.studies.profile.bench import EXCHANGE_ROUNDS, _rank_bench

    per_rank = launch(_rank_bench, 2, ((4, 1024), 3, 0.05, 5), threads=1, timeout_s=60, run_timeout_s=120)
    for r in per_rank:
        for key in ("exchange_loaded", "exchange_idle"):
            rounds = r[f"{key}_rounds"][2]
            assert len(rounds) == EXCHANGE_ROUNDS and all(t > 0 for t in rounds)
            assert r[key][2] == statistics.median(rounds)
    assert set(per_rank[0]["pingpong"]) == {4, 1024}


def test_an_operators_time_is_the_least_of_its_rounds():
    """least_round: the least disturbed round (load only slows a kernel); no rounds is an error, not a zero."""
    from iopopt.studies.opfit.measure import least_round

    assert least_round([3e-3, 1e-3, 2e-3]) == 1e-3
    with pytest.raises(ValueError, match="no rounds"):
        least_round([])
