"""iopopt: cooperative CNN inference with interleaved operator partitioning.

Trace a torch model into an operator graph, describe a cluster and a network,
let a solver choose a strategy per operator, and check the plan by running it.
"""

from .cluster import Cluster, Device, split_counts
from .compiler import Program, compile_plan
from .cost import CostReport, evaluate
from .graph import OpGraph, OpNode, UnsupportedOperator, trace
from .layouts import InapplicableStrategy
from .problem import InvalidPlan, Plan, Problem

__version__ = "0.1.0"

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
    "compile_plan",
    "evaluate",
    "split_counts",
    "trace",
    "verify",
]


def __getattr__(name):
    # heavier parts load on first use so that `import iopopt` stays light
    if name == "verify":
        from .executor import verify

        return verify
    if name in ("DistributedExecutor", "SimulatedExecutor"):
        from . import distributed, executor

        return getattr(distributed if name == "DistributedExecutor" else executor, name)
    if name in ("Solver", "SolveResult"):
        from . import solver

        return getattr(solver, name)
    if name in ("zoo", "network", "synthetic", "testing"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'iopopt' has no attribute {name!r}")
