"""Exact integer-programming solver (``ilp``).

Latency is a sum of node terms and edge terms (DESIGN §3), so the optimal plan
is the optimum of a linear model with a binary ``x[v, s]`` per node and
strategy and a continuous ``y[e, s, t] ≥ 0`` per edge and feasible strategy
pair, tied together by the marginals ``Σ_t y[e, s, t] = x[u, s]`` and
``Σ_s y[e, s, t] = x[v, t]``. At an integral ``x`` the marginals force ``y``
to the product ``x[u, s]·x[v, t]``, so the model is exact; an infeasible
pair (a consumer needing a partial sum its producer does not make) simply
has no ``y``, which forbids it.

Memory (``cost.memory_profile``) is linear in the same variables: device d
needs ``W_d + held_d(p) ≤ capacity_d`` at every step p, where ``W_d`` sums
the weight shards and ``held_d(p)`` the stored outputs still awaited at p,
the buffers staged for p's inputs and p's own output.

``space: pairs`` restricts the plans to the greedy's decision space
(:mod:`iopopt.pairs`): a base plan plus disjoint IOP pairs, one binary ``z``
per candidate pair, with each ``x`` an affine function of the ``z``.

The backend is any PuLP solver by name (``PULP_CBC_CMD`` bundled, ``HiGHS``
through highspy). The returned objective is the cost model's latency of the
extracted plan; ``bound`` is the backend's proven lower bound (seconds).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from iopopt.cost import latency
from iopopt.pairs import BASES, Pair, apply_pairs, base_plan, candidate_pairs
from iopopt.problem import Plan, Problem
from iopopt.solver import SolveResult, Solver, SolverError

__all__ = ["IlpSolver", "SPACES", "MEMORY_MODES"]

#: Decision spaces: every strategy of every node, or the greedy's base plan + IOP pairs.
SPACES = ("full", "pairs")
#: ``auto``: memory rows only where a finite capacity could bind; ``on``: every finite-capacity row; ``off``: none.
MEMORY_MODES = ("auto", "on", "off")

_MIB = float(1 << 20)  # memory rows are written in MiB to keep coefficients moderate
_PROOF_RTOL = 1e-6  # a proven plan may exceed the backend's bound by at most this (backend tolerances)

# A linear expression is kept as (terms, constant), terms a tuple of (variable, coefficient).
_ONE = ((), 1.0)


class IlpSolver(Solver):
    """Exact solver: a mixed-integer program solved by a PuLP backend.

    Parameters
    ----------
    space : {"full", "pairs"}
        ``full``: every strategy of every node; ``pairs``: the greedy's
        decision space (base plan ``base`` plus disjoint IOP pairs).
    backend : str
        A PuLP solver name (``pulp.listSolvers()``), e.g. ``PULP_CBC_CMD`` or ``HiGHS``.
    time_limit_s : float or None
        Wall-time limit of the backend, seconds (None: no limit).
    gap_rel : float
        Relative optimality gap at which the backend may stop (0: prove optimality).
    threads : int
        Backend threads.
    memory : {"auto", "on", "off"}
        Memory capacity rows: ``auto`` adds a row only when the device's
        capacity is finite and could bind; ``on`` every row of a finite
        capacity; ``off`` none (the plan may then exceed memory).
    msg : bool
        Print the backend's log.
    base : {"coedge", "oc"}
        Base plan of the ``pairs`` space.
    """

    name = "ilp"
    exact = True

    def __init__(
        self,
        space: str = "full",
        backend: str = "PULP_CBC_CMD",
        time_limit_s: float | None = 60,
        gap_rel: float = 0.0,
        threads: int = 1,
        memory: str = "auto",
        msg: bool = False,
        base: str = "coedge",
    ):
        self.space = space
        self.backend = backend
        self.time_limit_s = time_limit_s
        self.gap_rel = gap_rel
        self.threads = threads
        self.memory = memory
        self.msg = msg
        self.base = base

    def check_settings(self) -> None:
        """Raise :class:`SolverError` naming a bad setting and its valid values."""
        if self.space not in SPACES:
            raise SolverError(f"ilp: unknown space {self.space!r}; valid: {list(SPACES)}")
        if self.memory not in MEMORY_MODES:
            raise SolverError(f"ilp: unknown memory mode {self.memory!r}; valid: {list(MEMORY_MODES)}")
        if self.space == "pairs" and self.base not in BASES:
            raise SolverError(f"ilp: unknown base plan {self.base!r}; valid: {list(BASES)}")
        if self.time_limit_s is not None and not self.time_limit_s > 0:
            raise SolverError(f"ilp: time_limit_s must be positive or None, got {self.time_limit_s!r}")
        if not 0 <= self.gap_rel < 1:
            raise SolverError(f"ilp: gap_rel must be in [0, 1), got {self.gap_rel!r}")

    def _solve(self, problem: Problem) -> SolveResult:
        self.check_settings()
        import pulp

        _check_backend(pulp, self.backend)
        t0 = time.perf_counter()
        model = _build(pulp, problem, self.space, self.base, self.memory)
        extra = {
            "space": self.space,
            "backend": self.backend,
            "build_s": time.perf_counter() - t0,
            **model.stats(),
        }
        if model.hopeless:
            # proven without the backend: some device cannot hold even its cheapest possible share
            extra.update(_infeasible_report(problem, model))
            return SolveResult(self.name, "infeasible", None, extra=extra)

        with tempfile.TemporaryDirectory(prefix="iopopt-ilp-") as tmp:
            backend = _make_backend(pulp, self, Path(tmp))
            t1 = time.perf_counter()
            try:
                with _quiet_stdout(not self.msg and self.backend == "HiGHS"):
                    model.prob.solve(backend)
            except pulp.PulpSolverError as exc:
                raise SolverError(f"ilp: backend {self.backend} failed: {exc}") from exc
            solve_s = time.perf_counter() - t1
            log = _read_log(Path(tmp))
        if self.msg and log:
            print(log)
        extra["solve_s"] = solve_s
        # PuLP's own words, kept for debugging; they can say "Optimal" for a solve the time limit
        # cut short, so `termination` (decided below) is the honest status
        extra["pulp_status_raw"] = pulp.LpStatus.get(model.prob.status, str(model.prob.status))
        extra["pulp_sol_status_raw"] = pulp.constants.LpSolution.get(model.prob.sol_status, str(model.prob.sol_status))

        stopped, backend_bound = _limit_and_bound(pulp, model.prob, self.backend, log)
        if stopped is None:  # the backend does not say; judge by the clock
            stopped = self.time_limit_s is not None and solve_s >= 0.98 * self.time_limit_s
        extra["stopped_by_limit"] = stopped

        sol = model.prob.sol_status
        if model.prob.status == pulp.LpStatusInfeasible or sol == pulp.LpSolutionInfeasible:
            if not model.memory_rows:  # without memory rows every model has a feasible plan
                raise SolverError(f"ilp: backend {self.backend} reports an infeasible model without memory rows")
            extra.update(_infeasible_report(problem, model))
            return SolveResult(self.name, "infeasible", None, extra=extra)

        has_solution = sol in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible)
        plan = model.extract() if has_solution else None
        if plan is None:
            if stopped:
                return SolveResult(self.name, "time_limit", None, bound=_unscale(backend_bound, model), extra=extra)
            raise SolverError(f"ilp: backend {self.backend} returned no solution (status {extra['pulp_status_raw']})")

        objective = latency(problem, plan)  # the figure Solver.solve reports
        obj_value = pulp.value(model.prob.objective)
        extra["backend_objective_s"] = None if obj_value is None else obj_value / model.scale
        bound = _unscale(backend_bound, model)
        proven = sol == pulp.LpSolutionOptimal and not stopped
        if bound is None and proven:
            bound = objective * (1.0 - self.gap_rel)
            extra["bound_source"] = "proven within gap_rel" if self.gap_rel else "proven optimal"
        elif bound is None:
            extra["bound_source"] = f"not reported by {self.backend}"
        else:
            extra["bound_source"] = self.backend
        if bound is not None:
            bound = min(bound, objective)  # the recomputed objective is itself an upper bound on the optimum
        if stopped:
            termination = "time_limit"
        elif proven and (self.gap_rel == 0 or bound >= objective):
            termination = "optimal"
        else:
            termination = "feasible"
        if termination == "optimal" and objective - bound > _PROOF_RTOL * objective:
            # the backend claims a proof, but the extracted plan is measurably above its bound
            termination = "feasible"
            extra["note"] = "backend reported optimal, but the recomputed plan exceeds its bound"
        return SolveResult(self.name, termination, plan, objective=objective, bound=bound, extra=extra)


# -- model -----------------------------------------------------------------------------


@dataclass
class _Model:
    """The PuLP problem plus what is needed to read a plan back and explain infeasibility."""

    prob: object
    problem: Problem
    scale: float  # objective units per second
    offset: float  # objective constant (fixed nodes and edges), which backends leave out of their bounds
    domains: dict[str, tuple[str, ...]]
    x: dict[str, dict[str, tuple]]  # node → strategy → expression
    pairs: list[Pair] = field(default_factory=list)
    z: list = field(default_factory=list)
    base: Plan | None = None
    memory_rows: int = 0
    min_need: list[float] = field(default_factory=list)  # per-device lower bound on peak bytes
    hopeless: bool = False

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


def _affine(pulp, parts):
    acc, const = _lin(parts)
    return pulp.LpAffineExpression([(v, a) for v, a in acc.items() if a != 0], constant=const)


def _full_domains(problem: Problem) -> dict[str, tuple[str, ...]]:
    """Each node's strategies, minus those no neighbour strategy can connect to (arc consistency)."""
    g, t = problem.graph, problem.tables
    dom = {n: list(problem.strategies(n)) for n in g.order}
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


