"""Simple plan builders: the baseline plan families and seeded random plans.

Each function returns a validated :class:`~iopopt.problem.Plan` for a
problem. Input and output nodes are always ``host``. Where a node kind cannot
use the family's strategy, the builder falls back as documented per function;
the compiler inserts whatever resharding the chosen layouts need.

>>> from iopopt import Problem, Cluster, trace, zoo
>>> from iopopt.model import SharedNetwork
>>> model, shape = zoo.build("tiny_chain")
>>> problem = Problem(trace(model, shape), Cluster.homogeneous(2, 1e9), SharedNetwork(1e6))
>>> all_oc(problem)["conv1"]
'oc'
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from ..model.layouts import edge_feasible, strategies_for
from ..model.problem import Plan
from .pairs import base_plan

__all__ = ["all_host", "all_oc", "coedge", "alternating", "random_plan", "draw_plan", "PLAN_KINDS", "build_plan"]


def _pick(op, preferred: tuple[str, ...]) -> str:
    valid = strategies_for(op)
    for s in preferred:
        if s in valid:
            return s
    return "host"


def _finish(problem, strategies: Mapping[str, str]) -> Plan:
    plan = Plan(strategies)
    plan.validate(problem)
    return plan


def all_host(problem) -> Plan:
    """Everything on the host (the single-device baseline)."""
    return _finish(problem, {op.name: "host" for op in problem.graph})


def all_oc(problem) -> Plan:
    """Every conv/linear (and grouped conv) ``oc``; every other node ``channel`` (``replicate`` where it has none).

    The gather the ``oc`` strategy needs before each conv/linear (its input is
    replicated) is the resharding the compiler emits. The same plan as
    :func:`iopopt.space.pairs.base_plan` ``"oc"``.
    """
    return _finish(problem, base_plan(problem, "oc"))


def coedge(problem) -> Plan:
    """CoEdge-style: every 4-D node that can split rows does (convs and their channel-wise followers, adds,
    concats); linear layers, flatten, 2-D nodes and ops without a row strategy run on the host.
    The same plan as :func:`iopopt.space.pairs.base_plan` ``"coedge"``."""
    return _finish(problem, base_plan(problem, "coedge"))


def alternating(problem) -> Plan:
    """IOP-style: conv/linear nodes alternately ``oc`` and ``ic`` in topological order.

    Other nodes are ``channel`` where they can be, except an ``add`` whose two
    inputs are both partial sums (an ``ic`` conv/linear or such an add), which
    is ``partial`` so the sum is reduced once, later.
    """
    out: dict[str, str] = {}
    g = problem.graph
    nxt = "oc"
    for op in g:
        if op.kind in ("conv", "linear"):
            out[op.name] = nxt
            nxt = "ic" if nxt == "oc" else "oc"
        elif op.kind == "add" and all(out[i] in ("ic", "partial") for i in op.inputs):
            out[op.name] = "partial"
        else:
            out[op.name] = _pick(op, ("channel",))
    return _finish(problem, out)


def random_plan(problem, seed: int) -> Plan:
    """A seeded random valid plan: :func:`draw_plan` with ``random.Random(seed)``, validated."""
    return _finish(problem, draw_plan(problem, random.Random(seed)))


def draw_plan(problem, rng: random.Random) -> Plan:
    """A random valid plan drawn with ``rng`` (not re-validated: valid by construction).

    Per node (topological order) a uniform choice among its applicable
    strategies whose input edges are feasible given the producers' choices
    (only a ``partial`` add needs its inputs to be partial sums, so a feasible
    choice always exists): rejection sampling done per node instead of per plan.
    """
    out: dict[str, str] = {}
    for op in problem.graph:
        options = [s for s in problem.strategies(op.name) if all(edge_feasible(out[src], s) for src in op.inputs)]
        out[op.name] = rng.choice(options)
    return Plan(out)


#: The deterministic plan families by name.
PLAN_KINDS = {"all_host": all_host, "all_oc": all_oc, "coedge": coedge, "alternating": alternating}


def build_plan(problem, kind: str, seed: int = 0) -> Plan:
    """A plan of family ``kind`` (one of :data:`PLAN_KINDS` or ``random``)."""
    if kind == "random":
        return random_plan(problem, seed)
    try:
        return PLAN_KINDS[kind](problem)
    except KeyError:
        raise ValueError(f"unknown plan kind {kind!r}; valid: {sorted(PLAN_KINDS) + ['random']}") from None
