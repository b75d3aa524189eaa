"""``python -m iopopt.distributed``: run one plan distributed (all ranks locally, or one rank of a multi-host run)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import torch

from ..exec.distributed import DistributedExecutor, check_trace

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    from ..compile.program import compile_plan
    from ..frontend import zoo
    from ..frontend.capture import trace
    from ..model.cluster import Cluster
    from ..model.network import SwitchedNetwork
    from ..model.problem import Problem
    from ..space.plans import PLAN_KINDS, build_plan

    ap = argparse.ArgumentParser(
        prog="python -m iopopt.distributed",
        description="Run one plan of a zoo model distributed (all ranks locally, or this rank of a "
        "multi-host run when RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT are set) and check it.",
    )
    ap.add_argument("--model", default="tiny_chain", help="zoo model name")
    ap.add_argument("--input-hw", type=int, default=None, help="input height=width (default: the zoo's)")
    ap.add_argument("--plan", default="alternating", help=f"plan family: {sorted(PLAN_KINDS) + ['random']}")
    ap.add_argument("--solver", default=None, help="solver name (conf/solver/NAME.yaml) instead of --plan")
    ap.add_argument("--ranks", type=int, default=None, help="number of devices (default WORLD_SIZE or 2)")
    ap.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=60.0, help="torch.distributed timeout (s)")
    ap.add_argument("--step-barrier", action="store_true")
    a = ap.parse_args(argv)
    ex = DistributedExecutor(
        threads=a.threads, dtype=getattr(torch, a.dtype), repeats=a.repeats, timeout_s=a.timeout,
        step_barrier=a.step_barrier,
    )
    k = a.ranks or ex.world_size or 2
    module, shape = zoo.build(a.model)
    if a.input_hw:
        shape = (shape[0], shape[1], a.input_hw, a.input_hw)
    problem = Problem(trace(module, shape, name=a.model), Cluster.homogeneous(k, 1e10), SwitchedNetwork(1e8, 1e-4))
    if a.solver:
        from ..solvers.registry import make_solver

        plan = make_solver(a.solver).solve(problem).plan
    else:
        plan = build_plan(problem, a.plan)
    program = compile_plan(problem, plan)
    t = ex.run(program, module)
    if t.output is not None:
        rep = check_trace(program, t, module, dtype=ex.dtype)
        print(rep.summary())
        return 0 if rep.passed else 1
    print(t.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