def _build(pulp, problem: Problem, space: str, base: str, memory: str) -> _Model:
    g, t = problem.graph, problem.tables
    prob = pulp.LpProblem("iopopt", pulp.LpMinimize)
    index = {n: i for i, n in enumerate(g.order)}

    # decision variables and x[v, s] as expressions ------------------------------------
    x: dict[str, dict[str, tuple]] = {}
    pairs, zs, base_p = [], [], None
    if space == "full":
        domains = _full_domains(problem)
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
                    prob += _affine(pulp, [(1.0, x[u][s])]) == 0
            for q in dv:
                if len(du) == 1 and (du[0], q) not in ye:
                    prob += _affine(pulp, [(1.0, x[v][q])]) == 0
        else:
            for s, q in feasible:
                var = prob.add_variable(f"y_{e_id}_{su.index(s)}_{sv.index(q)}", lowBound=0)
                ye[(s, q)] = (((var, 1.0),), 0.0)
            for s in du:
                row = [(1.0, ye[(s, q)]) for q in dv if (s, q) in ye] + [(-1.0, x[u][s])]
                prob += _affine(pulp, row) == 0, f"mu_{e_id}_{su.index(s)}"
            for q in dv:
                row = [(1.0, ye[(s, q)]) for s in du if (s, q) in ye] + [(-1.0, x[v][q])]
                prob += _affine(pulp, row) == 0, f"mv_{e_id}_{sv.index(q)}"
        y[(u, v, i)] = ye

    # objective, in units that keep the backend's tolerances far below 1e-9 relative -------
    ref = latency(problem, base_p if base_p is not None else problem.plan({}))
    scale = 1e3 / ref if ref > 0 and math.isfinite(ref) else 1.0
    obj = [(t.node(n, s).compute_s * scale, x[n][s]) for n in g.order for s in domains[n]]
    for (u, v, i), ye in y.items():
        obj.extend((t.edge(u, v, i, s, q).time_s * scale, e) for (s, q), e in ye.items())
    objective = _affine(pulp, obj)
    prob += objective

    model = _Model(
        prob, problem, scale, objective.constant, domains, x, pairs=pairs, z=zs, base=base_p
    )
    _add_memory_rows(pulp, model, y, memory)
    return model


