"""The ILP model: binaries per node strategy, edge variables per strategy pair; :func:`build` puts it together.

:func:`build` writes the PuLP problem of one :class:`~iopopt.model.problem.Problem`
from its cost terms (:func:`iopopt.compile.terms`): the variables here, the
memory rows (:mod:`.memory`), the objective and the budget rows
(:mod:`.objective`). The model is exact for the cost model (DESIGN §5), see
:mod:`iopopt.solvers.ilp`.

Fused spatial stacks need no variables of their own: ``rows_fused<d>`` names
a stack segment by how far it still runs (the d ops after the node), so each
node's binaries already choose the segment it belongs to, and an edge has
variables only for the pairs that continue a stack (``rows_fused<d>`` →
``rows_fused<d-1>``, ``rows_fused1`` → ``rows``; the others are infeasible
edges, :func:`iopopt.model.fused.breaks_stack`). The marginal rows then force
every stack to run to its end, which is what segment variables would state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ...compile.terms import terms as cost_terms
from ...model.problem import Plan, Problem
from ...space.pairs import Pair, apply_pairs, base_plan, candidate_pairs
from .reduce import dominated, lift
from .twins import collapse

__all__ = ["Model", "build", "affine", "linear"]

# A linear expression is kept as (terms, constant), terms a tuple of (variable, coefficient).
_ONE = ((), 1.0)


@dataclass
class Model:
    """The PuLP problem plus what is needed to read a plan back and explain infeasibility."""

    prob: object
    problem: Problem
    domains: dict[str, tuple[str, ...]]
    x: dict[str, dict[str, tuple]]  # node → strategy → expression
    y: dict[tuple, dict[tuple[str, str], tuple]]  # edge → (strategy, strategy) → expression
    pairs: list[Pair] = field(default_factory=list)
    z: list = field(default_factory=list)
    base: Plan | None = None
    objective: str = "latency"
    scale: float = 1.0  # objective units per objective unit of the cost model (s, J or bytes)
    offset: float = 0.0  # objective constant (fixed nodes and edges), which backends leave out of their bounds
    caps: list[float] = field(default_factory=list)  # per-device byte limit: capacity, or the memory budget
    memory_rows: int = 0
    min_need: list[float] = field(default_factory=list)  # per-device lower bound on peak bytes
    hopeless: bool = False
    peak: object = None  # the variable bounding every device's peak (MiB), for objective peak_memory
    budget_rows: dict[str, float] = field(default_factory=dict)  # budget setting → its limit
    removals: list = field(default_factory=list)  # strategies left out (:mod:`.twins`, :mod:`.reduce`), in order

    def stats(self) -> dict:
        p = self.prob
        out = {
            "variables": p.numVariables(),
            "binaries": sum(1 for v in p.variables() if v.cat == "Integer"),
            "constraints": p.numConstraints(),
            "memory_rows": self.memory_rows,
        }
        if self.base is not None:
            out["candidate_pairs"] = len(self.pairs)
        return out

    def warm_start(self, plan: Plan) -> bool:
        """Give the backend ``plan`` as a starting solution (False when it is outside the model's domains).

        In the ``pairs`` space the start is the base plan (no pair chosen).
        """
        if self.base is not None:
            for z in self.z:
                z.setInitialValue(0)
            return True
        plan = lift(plan, self.removals)
        if any(plan[n] not in dom for n, dom in self.domains.items()):
            return False
        for n, xs in self.x.items():
            for s, (terms, _) in xs.items():
                for var, _coef in terms:
                    var.setInitialValue(1 if s == plan[n] else 0)
        for (u, v, _), ye in self.y.items():
            for (s, q), (terms, _) in ye.items():
                if len(terms) == 1 and terms[0][0].name.startswith("y_"):
                    terms[0][0].setInitialValue(1 if (s, q) == (plan[u], plan[v]) else 0)
        return True

    def extract(self) -> Plan | None:
        if self.base is not None:
            if any(v.varValue is None for v in self.z):
                return None
            chosen = [p for p, v in zip(self.pairs, self.z) if v.varValue > 0.5]
            return apply_pairs(self.base, chosen)
        plan = {}
        for n, dom in self.domains.items():
            if len(dom) == 1:
                plan[n] = dom[0]
                continue
            values = [_value(self.x[n][s]) for s in dom]
            if any(v is None for v in values):
                return None
            plan[n] = dom[max(range(len(dom)), key=lambda i: (values[i], -i))]
        return Plan(plan)


def _value(expr) -> float | None:
    terms, const = expr
    total = const
    for var, coef in terms:
        if var.varValue is None:
            return None
        total += coef * var.varValue
    return total


def _lin(parts) -> tuple[dict, float]:
    """Σ coef·expr over ``parts`` (coef, expr) as (variable → coefficient, constant)."""
    acc: dict = {}
    const = 0.0
    for coef, (terms, c) in parts:
        if coef == 0:
            continue
        const += coef * c
        for var, a in terms:
            acc[var] = acc.get(var, 0.0) + coef * a
    return acc, const


def affine(pulp, parts):
    """Σ coef·expr over ``parts`` (coef, expr) as a PuLP affine expression."""
    acc, const = _lin(parts)
    return pulp.LpAffineExpression([(v, a) for v, a in acc.items() if a != 0], constant=const)


def linear(var) -> tuple:
    """A PuLP variable as an expression of this module's form."""
    return (((var, 1.0),), 0.0)


def _full_domains(problem: Problem, start: Mapping[str, Sequence[str]] | None = None) -> dict[str, tuple[str, ...]]:
    """Each node's strategies (of ``start``, else all), minus those no neighbour strategy can connect to
    (arc consistency)."""
    g, t = problem.graph, cost_terms(problem)
    dom = {n: list(problem.strategies(n) if start is None else start[n]) for n in g.order}
    edges = g.edges()
    changed = True
    while changed:
        changed = False
        for u, v, i in edges:
            keep_u = [s for s in dom[u] if any(t.edge(u, v, i, s, q) is not None for q in dom[v])]
            keep_v = [q for q in dom[v] if any(t.edge(u, v, i, s, q) is not None for s in dom[u])]
            if len(keep_u) != len(dom[u]) or len(keep_v) != len(dom[v]):
                dom[u], dom[v], changed = keep_u, keep_v, True
    return {n: tuple(d) for n, d in dom.items()}


def build(
    pulp,
    problem: Problem,
    space: str,
    base: str,
    memory: str,
    objective: str = "latency",
    budgets: Mapping[str, float] | None = None,
) -> Model:
    """The model of ``problem`` in decision space ``space``, minimising ``objective`` within ``budgets``.

    ``budgets`` maps budget settings (``deadline_s``, ``energy_budget_j``,
    ``memory_budget_bytes``) to their limits.
    """
    from .memory import add_memory_rows
    from .objective import add_budget_rows, set_objective

    budgets = dict(budgets or {})
    reduce = None
    if space == "full" and not budgets and objective in ("latency", "energy"):
        capped = memory != "off" and any(math.isfinite(d.memory_bytes) for d in problem.cluster.devices)
        reduce = (objective, capped)
    model = _variables(pulp, problem, space, base, reduce)
    model.objective = objective
    add_memory_rows(pulp, model, memory, budgets.get("memory_budget_bytes"), peak=objective == "peak_memory")
    set_objective(pulp, model, objective)
    add_budget_rows(pulp, model, {k: v for k, v in budgets.items() if k != "memory_budget_bytes"})
    return model


def _reduced(problem: Problem, domains: dict, quantity: str, memory: bool) -> tuple[dict, list]:
    """``domains`` without dominated strategies (:mod:`.reduce`) for minimising ``quantity``."""
    from ...cost.energy import edge_energy_j, node_energy_j, power_increments

    if quantity == "latency":
        return dominated(problem, domains, lambda term: term.compute_s, lambda e: e.time_s, memory)
    power = power_increments(problem.cluster)
    if power is None:  # the objective reports the missing power figures
        return domains, []

    def joules(e) -> float:
        value = edge_energy_j(power, e)
        return math.inf if value is None else value  # no radio times: never a dominator

    return dominated(problem, domains, lambda term: node_energy_j(power, term), joules, memory)


def _variables(pulp, problem: Problem, space: str, base: str, reduce: tuple[str, bool] | None = None) -> Model:
    """The binaries ``x`` (or ``z`` in the pairs space) and edge variables ``y``, with their rows.

    ``reduce`` = (objective, memory rows possible) leaves out dominated strategies in the full space, and
    placements on twin devices when that is (latency, False).
    """
    g, t = problem.graph, cost_terms(problem)
    removals: list = []
    prob = pulp.LpProblem("iopopt", pulp.LpMinimize)
    index = {n: i for i, n in enumerate(g.order)}

    # decision variables and x[v, s] as expressions ------------------------------------
    x: dict[str, dict[str, tuple]] = {}
    pairs, zs, base_p = [], [], None
    if space == "full":
        start = None
        if reduce == ("latency", False):  # placements on twin devices: one of each kind suffices
            start, removals = collapse(problem, {n: problem.strategies(n) for n in g.order})
        domains = _full_domains(problem, start)
        if reduce is not None:
            domains, more = _reduced(problem, domains, *reduce)
            removals += more
        for n, dom in domains.items():
            if len(dom) == 1:
                x[n] = {dom[0]: _ONE}
                continue
            all_s = problem.strategies(n)
            xs = {s: prob.add_variable(f"x_{index[n]}_{all_s.index(s)}", cat="Binary") for s in dom}
            x[n] = {s: (((var, 1.0),), 0.0) for s, var in xs.items()}
            prob += pulp.LpAffineExpression([(var, 1.0) for var in xs.values()]) == 1, f"one_{index[n]}"
    else:
        base_p = base_plan(problem, base)
        pairs = candidate_pairs(problem)
        zs = [prob.add_variable(f"z_{j}", cat="Binary") for j in range(len(pairs))]
        cover: dict[str, list[tuple]] = {}
        for p, z in zip(pairs, zs):
            for n, s in p.strategies().items():
                cover.setdefault(n, []).append((z, s))
        domains = {}
        for n in g.order:
            parts: dict[str, list] = {base_p[n]: [(1.0, _ONE)]}
            for z, s in cover.get(n, ()):
                zexpr = (((z, 1.0),), 0.0)
                parts[base_p[n]].append((-1.0, zexpr))
                parts.setdefault(s, []).append((1.0, zexpr))
            x[n] = {}
            for s, ps in parts.items():
                acc, const = _lin(ps)
                terms = tuple((v, a) for v, a in acc.items() if a != 0)
                if terms or const:
                    x[n][s] = (terms, const)
            domains[n] = tuple(x[n])
            if len(cover.get(n, ())) > 1:  # each node in at most one chosen pair
                prob += (
                    pulp.LpAffineExpression([(z, 1.0) for z, _ in cover[n]]) <= 1,
                    f"disjoint_{index[n]}",
                )

    # y[e, s, t] (or the x it equals when one end has a single strategy) ---------------
    y: dict[tuple, dict[tuple[str, str], tuple]] = {}
    for e_id, (u, v, i) in enumerate(g.edges()):
        du, dv = domains[u], domains[v]
        su, sv = problem.strategies(u), problem.strategies(v)
        # in strategy order, so that the model (and ties between equal plans) never depends on hashing
        feasible = sorted(
            ((s, q) for s in du for q in dv if t.edge(u, v, i, s, q) is not None),
            key=lambda sq: (su.index(sq[0]), sv.index(sq[1])),
        )
        ye: dict[tuple[str, str], tuple] = {}
        if len(du) == 1 or len(dv) == 1:
            for s, q in feasible:
                ye[(s, q)] = x[v][q] if len(du) == 1 else x[u][s]
            # a strategy with no feasible partner across this edge is forbidden
            for s in du:
                if len(dv) == 1 and (s, dv[0]) not in ye:
                    prob += affine(pulp, [(1.0, x[u][s])]) == 0
            for q in dv:
                if len(du) == 1 and (du[0], q) not in ye:
                    prob += affine(pulp, [(1.0, x[v][q])]) == 0
        else:
            for s, q in feasible:
                var = prob.add_variable(f"y_{e_id}_{su.index(s)}_{sv.index(q)}", lowBound=0)
                ye[(s, q)] = (((var, 1.0),), 0.0)
            for s in du:
                row = [(1.0, ye[(s, q)]) for q in dv if (s, q) in ye] + [(-1.0, x[u][s])]
                prob += affine(pulp, row) == 0, f"mu_{e_id}_{su.index(s)}"
            for q in dv:
                row = [(1.0, ye[(s, q)]) for s in du if (s, q) in ye] + [(-1.0, x[v][q])]
                prob += affine(pulp, row) == 0, f"mv_{e_id}_{sv.index(q)}"
        y[(u, v, i)] = ye

    return Model(prob, problem, domains, x, y, pairs=pairs, z=zs, base=base_p, removals=removals)
