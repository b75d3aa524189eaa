"""The cost model: latency, traffic, messages and memory of a plan.

Execution is layer-synchronous in the graph's topological order::

    T(plan) = Σ_v [ Σ_(u→v) T_net(resharding u→v) + max_d T_comp(v, d) ]

(the output node's input resharding is the final gather to the host).
Memory per device: all its weight shards, plus the peak over steps of the
live tensors it stores, the buffers it assembles for the current step and the
current output. Energy (when every device has power figures): see
:mod:`iopopt.cost.energy`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..compile.program import Program, compile_plan
from ..compile.terms import terms
from ..model.problem import Plan, Problem
from .energy import DeviceEnergy, energy_profile
from .memory import memory_profile

__all__ = ["OpCost", "DeviceMemory", "CostReport", "evaluate", "evaluate_program", "latency"]


@dataclass(frozen=True)
class OpCost:
    """Per-operator breakdown."""

    node: str
    strategy: str
    comm_s: float
    compute_s: float
    bytes_sent: int
    messages: int


@dataclass(frozen=True)
class DeviceMemory:
    """Bytes one device needs: weights, activation peak and their sum."""

    name: str
    weights_bytes: int
    activation_peak_bytes: int
    peak_bytes: int
    capacity_bytes: float

    @property
    def fits(self) -> bool:
        return self.peak_bytes <= self.capacity_bytes


@dataclass(frozen=True)
class CostReport:
    """What a plan costs under the model (seconds, bytes and, with power figures, joules).

    ``energy_j`` and ``energy_per_device`` are None when some device has no
    power figures (energy unknown, not zero).
    """

    latency_s: float
    compute_s: float
    comm_s: float
    bytes_sent: int
    messages: int
    lower_bound_s: float
    per_device: tuple[DeviceMemory, ...]
    per_op: tuple[OpCost, ...]
    energy_j: float | None = None
    energy_per_device: tuple[DeviceEnergy, ...] | None = None

    @property
    def peak_memory_bytes(self) -> int:
        return max(m.peak_bytes for m in self.per_device)

    @property
    def fits_memory(self) -> bool:
        return all(m.fits for m in self.per_device)

    def memory_violations(self) -> list[str]:
        """One readable line per device whose peak exceeds its capacity."""
        return [
            f"{m.name}: peak {m.peak_bytes} B > capacity {m.capacity_bytes:.0f} B"
            for m in self.per_device
            if not m.fits
        ]

    def summary(self) -> str:
        joules = f", energy {self.energy_j:.4g} J" if self.energy_j is not None else ""
        return (
            f"latency {self.latency_s * 1e3:.3f} ms (compute {self.compute_s * 1e3:.3f} ms, "
            f"comm {self.comm_s * 1e3:.3f} ms), {self.messages} messages, {self.bytes_sent / 1e6:.3f} MB sent, "
            f"peak memory {self.peak_memory_bytes / 1e6:.2f} MB{joules}, lower bound {self.lower_bound_s * 1e3:.3f} ms"
        )


def evaluate_program(program: Program) -> CostReport:
    """The cost report of a compiled program."""
    problem = program.problem
    per_op = []
    comm = comp = 0.0
    nbytes = nmsg = 0
    for step in program.steps:
        c = step.comm_s
        b = sum(r.nbytes for r in step.inputs)
        m = sum(r.n_messages for r in step.inputs)
        per_op.append(OpCost(step.op.name, step.strategy, c, step.term.compute_s, b, m))
        comm += c
        comp += step.term.compute_s
        nbytes += b
        nmsg += m
    weights, act_peak, _ = memory_profile(program)
    per_device = tuple(
        DeviceMemory(dev.name, weights[d], act_peak[d], weights[d] + act_peak[d], dev.memory_bytes)
        for d, dev in enumerate(problem.cluster.devices)
    )
    joules = energy_profile(program, comm + comp)
    return CostReport(
        latency_s=comm + comp,
        compute_s=comp,
        comm_s=comm,
        bytes_sent=nbytes,
        messages=nmsg,
        lower_bound_s=problem.lower_bound_s(),
        per_device=per_device,
        per_op=tuple(per_op),
        energy_j=None if joules is None else joules[0],
        energy_per_device=None if joules is None else joules[1],
    )


def evaluate(problem: Problem, plan: Plan | Mapping[str, str], validate: bool = True) -> CostReport:
    """Cost of ``plan`` on ``problem`` (see the module docstring for the model)."""
    return evaluate_program(compile_plan(problem, plan, validate=validate))


def latency(problem: Problem, plan: Mapping[str, str]) -> float:
    """Just the latency, summed straight from the cached terms (no validation).

    Sums in the same order as :func:`evaluate_program`, so both give the same
    float to the last digit; an infeasible edge gives ``inf``.
    """
    t = terms(problem)
    comm = comp = 0.0
    for op in problem.graph:
        s = plan[op.name]
        step_comm = 0.0
        for i, src in enumerate(op.inputs):
            e = t.edge(src, op.name, i, plan[src], s)
            if e is None:
                return float("inf")
            step_comm += e.time_s
        comm += step_comm
        comp += t.node(op.name, s).compute_s
    return comm + comp