def _add_memory_rows(pulp, model: _Model, y, memory: str) -> None:
    """Capacity rows per (step, device) and each device's lower bound on its peak bytes.

    Devices with infinite capacity get neither; with ``memory: off`` nothing is done.
    """
    problem, prob, x, domains = model.problem, model.prob, model.x, model.domains
    g, t = problem.graph, problem.tables
    order = g.order
    model.min_need = [0.0] * problem.k
    finite = [d for d, dev in enumerate(problem.cluster.devices) if math.isfinite(dev.memory_bytes)]
    if memory == "off" or not finite:
        return
    last = {n: g.last_use(n) for n in order}
    in_edges = {n: [(src, n, i) for i, src in enumerate(g[n].inputs)] for n in order}
    # per-device byte tuples, looked up once
    weight = {n: {s: t.node(n, s).weight_bytes for s in domains[n]} for n in order}
    out = {n: {s: t.node(n, s).out_bytes for s in domains[n]} for n in order}
    stage = {e: {sq: t.edge(*e, *sq).staging_bytes for sq in ye} for e, ye in y.items()}

    for d in finite:
        cap = problem.cluster.devices[d].memory_bytes
        w_min = sum(min(b[d] for b in weight[n].values()) for n in order)
        w_max = sum(max(b[d] for b in weight[n].values()) for n in order)
        w_var = None
        live: list[str] = []
        need = w_min
        for p, n in enumerate(order):
            sources = [(out[u], x[u]) for u in live] + [(stage[e], y[e]) for e in in_edges[n]] + [(out[n], x[n])]
            lo = sum(min(b[d] for b in table.values()) for table, _ in sources)
            hi = sum(max(b[d] for b in table.values()) for table, _ in sources)
            need = max(need, w_min + lo)
            if memory == "on" or w_max + hi > cap:
                if w_var is None:
                    w_var = prob.add_variable(f"w_{d}", lowBound=0)
                    row = [(b[d] / _MIB, x[v][s]) for v in order for s, b in weight[v].items()]
                    row.append((-1.0, (((w_var, 1.0),), 0.0)))
                    prob += _affine(pulp, row) == 0, f"w_{d}"
                row = [(1.0, (((w_var, 1.0),), 0.0))]
                row += [(b[d] / _MIB, exprs[key]) for table, exprs in sources for key, b in table.items()]
                prob += _affine(pulp, row) <= cap / _MIB, f"mem_{p}_{d}"
                model.memory_rows += 1
            if last[n] > p:
                live.append(n)
            live = [u for u in live if last[u] > p]
        model.min_need[d] = need
        if need > cap:
            model.hopeless = True


