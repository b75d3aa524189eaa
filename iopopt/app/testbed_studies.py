"""The testbed studies from the app: ``experiment=fidelity executor=testbed`` and ``experiment=paper_measured``.

Both measure on the emulated testbed (:mod:`iopopt.exec.testbed`) with CPU
fractions relative to the core of ``testbed.profile``; they write
``points.jsonl`` (one line per plan, appended as they go, resumed when the
folder already has one) and ``summary.json`` into ``<run dir>/<study>/``.

* fidelity: ``fidelity.models`` × homogeneous (rpi4) and heterogeneous
  (Jetson + RPi) clusters of ``fidelity.ranks`` devices × shared Wi-Fi at 50
  and 10 Mbit/s and switched Ethernet at 1 Gbit/s and 100 Mbit/s; the plans
  of ``fidelity.solvers`` and two random plans, each measured twice.
* paper_measured: alexnet, vgg16 and resnet18 on 2–4 RPi 4 over Ethernet and
  Wi-Fi: single (one device), coedge and greedy_iop, measured and predicted,
  and ilp's plan (the model's optimum) among the candidates for the best
  plan's speedup over one device.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

from ..results.io import write_json_atomic
from ..results.records import RESULT_FILE, base_record, error_record
from .configs import build_cluster
from .context import JobContext
from .measure import testbed_reference
from .targets import build_network

__all__ = ["fidelity_configs", "paper_configs", "run_testbed_study", "PAPER_SOLVERS"]

#: The plans the paper_measured study measures per instance.
PAPER_SOLVERS = ("single", "coedge", "greedy_iop", "ilp")

log = logging.getLogger("iopopt")


def _conf(group: str, name: str) -> dict:
    from omegaconf import OmegaConf

    from ..solvers.registry import CONF_DIR

    tree = OmegaConf.to_container(OmegaConf.load(Path(CONF_DIR) / group / f"{name}.yaml"), resolve=True)
    assert isinstance(tree, dict)
    return tree


def _cluster(name: str, k: int | None = None):
    c = build_cluster(_conf("cluster", name))
    if k is not None and k < c.k:  # the first k devices of a preset
        c = dataclasses.replace(c, devices=c.devices[:k], name=f"{c.name}[:{k}]")
    return c


def _networks() -> dict:
    from ..model.network import SwitchedNetwork

    return {
        "wifi_50mbps": build_network(_conf("network", "wifi_50mbps")),
        "wifi_10mbps": build_network(_conf("network", "wifi_10mbps")),
        "ethernet_1g": build_network(_conf("network", "ethernet_1g")),
        # assumption like ethernet_1g's: 100 Mbit/s per link, 0.1 ms per message
        "ethernet_100m": SwitchedNetwork(1.25e7, 1e-4, name="ethernet_100m"),
    }


def fidelity_configs(models, ranks=(2, 3, 4)) -> list:
    from ..studies.testbed_study import Config

    clusters = {2: [("rpi4_x2", _cluster("rpi4_x2")), ("hetero_3[:2]", _cluster("hetero_3", 2))],
                3: [("rpi4_x3", _cluster("rpi4_x3")), ("hetero_3", _cluster("hetero_3"))],
                4: [("rpi4_x4", _cluster("rpi4_x4")), ("hetero_4", _cluster("hetero_4"))]}
    nets = _networks()
    out = []
    for model in models:
        for k in ranks:
            for cname, cl in clusters[int(k)]:
                for net, nw in nets.items():
                    out.append(Config(str(model), cname, cl, net, nw))
    return out


def paper_configs() -> list:
    from ..studies.testbed_study import Config

    nets = _networks()
    return [Config(model, f"rpi4_x{k}", _cluster(f"rpi4_x{k}"), net, nets[net])
            for model in ("vgg16", "alexnet", "resnet18") for k in (4, 3, 2) for net in ("ethernet_1g", "wifi_50mbps")]


def run_testbed_study(study: str, cfg, settings: dict, ctx: JobContext, started: float) -> dict:
    """``study: fidelity`` with ``executor=testbed``, or ``study: paper_measured``; the job's record."""
    from ..studies.testbed_study import run_fidelity, run_paper

    base = {"study": study, "job": ctx.job, "overrides": list(ctx.overrides), "solver": "", "cluster": "",
            "network": ""}
    out = Path(ctx.output_dir)
    dest = out / study
    tb = dict(settings.get("testbed") or {})
    f = dict(settings.get("fidelity") or {})
    core, overhead = testbed_reference(tb.get("profile", "latest"))
    opts = {"passes": 2, "message_overhead_s": overhead, "repeats": int(f.get("repeats") or tb.get("repeats") or 3),
            "warmup": int(f.get("warmup") or tb.get("warmup") or 1), "timeout_s": float(tb.get("timeout_s") or 300),
            "stop_after_s": None if tb.get("study_minutes") is None else float(tb["study_minutes"]) * 60}
    try:
        if study == "paper_measured":
            summary = run_paper(paper_configs(), dest, core, log.info, solvers=PAPER_SOLVERS,
                                **opts)
            what = f"paper_measured ({len(summary['instances'])} instances)"
        else:
            summary = run_fidelity(fidelity_configs(f.get("models") or ["alexnet"], f.get("ranks") or (2, 3, 4)),
                                   dest, core, log.info, solvers=tuple(f.get("solvers") or ()), randoms=2,
                                   ilp_time_s=float(f.get("ilp_time_s") or 20), **opts)
            what = f"fidelity on the testbed ({summary['n']} plans)"
    except Exception as exc:
        rec = error_record(base, exc)
    else:
        rec = base_record(base)
        rec.update(model=what, termination="completed", summary=str(dest / "summary.json"))
    rec["job_time_s"] = time.perf_counter() - started
    write_json_atomic(out / RESULT_FILE, rec)
    log.info("%s study: %s; summary %s", study, rec.get("termination"), dest / "summary.json")
    return rec
