"""The greedy of the IOP paper: pair operators by their latency benefit.

Interleaved Operator Partitioning (Liu, Xu et al., arXiv 2409.07693) starts
from a base plan and repeatedly applies the IOP pair (conv/linear ``a`` in
``oc``, channel-wise ops between in ``channel``, conv/linear ``b`` in ``ic``)
whose application lowers the latency most, each operator in at most one pair,
until no pair helps. The base plans and the candidate pairs are the shared
decision space of :mod:`iopopt.space.pairs`, so ``ilp``/``brute`` with
``space: pairs`` measure this greedy's algorithmic gap.

Benefits are computed incrementally: the latency is a sum of node terms and
edge terms (:mod:`iopopt.cost`), so applying a pair changes only the node
terms of its nodes and the edge terms touching them. After a pair is applied,
only the pairs whose terms involve one of its nodes are re-evaluated.

Examples
--------
>>> from iopopt.solvers.greedy_iop import GreedyIop
>>> result = GreedyIop(base="coedge").solve(problem)  # doctest: +SKIP
>>> result.extra["pairs"]  # doctest: +SKIP
[['conv1', 'conv2'], ...]
"""

from __future__ import annotations

import math

from ..compile.terms import terms
from ..cost.evaluate import latency
from ..model.problem import Plan, Problem
from ..space.pairs import BASES, Pair, apply_pairs, base_plan, candidate_pairs
from .base import Solver, SolverError, SolveResult

__all__ = ["GreedyIop", "BENEFIT_RTOL"]

#: Benefits within ``BENEFIT_RTOL × T(base plan)`` of each other are ties, and a
#: benefit must exceed it to count as positive. Far below any meaningful time
#: (1 ns on a 1 s latency), far above float rounding of the term sums; it makes
#: the choice among equal pairs (identical ResNet blocks) follow the
#: topological tie-break instead of rounding noise.
BENEFIT_RTOL = 1e-9


class GreedyIop(Solver):
    """The paper's greedy pairing heuristic.

    Parameters
    ----------
    base : {"coedge", "oc"}
        Base plan the pairs are applied to (see :func:`iopopt.space.pairs.base_plan`).
    recompute : bool
        True: after each applied pair, re-evaluate the benefits it may have
        changed and pick the best again (the result is a local optimum: no
        remaining non-conflicting pair has a positive benefit). False: rank
        the pairs once by their benefit on the base plan and walk that ranking,
        skipping pairs that overlap an applied one and pairs whose benefit on
        the current plan is no longer positive (checked once, when their turn
        comes), so the result is never worse than the base plan.

    Notes
    -----
    Ties (benefits within :data:`BENEFIT_RTOL` of the best) go to the pair
    whose ``a`` comes first in topological order, then by name. The result
    reports termination ``completed``, no bound, and in ``extra``: ``pairs``
    (applied ``[a, b]`` in order), ``benefits_s``, ``evaluations`` (benefit
    evaluations), ``candidates``, ``base`` and ``base_latency_s``.
    """

    name = "greedy_iop"

    def __init__(self, base: str = "coedge", recompute: bool = True):
        self.base = base
        self.recompute = recompute

    def check_settings(self) -> None:
        """Raise :class:`SolverError` naming a bad setting and its valid values."""
        if self.base not in BASES:
            raise SolverError(f"{self.name}: unknown base {self.base!r}; valid: {list(BASES)}")
        if not isinstance(self.recompute, bool):
            raise SolverError(f"{self.name}: recompute must be true or false, got {self.recompute!r}")

    def _solve(self, problem: Problem) -> SolveResult:
        base = base_plan(problem, self.base)
        base_latency = latency(problem, base)
        search = _Search(problem, base, candidate_pairs(problem), BENEFIT_RTOL * base_latency)
        applied, benefits = search.run(self.recompute)
        plan = apply_pairs(base, applied)
        if plan != Plan(search.current):  # pragma: no cover - internal consistency
            raise SolverError(f"{self.name}: incremental plan differs from apply_pairs; please report")
        return SolveResult(
            solver=self.name,
            termination="completed",
            plan=plan,
            objective=latency(problem, plan),
            bound=None,
            extra={
                "base": self.base,
                "base_latency_s": base_latency,
                "candidates": len(search.pairs),
                "pairs": [[p.a, p.b] for p in applied],
                "benefits_s": benefits,
                "evaluations": search.evaluations,
            },
        )