def _infeasible_report(problem: Problem, model: _Model) -> dict:
    devs = problem.cluster.devices
    over = [d for d in range(problem.k) if model.min_need[d] > devs[d].memory_bytes]
    lines = {
        devs[d].name: f"needs at least {model.min_need[d]:.0f} B, capacity {devs[d].memory_bytes:.0f} B"
        for d in range(problem.k)
        if math.isfinite(devs[d].memory_bytes)
    }
    if over:
        names = [devs[d].name for d in over]
        reason = (
            f"device(s) {', '.join(names)} cannot hold even their smallest possible share "
            "of weights and activations"
        )
    else:
        finite = [d for d in range(problem.k) if math.isfinite(devs[d].memory_bytes)]
        finite.sort(key=lambda d: -model.min_need[d] / devs[d].memory_bytes)
        names = [devs[d].name for d in finite[:2]]
        reason = (
            "no plan fits all memory capacities at once (each device alone could fit); "
            f"tightest: {', '.join(names)}"
        )
    return {"reason": reason, "binding_devices": names, "memory_lower_bounds": lines}


# -- backends ---------------------------------------------------------------------------


def _check_backend(pulp, name: str) -> None:
    available = pulp.listSolvers(onlyAvailable=True)
    if name not in available:
        known = "unknown to PuLP" if name not in pulp.listSolvers() else "not available here"
        raise SolverError(f"ilp: backend {name!r} is {known}; available: {available}")


