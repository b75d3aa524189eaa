"""Plan → Program: what each device computes and which messages travel, step by step.

:func:`compile_plan` picks the terms of one plan out of the problem's
:class:`~iopopt.compile.terms.CostTerms` into a :class:`Program`; the cost
model, the simulated executor and the distributed executor all consume that
same Program.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..model.graph import OpNode
from ..model.problem import Plan, Problem
from .reshard import Resharding
from .terms import NodeTerm, terms

__all__ = ["Step", "Program", "compile_plan"]


@dataclass(frozen=True)
class Step:
    """One operator of the Program: its node term and the reshardings of its inputs (in input order)."""

    op: OpNode
    strategy: str
    term: NodeTerm
    inputs: tuple[Resharding, ...]

    @property
    def comm_s(self) -> float:
        return sum(r.time_s for r in self.inputs)


@dataclass(frozen=True)
class Program:
    """A compiled plan: steps in the graph's topological order."""

    problem: Problem
    plan: Plan
    steps: tuple[Step, ...]

    def messages(self) -> list[tuple[int, int, int]]:
        """Every message as (src, dst, bytes), in program order."""
        return [(t.src, t.dst, t.nbytes) for s in self.steps for r in s.inputs for t in r.transfers]


def compile_plan(problem: Problem, plan: Plan | Mapping[str, str], validate: bool = True) -> Program:
    """Compile ``plan`` (a :class:`~iopopt.model.problem.Plan` or a mapping node → strategy) into a :class:`Program`."""
    if not isinstance(plan, Plan):
        if not isinstance(plan, Mapping):
            raise TypeError(f"a plan must be an iopopt.Plan or a mapping node → strategy, got {type(plan).__name__}")
        plan = Plan(plan)
    if validate:
        plan.validate(problem)
    t = terms(problem)
    steps = []
    for op in problem.graph:
        s = plan[op.name]
        inputs = []
        for i, src in enumerate(op.inputs):
            edge = t.edge(src, op.name, i, plan[src], s)
            if edge is None:  # only an unvalidated plan gets here
                raise ValueError(f"edge {src} → {op.name}: {op.name!r} in {s!r} cannot take {src!r} in {plan[src]!r}")
            inputs.append(edge)
        steps.append(Step(op, s, t.node(op.name, s), tuple(inputs)))
    return Program(problem, plan, tuple(steps))
