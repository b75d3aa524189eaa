"""iopopt: cooperative CNN inference with interleaved operator partitioning.

Trace a torch model into an operator graph, describe a cluster and a network,
let a solver choose a strategy per operator, and check the plan by running it.

The package follows the pipeline, one subpackage per stage (imports point
down only): ``model`` (graphs, devices, networks, layouts, problems, plans) ←
``frontend`` (capture, zoo) and ``compile`` (reshardings, cost terms,
Programs) ← ``cost`` ← ``space`` (IOP pairs, plan families) ← ``exec``
(executors, verification) ← ``solvers`` ← ``studies`` ← ``app`` (the Hydra
application); ``report`` reads ``results`` only.
"""

from ._version import __version__
from .compile.program import Program, compile_plan
from .cost.evaluate import CostReport, evaluate
from .model.cluster import Cluster, Device, split_counts
from .model.graph import OpGraph, OpNode
from .model.layouts import InapplicableStrategy
from .model.problem import InvalidPlan, Plan, Problem

__all__ = [
    "Cluster",
    "CostReport",
    "Device",
    "DistributedExecutor",
    "InapplicableStrategy",
    "InvalidPlan",
    "OpGraph",
    "OpNode",
    "Plan",
    "Problem",
    "Program",
    "SimulatedExecutor",
    "Solver",
    "SolveResult",
    "UnsupportedOperator",
    "__version__",
    "compile_plan",
    "evaluate",
    "make_solver",
    "show",
    "split_counts",
    "trace",
    "verify",
]

# heavier parts (torch, the solvers) load on first use, so that `import iopopt` stays light
_LAZY = {
    "trace": ("frontend.capture", "trace"),
    "UnsupportedOperator": ("frontend.capture", "UnsupportedOperator"),
    "verify": ("exec.verify", "verify"),
    "SimulatedExecutor": ("exec.simulated", "SimulatedExecutor"),
    "DistributedExecutor": ("exec.distributed", "DistributedExecutor"),
    "Solver": ("solvers.base", "Solver"),
    "SolveResult": ("solvers.base", "SolveResult"),
    "make_solver": ("solvers.registry", "make_solver"),
    "show": ("_show", "show"),
}
_SUBMODULES = ("zoo", "network", "synthetic", "testing", "solver", "plans", "distributed")


def __getattr__(name):
    import importlib

    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'iopopt' has no attribute {name!r}")