def _make_backend(pulp, s: IlpSolver, tmp: Path):
    common = dict(msg=bool(s.msg), timeLimit=s.time_limit_s, gapRel=s.gap_rel, threads=s.threads)
    if s.backend in ("PULP_CBC_CMD", "COIN_CMD"):
        common["msg"] = False  # the log goes to a file, parsed for the bound and printed when msg is set
        with warnings.catch_warnings():
            # PuLP 3.3 announces PULP_CBC_CMD's removal in 4.0; the bundled CBC is what we have today
            warnings.filterwarnings("ignore", message="PULP_CBC_CMD is deprecated", category=DeprecationWarning)
            solver = pulp.getSolver(s.backend, keepFiles=False, logPath=str(tmp / "backend.log"), **common)
    elif s.backend == "HiGHS":
        solver = pulp.getSolver(s.backend, gapAbs=0.0, **common)
    else:
        try:
            solver = pulp.getSolver(s.backend, **common)
        except TypeError:  # a backend that takes fewer options
            solver = pulp.getSolver(s.backend, msg=bool(s.msg), timeLimit=s.time_limit_s)
    if hasattr(solver, "tmpDir"):
        solver.tmpDir = str(tmp)  # private temp files: parallel jobs never clash
    return solver


def _read_log(tmp: Path) -> str:
    path = tmp / "backend.log"
    return path.read_text(errors="replace") if path.exists() else ""


_FLOAT = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"


def _limit_and_bound(pulp, prob, backend: str, log: str) -> tuple[bool | None, float | None]:
    """(stopped by a limit? None when unknown, best bound in objective units or None)."""
    if backend == "HiGHS":
        import highspy

        h = prob.solverModel
        status = h.getModelStatus()
        stopped = status in (
            highspy.HighsModelStatus.kTimeLimit,
            highspy.HighsModelStatus.kIterationLimit,
            highspy.HighsModelStatus.kInterrupt,
        )
        bound = h.getInfo().mip_dual_bound
        return stopped, (bound if math.isfinite(bound) else None)
    if backend in ("PULP_CBC_CMD", "COIN_CMD") and log:
        result = re.search(r"^Result - (.*)$", log, re.M)
        stopped = bool(result and result.group(1).startswith("Stopped"))
        m = re.search(r"^Lower bound:\s*" + _FLOAT, log, re.M)
        bound = float(m.group(1)) if m else None
        if bound is None and result and result.group(1).startswith("Optimal"):
            m = re.search(r"^Objective value:\s*" + _FLOAT, log, re.M)
            bound = float(m.group(1)) if m else None
        return stopped, bound
    return None, None


def _unscale(bound: float | None, model: _Model) -> float | None:
    """A backend's bound (objective units, without the constant) in seconds."""
    if bound is None:
        return None
    return (bound + model.offset) / model.scale


@contextlib.contextmanager
def _quiet_stdout(quiet: bool):
    """Silence the process's stdout (file descriptor 1) while ``quiet``.

    highspy prints its banner from C++ whatever ``msg`` says; a sweep of many
    solves would otherwise log it once per job.
    """
    if not quiet:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
