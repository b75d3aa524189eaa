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

from ..compile.program import compile_plan
from ..compile.terms import terms
from ..cost.evaluate import latency
from ..cost.memory import memory_profile
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
    memory_aware : bool
        False (the paper's algorithm): pairs are chosen by latency alone and
        the plan may exceed a device's memory. True: a base plan that exceeds
        memory is first repaired by applying, one at a time, the pair that
        lowers the total excess over the capacities most (until it fits or no
        pair lowers it), and afterwards a pair is applied only if the plan
        still fits (a pair that would break a capacity is dropped).
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
    evaluations), ``candidates``, ``base`` and ``base_latency_s``; with
    ``memory_aware``, also ``repair_pairs`` (the pairs applied to make the base
    fit) and ``rejected_for_memory`` (pairs dropped because they broke a capacity).
    """

    name = "greedy_iop"

    def __init__(self, base: str = "coedge", recompute: bool = True, memory_aware: bool = False):
        self.base = base
        self.recompute = recompute
        self.memory_aware = memory_aware

    def check_settings(self) -> None:
        """Raise :class:`SolverError` naming a bad setting and its valid values."""
        if self.base not in BASES:
            raise SolverError(f"{self.name}: unknown base {self.base!r}; valid: {list(BASES)}")
        if not isinstance(self.recompute, bool):
            raise SolverError(f"{self.name}: recompute must be true or false, got {self.recompute!r}")
        if not isinstance(self.memory_aware, bool):
            raise SolverError(f"{self.name}: memory_aware must be true or false, got {self.memory_aware!r}")

    def _solve(self, problem: Problem) -> SolveResult:
        base = base_plan(problem, self.base)
        base_latency = latency(problem, base)
        pairs = candidate_pairs(problem)
        extra: dict = {}
        repair: list[Pair] = []
        start, check = base, None
        if self.memory_aware:
            repair = _repair(problem, base, pairs)
            start = apply_pairs(base, repair)
            extra["repair_pairs"] = [[p.a, p.b] for p in repair]
            used = {n for p in repair for n in p.nodes}
            pairs = [p for p in pairs if not used & set(p.nodes)]
            if _excess(problem, start) == 0:  # from here on, only pairs that keep the plan within memory
                check = lambda plan: _excess(problem, plan) == 0  # noqa: E731
        search = _Search(problem, start, pairs, BENEFIT_RTOL * base_latency, check)
        applied, benefits = search.run(self.recompute)
        applied = repair + applied
        plan = apply_pairs(base, applied)
        if self.memory_aware:
            extra["rejected_for_memory"] = [[p.a, p.b] for p in search.rejected]
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
                **extra,
            },
        )


def _excess(problem: Problem, plan: Plan) -> int:
    """Bytes by which the plan's peaks exceed the devices' capacities, summed over the devices."""
    weights, peaks, _ = memory_profile(compile_plan(problem, plan, validate=False))
    total = 0.0
    for d, dev in enumerate(problem.cluster.devices):
        total += max(0.0, weights[d] + peaks[d] - dev.memory_bytes)
    return math.ceil(total)


def _repair(problem: Problem, base: Plan, pairs: list[Pair]) -> list[Pair]:
    """Pairs that bring ``base`` within memory: each step the one that lowers the excess most (ties: latency)."""
    plan, chosen = base, []
    excess = _excess(problem, plan)
    free = list(pairs)
    while excess > 0 and free:
        best = None
        for p in free:
            trial = apply_pairs(plan, [p])
            score = (_excess(problem, trial), latency(problem, trial))
            if score[0] < excess and (best is None or score < best[0]):
                best = (score, p, trial)
        if best is None:
            break
        (excess, _), pair, plan = best
        chosen.append(pair)
        free = [q for q in free if not set(q.nodes) & set(pair.nodes)]
    return chosen


class _Search:
    """Incremental state of one greedy run: the current plan and each pair's local terms."""

    def __init__(self, problem: Problem, base: Plan, pairs: list[Pair], tol_s: float, check=None):
        self.check = check  # plan -> bool: whether a pair may be applied (None: any pair)
        self.rejected: list[Pair] = []
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
            if self.check is not None and not self.check(Plan({**self.current, **self._changes[j]})):
                self.rejected.append(pair)
                alive.discard(j)
                continue
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
