"""Baseline ``deepthings``: one fused spatial stack over the early layers, the rest on the host.

After DeepThings (Zhao, Mirzazad Barijough, Gerstlauer, IEEE TCAD 2018): its
fused tile partitioning runs the first layers of the CNN (the first 16 of
YOLOv2, down to 1/16 of the input resolution) as one fused stack, each device
computing its tile and recomputing the overlapping halos instead of
exchanging them, then hands the feature map to one device for the rest.

Here the stack is one chain of fusable ops (:func:`iopopt.model.fused.fusable`)
from the graph input's consumer on, ending at the first op whose output
height is at most ``1/downsample`` of the input height (or where the chain
ends: a join, a layer with several consumers, a flatten). Its ops are in
``rows_fused<d>`` and its last op in ``rows``; everything else runs on the
host, which gathers the stack's output. Deviations from the paper: tiles are
row bands, not a 2-D grid, and the bands follow the cluster's ``split``
policy (even on the homogeneous presets, ``split: equal`` for an even split
on any cluster), since the row split belongs to the problem, not to a plan.
"""

from __future__ import annotations

from ..cost.evaluate import latency
from ..model.fused import fusable, fused_chain
from ..model.layouts import fused_name
from ..model.problem import Problem
from .base import Solver, SolverError, SolveResult

__all__ = ["DeepThings", "deepthings_stack"]


def deepthings_stack(problem: Problem, downsample: int = 8) -> tuple[str, ...]:
    """The op names of the early fused stack (first to last); empty when the input's consumer is not fusable."""
    g = problem.graph
    consumers = g.consumers(g.input_name)
    if problem.k < 2 or not consumers or not fusable(g[consumers[0][0]]):
        return ()
    h_in = g[g.input_name].out_shape[2]
    chain = [consumers[0][0]]
    while g[chain[-1]].out_shape[2] * downsample > h_in:
        nxt = fused_chain(g, chain[-1], 1)
        if nxt is None:
            break
        chain.append(nxt[0].name)
    return tuple(chain)


class DeepThings(Solver):
    """A fused stack over the early layers down to 1/``downsample`` of the input height; the rest on the host.

    ``extra['stack']`` lists the stack's ops (first to last).
    """

    name = "deepthings"

    def __init__(self, downsample: int = 8):
        self.downsample = downsample

    def check_settings(self) -> None:
        """Raise :class:`SolverError` naming a bad setting and its valid values."""
        if isinstance(self.downsample, bool) or not isinstance(self.downsample, int) or self.downsample < 1:
            raise SolverError(f"{self.name}: downsample must be a positive integer, got {self.downsample!r}")

    def _solve(self, problem: Problem) -> SolveResult:
        stack = deepthings_stack(problem, self.downsample)
        n = len(stack)
        strategies = {name: fused_name(n - 1 - i) for i, name in enumerate(stack[:-1])}
        if stack:
            strategies[stack[-1]] = "rows"
        plan = problem.plan(strategies)
        return SolveResult(
            self.name, "completed", plan, objective=latency(problem, plan), extra={"stack": list(stack)}
        )
