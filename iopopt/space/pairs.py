"""The IOP decision space: base plans and interleaved operator pairs.

The greedy of the paper (:mod:`iopopt.solvers.greedy_iop`) and the exact solvers in
its space (``ilp``/``brute`` with ``space: pairs``) search the same set of
plans: a *base plan* plus a set of disjoint *IOP pairs*.

Base plans (:func:`base_plan`), by node kind:

``coedge`` (CoEdge-style row partitioning)
    conv → ``rows``; channel-wise ops with a 4-D output → ``rows`` (``host``
    when the op cannot be row-split, e.g. an avgpool with ``ceil_mode``);
    ``add``/``cat`` with a 4-D output → ``rows``; ``flatten``, ``linear`` and
    everything with a 2-D output → ``host``; graph input/output → ``host``.
``oc`` (gather after every operator)
    conv/linear and grouped conv → ``oc``; every other op → ``channel``
    (``replicate`` for channel-mixing ops, which cannot split channels);
    graph input/output → ``host``.

IOP pairs (:func:`candidate_pairs`): a pair ``(a, b, between)`` is a
conv/linear ``a`` and a conv/linear ``b`` joined by a path ``a → between... →
b`` where every node of ``between`` is channel-wise (activation, batchnorm,
pools, depthwise conv, dropout, flatten, global mean) or a grouped conv (whose
``channel`` strategy keeps whole groups where their input channels are) and ``a`` and every node of
``between`` have exactly one consumer (the next node of the path). Since the
path from ``a`` is forced, each ``a`` has at most one candidate pair.
Applying a pair (:func:`apply_pairs`) sets ``a`` to ``oc``, ``between`` to
``channel`` and ``b`` to ``ic``; the compiler reshards ``b``'s partial-sum
output into whatever its consumers need. Pairs in one plan must be disjoint
(each node in at most one pair); as ``between`` paths never overlap, two
candidates can only clash through a conv/linear that is ``b`` of one and ``a``
of the other.

Every base plan, with any set of disjoint pairs applied, is a valid plan.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..model.graph import CHANNELWISE_KINDS, GROUPED_KINDS, HEAVY_KINDS
from ..model.problem import Plan, Problem

__all__ = ["BASES", "Pair", "base_plan", "candidate_pairs", "apply_pairs", "conflicts"]

#: Names of the base plans.
BASES = ("coedge", "oc")

#: Kinds that may lie between the two operators of a pair (their ``channel`` strategy needs no gather).
BETWEEN_KINDS = CHANNELWISE_KINDS | GROUPED_KINDS

#: Strategies of a pair's members.
PAIR_STRATEGIES = {"a": "oc", "between": "channel", "b": "ic"}


@dataclass(frozen=True)
class Pair:
    """An IOP pair: ``a`` in ``oc``, the channel-wise ``between`` nodes in ``channel``, ``b`` in ``ic``."""

    a: str
    b: str
    between: tuple[str, ...] = ()

    @property
    def nodes(self) -> tuple[str, ...]:
        """Every node the pair sets, in path order."""
        return (self.a, *self.between, self.b)

    def strategies(self) -> dict[str, str]:
        """Node → strategy that applying this pair sets."""
        out = {self.a: PAIR_STRATEGIES["a"], self.b: PAIR_STRATEGIES["b"]}
        out.update((n, PAIR_STRATEGIES["between"]) for n in self.between)
        return out

    def __str__(self) -> str:
        return " → ".join(self.nodes)


def _coedge_strategy(problem: Problem, name: str) -> str:
    op = problem.graph[name]
    if op.kind in ("input", "output", "linear", "flatten") or len(op.out_shape) != 4:
        return "host"
    if op.kind == "conv":
        return "rows"
    return "rows" if "rows" in problem.strategies(name) else "host"


def _oc_strategy(problem: Problem, name: str) -> str:
    kind = problem.graph[name].kind
    if kind in ("input", "output"):
        return "host"
    if kind in HEAVY_KINDS or kind in GROUPED_KINDS:
        return "oc"
    return "channel" if "channel" in problem.strategies(name) else "replicate"


def base_plan(problem: Problem, base: str = "coedge") -> Plan:
    """The base plan ``base`` (one of :data:`BASES`) of ``problem``; see the module docstring."""
    if base == "coedge":
        rule = _coedge_strategy
    elif base == "oc":
        rule = _oc_strategy
    else:
        raise ValueError(f"unknown base plan {base!r}; valid: {list(BASES)}")
    return Plan({name: rule(problem, name) for name in problem.graph.order})


def candidate_pairs(problem: Problem) -> list[Pair]:
    """Every candidate IOP pair of ``problem``'s graph, in topological order of ``a``."""
    g = problem.graph
    pairs = []
    for op in g:
        if op.kind not in HEAVY_KINDS:
            continue
        between: list[str] = []
        cur = op.name
        while True:
            cons = g.consumers(cur)
            if len(cons) != 1:
                break
            nxt = g[cons[0][0]]
            if nxt.kind in HEAVY_KINDS:
                pairs.append(Pair(op.name, nxt.name, tuple(between)))
                break
            if nxt.kind not in BETWEEN_KINDS:
                break
            between.append(nxt.name)
            cur = nxt.name
    return pairs


def conflicts(pairs: Iterable[Pair]) -> list[tuple[Pair, Pair]]:
    """Pairs of pairs that share a node (in input order)."""
    pairs = list(pairs)
    owner: dict[str, int] = {}
    out = []
    for j, p in enumerate(pairs):
        clash = sorted({owner[n] for n in p.nodes if n in owner})
        out.extend((pairs[i], p) for i in clash)
        for n in p.nodes:
            owner.setdefault(n, j)
    return out


def apply_pairs(plan: Plan, pairs: Iterable[Pair]) -> Plan:
    """``plan`` with every pair of ``pairs`` applied; raises ``ValueError`` if two pairs share a node."""
    pairs = list(pairs)
    clash = conflicts(pairs)
    if clash:
        p, q = clash[0]
        raise ValueError(f"IOP pairs ({p}) and ({q}) share a node; pairs must be disjoint")
    changes: dict[str, str] = {}
    for p in pairs:
        changes.update(p.strategies())
    return plan.with_(changes)