class _Search:
    """Incremental state of one greedy run: the current plan and each pair's local terms."""

    def __init__(self, problem: Problem, base: Plan, pairs: list[Pair], tol_s: float):
        self.tables = terms(problem)
        self.graph = problem.graph
        self.pairs = pairs
        self.tol_s = tol_s
        self.current = base.to_dict()
        self.evaluations = 0
        pos = self.graph.position
        self._rank = [(pos[p.a], str(p)) for p in pairs]
        self._changes = [p.strategies() for p in pairs]
        self._edges = [self._touched_edges(p) for p in pairs]
        # node -> pairs whose benefit reads that node's strategy (their nodes
        # and the far ends of their edges), to know what to re-evaluate
        self._readers: dict[str, list[int]] = {}
        for j, edges in enumerate(self._edges):
            for n in sorted({n for u, v, _ in edges for n in (u, v)}):
                self._readers.setdefault(n, []).append(j)
        self._owner: dict[str, list[int]] = {}
        for j, p in enumerate(pairs):
            for n in p.nodes:
                self._owner.setdefault(n, []).append(j)

    def _touched_edges(self, pair: Pair) -> tuple[tuple[str, str, int], ...]:
        g = self.graph
        edges = set()
        for n in pair.nodes:
            edges.update((src, n, i) for i, src in enumerate(g[n].inputs))
            edges.update((n, c, i) for c, i in g.consumers(n))
        pos = g.position
        return tuple(sorted(edges, key=lambda e: (pos[e[1]], e[2])))

    def _local_s(self, j: int, strategy) -> float:
        """Node terms of pair ``j``'s nodes plus edge terms touching them, under ``strategy(node)``."""
        t = self.tables
        total = 0.0
        for n in self.pairs[j].nodes:
            total += t.node(n, strategy(n)).compute_s
        for u, v, i in self._edges[j]:
            e = t.edge(u, v, i, strategy(u), strategy(v))
            if e is None:
                return math.inf
            total += e.time_s
        return total

    def benefit(self, j: int) -> float:
        """T(current) − T(current with pair ``j``), from the terms that change only."""
        self.evaluations += 1
        cur = self.current
        changes = self._changes[j]
        before = self._local_s(j, cur.__getitem__)
        after = self._local_s(j, lambda n: changes.get(n) or cur[n])
        return before - after

    def _pick(self, alive: set[int], benefit: dict[int, float]) -> int | None:
        best = max(benefit[j] for j in alive)
        if best <= self.tol_s:
            return None
        near = (j for j in alive if benefit[j] >= best - self.tol_s)
        return min(near, key=self._rank.__getitem__)

    def run(self, recompute: bool) -> tuple[list[Pair], list[float]]:
        """Apply pairs greedily; returns the applied pairs and their benefits (s), in order."""
        alive = set(range(len(self.pairs)))
        benefit = {j: self.benefit(j) for j in alive}
        applied: list[Pair] = []
        gains: list[float] = []
        while alive:
            j = self._pick(alive, benefit)
            if j is None:
                break
            gain = benefit[j]
            if not recompute:
                gain = self.benefit(j)
                if gain <= self.tol_s:
                    alive.discard(j)
                    continue
            pair = self.pairs[j]
            self.current.update(self._changes[j])
            applied.append(pair)
            gains.append(gain)
            for n in pair.nodes:
                alive.difference_update(self._owner[n])
            if recompute:
                stale = {q for n in pair.nodes for q in self._readers.get(n, ()) if q in alive}
                for q in sorted(stale):
                    benefit[q] = self.benefit(q)
        return applied, gains
