"""Memory per device: weight shards and the activation peak of a compiled plan.

``held_d(p)``, what device d holds while step p runs, is the stored part of
every tensor produced earlier and still awaited by a later (or the current)
step, plus the buffers d assembles for step p's inputs, plus step p's output
part. The activation peak is the maximum over steps; the simulated executor
measures the same figures from the tensors it really holds.
"""

from __future__ import annotations

from ..compile.program import Program

__all__ = ["memory_profile"]


def memory_profile(program: Program) -> tuple[list[int], list[int], list[list[int]]]:
    """Per-device weight bytes, activation peaks and held bytes at every step.

    ``held[p][d]`` is what device d holds while step p runs: the stored parts
    of every tensor produced earlier and still awaited by a later (or the
    current) step, the buffers it assembled for step p, and step p's output.
    """
    problem = program.problem
    g = problem.graph
    k = problem.k
    weights = [0] * k
    live = [0] * k
    peak = [0] * k
    held_steps = []
    freed_at = g.free_schedule()
    stored: dict[str, tuple[int, ...]] = {}
    for p, step in enumerate(program.steps):
        term = step.term
        held = list(live)
        for d in range(k):
            weights[d] += term.weight_bytes[d]
            held[d] += term.out_bytes[d] + sum(r.staging_bytes[d] for r in step.inputs)
            if held[d] > peak[d]:
                peak[d] = held[d]
        held_steps.append(held)
        # stored after the step, then everything whose last use this step was is freed (as the executors do)
        stored[step.op.name] = term.out_bytes
        for d in range(k):
            live[d] += term.out_bytes[d]
        for gone in freed_at.get(p, ()):
            b = stored.pop(gone)
            for d in range(k):
                live[d] -= b[d]
    return weights, peak, held_steps
