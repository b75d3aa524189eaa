"""Exact cross-check solvers: dynamic programming on chains (``dp``) and exhaustive search (``brute``).

Both exist to check the ILP (and the greedy) with an independent algorithm:
``dp`` is linear in the graph size but needs a chain; ``brute`` takes any
graph but only tiny ones, and refuses bigger instances with a clear error
instead of running for hours. Both minimise latency or energy (``objective``);
``brute`` also takes every budget of the ILP (``deadline_s``,
``energy_budget_j``, ``memory_budget_bytes``) and the ``peak_memory``
objective, ``dp`` refuses them (a budget turns the chain DP into a
constrained shortest path).
"""

from __future__ import annotations

import math

from ..compile.terms import terms
from ..model.problem import Plan, Problem
from ._objectives import objective_value_of, term_costs
from .base import BUDGETS, Solver, SolverError, SolveResult, check_objective
from .brute import SPACES, BruteSolver

__all__ = ["DpSolver", "BruteSolver", "SPACES"]


class DpSolver(Solver):
    """Exact dynamic programming over a chain graph (every node: at most one input and one consumer).

    Latency on a chain is Σ_v node(v, s_v) + Σ edge(pred(v), v, s_pred, s_v),
    so the optimum follows from one pass in topological order keeping, per
    strategy of the current node, the cheapest prefix. Ties go to the earlier
    strategy in :func:`iopopt.layouts.strategies_for` order.

    Memory capacities are *ignored*: ``dp`` minimises latency or energy only
    (the peak is a maximum over steps of a sum over the whole graph, which
    does not decompose along the chain). :meth:`Solver.solve` still checks the
    plan, and a plan over capacity comes back with ``memory_fits`` false; use
    ``ilp`` or ``brute`` for memory-constrained instances. Budgets are refused
    (the settings exist so that every exact solver takes the same ones).

    Parameters
    ----------
    objective : {"latency", "energy"}
        What to minimise (energy: every device needs power figures).
    deadline_s, energy_budget_j, memory_budget_bytes : None
        Not supported: any value is refused with a message naming ``ilp`` and ``brute``.
    """

    name = "dp"
    exact = True

    def __init__(
        self,
        objective: str = "latency",
        deadline_s: float | None = None,
        energy_budget_j: float | None = None,
        memory_budget_bytes: float | None = None,
    ):
        self.objective = objective
        self.deadline_s = deadline_s
        self.energy_budget_j = energy_budget_j
        self.memory_budget_bytes = memory_budget_bytes

    def check_settings(self) -> None:
        """Raise :class:`SolverError` naming a bad setting and its valid values."""
        check_objective("dp", self.objective)
        if self.objective == "peak_memory":
            raise SolverError("dp: objective peak_memory does not decompose along a chain; valid: latency, energy")
        given = [key for key in BUDGETS if getattr(self, key) is not None]
        if given:
            raise SolverError(
                f"dp: budgets are not supported ({', '.join(given)} given): a budget makes the chain DP a "
                "constrained shortest path; use ilp or brute"
            )

    def _solve(self, problem: Problem) -> SolveResult:
        g, t = problem.graph, terms(problem)
        _require_chain(problem)
        node_cost, edge_cost = term_costs(problem, self.objective, "dp")
        # best[s] = (cost of the cheapest prefix ending with this node in s, strategy of the predecessor)
        back: dict[str, dict[str, str | None]] = {}
        best: dict[str, float] = {}
        prev = None
        for op in g:
            cur: dict[str, float] = {}
            arg: dict[str, str | None] = {}
            for s in problem.strategies(op.name):
                own = node_cost(t.node(op.name, s))
                if prev is None:
                    cur[s], arg[s] = own, None
                    continue
                choice, cost = None, math.inf
                for q, c in best.items():
                    e = t.edge(prev, op.name, 0, q, s)
                    if e is not None and c + edge_cost(e) < cost:
                        choice, cost = q, c + edge_cost(e)
                if choice is not None:
                    cur[s], arg[s] = cost + own, choice
            best, back[op.name], prev = cur, arg, op.name
        # the last node of a chain is the graph output
        s = min(best, key=lambda q: (best[q], problem.strategies(prev).index(q)))
        plan = {}
        for name in reversed(g.order):
            plan[name] = s
            s = back[name][s]
        plan = Plan({n: plan[n] for n in g.order})
        objective = objective_value_of(problem, plan, self.objective)
        extra = {"memory": f"ignored: dp minimises {self.objective} only"}
        return SolveResult(
            self.name, "optimal", plan, objective=objective, bound=objective, extra=extra, objective_name=self.objective
        )


def _require_chain(problem: Problem) -> None:
    g = problem.graph
    if g.is_chain():
        return
    for op in g:
        if len(op.inputs) > 1:
            why = f"node {op.name!r} has {len(op.inputs)} inputs"
            break
        cons = g.consumers(op.name)
        if len(cons) > 1:
            why = f"node {op.name!r} has {len(cons)} consumers"
            break
    raise SolverError(f"dp: graph {g.name!r} is not a chain ({why}); use ilp or brute for DAGs")
