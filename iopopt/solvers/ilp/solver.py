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
the buffers staged for p's inputs and p's own output (:mod:`.memory`).

Energy is a sum of node and edge terms too (:mod:`iopopt.cost.energy`), so
``objective: energy`` and the budgets ``deadline_s`` and ``energy_budget_j``
are linear rows in the same variables (:mod:`.objective`);
``memory_budget_bytes`` lowers every device's capacity row, and
``objective: peak_memory`` minimises one variable bounding every device's
bytes at every step. A budget below a lower bound on its quantity is
``infeasible`` without a solve; a model the backend proves infeasible names
the budget that binds (:mod:`.budgets`).

``space: pairs`` restricts the plans to the greedy's decision space
(:mod:`iopopt.pairs`): a base plan plus disjoint IOP pairs, one binary ``z``
per candidate pair, with each ``x`` an affine function of the ``z``.

The backend is any PuLP solver by name (``HiGHS`` through highspy, in
process: the default; ``PULP_CBC_CMD`` bundled). In the full space, strategies
dominated by another strategy of their node are left out first
(:mod:`.reduce`: exact, the optimum is kept), and, for latency with no memory
rows, the placements on a device whose twin (an equal device) is never worse
on any term (:mod:`.twins`: exact too). The returned objective is the cost model's value of the
chosen objective for the extracted plan; ``bound`` is the backend's proven
lower bound (seconds, joules or bytes).
"""

from __future__ import annotations

import gc
import time

from ..._lifecycle import private_temp_dir, remove_stale_temp_dirs
from ...cost.energy import energy
from ...cost.evaluate import evaluate, latency
from ...model.problem import Plan, Problem
from ...space.pairs import BASES
from ..base import Solver, SolverError, SolveResult, check_budgets, check_objective
from .backends import check_backend, limit_and_bound, make_backend, quiet_stdout, read_log, unscale
from .budgets import below_lower_bound, binding
from .memory import infeasible_report
from .model import build
from .objective import least

#: Temporary folders of the backend's files: ``<tmp>/iopopt-ilp-<pid>-*``.
_TMP_PREFIX = "iopopt-ilp-"

__all__ = ["IlpSolver", "SPACES", "MEMORY_MODES"]

#: Decision spaces: every strategy of every node, or the greedy's base plan + IOP pairs.
SPACES = ("full", "pairs")
#: ``auto``: memory rows only where a finite capacity could bind; ``on``: every finite-capacity row; ``off``: none.
MEMORY_MODES = ("auto", "on", "off")

_PROOF_RTOL = 1e-6  # a proven plan may exceed the backend's bound by at most this (backend tolerances)


class IlpSolver(Solver):
    """Exact solver: a mixed-integer program solved by a PuLP backend.

    Parameters
    ----------
    space : {"full", "pairs"}
        ``full``: every strategy of every node; ``pairs``: the greedy's
        decision space (base plan ``base`` plus disjoint IOP pairs).
    backend : str
        A PuLP solver name (``pulp.listSolvers()``): ``HiGHS`` (in process, through highspy; the
        default, faster than CBC on every instance in ``benchmarks/RESULTS.txt``),
        ``PULP_CBC_CMD`` (the bundled CBC, run as a subprocess), or Gurobi/CPLEX where installed.
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
    objective : {"latency", "energy", "peak_memory"}
        What to minimise: seconds, joules per inference (every device needs
        power figures), or the largest device's peak bytes.
    deadline_s, energy_budget_j, memory_budget_bytes : float or None
        Budgets: the plan's latency, energy, and every device's peak bytes
        (beside its capacity) at most this (None: no budget).
    """

    name = "ilp"
    exact = True

    def __init__(
        self,
        space: str = "full",
        backend: str = "HiGHS",
        time_limit_s: float | None = 60,
        gap_rel: float = 0.0,
        threads: int = 1,
        memory: str = "auto",
        msg: bool = False,
        base: str = "coedge",
        objective: str = "latency",
        deadline_s: float | None = None,
        energy_budget_j: float | None = None,
        memory_budget_bytes: float | None = None,
    ):
        self.space = space
        self.backend = backend
        self.time_limit_s = time_limit_s
        self.gap_rel = gap_rel
        self.threads = threads
        self.memory = memory
        self.msg = msg
        self.base = base
        self.objective = objective
        self.deadline_s = deadline_s
        self.energy_budget_j = energy_budget_j
        self.memory_budget_bytes = memory_budget_bytes

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
        check_objective("ilp", self.objective)
        check_budgets("ilp", self.get_params())
        if self.memory == "off" and self.memory_budget_bytes is not None:
            raise SolverError("ilp: memory_budget_bytes needs memory rows; it cannot go with memory: off")

    def _solve(self, problem: Problem, presolve: bool = True) -> SolveResult:
        import pulp

        check_backend(pulp, self.backend)
        t0 = time.perf_counter()
        budgets = self.budgets()
        # the cost-term tables and the model are millions of small, long-lived objects: the collector's
        # passes over them are wasted work, so it is paused while they are built
        collecting = gc.isenabled()
        gc.disable()
        try:
            model = build(pulp, problem, self.space, self.base, self.memory, self.objective, budgets)
        finally:
            if collecting:
                gc.enable()
        extra = {
            "space": self.space,
            "backend": self.backend,
            "build_s": time.perf_counter() - t0,
            **model.stats(),
        }
        if budgets:
            extra["budgets"] = budgets

        def infeasible(why: dict) -> SolveResult:
            extra.update(why)
            return SolveResult(self.name, "infeasible", None, extra=extra, objective_name=self.objective)

        if model.hopeless:
            # proven without the backend: some device cannot hold even its cheapest possible share
            return infeasible(infeasible_report(problem, model, self.memory_budget_bytes))
        below = below_lower_bound(model, budgets)
        if below is not None:  # proven without the backend: a budget below a lower bound on its quantity
            return infeasible(below)

        # a first incumbent (the all-host plan; the base plan in the pairs space), so that a time-limited
        # solve of a big model still returns a plan; the backend drops it where it breaks a memory row
        host = problem.plan({})
        warm = model.warm_start(host)
        remove_stale_temp_dirs((_TMP_PREFIX,))  # left by solves whose process was killed
        with private_temp_dir(_TMP_PREFIX) as tmp:
            backend = make_backend(pulp, self, tmp, warm_start=warm, presolve=presolve)
            t1 = time.perf_counter()
            try:
                with quiet_stdout(not self.msg and self.backend == "HiGHS"):
                    model.prob.solve(backend)
            except pulp.PulpSolverError as exc:
                raise SolverError(f"ilp: backend {self.backend} failed: {exc}") from exc
            solve_s = time.perf_counter() - t1
            log = read_log(tmp)
        if self.msg and log:
            print(log)
        extra["solve_s"] = solve_s
        # PuLP's own words, kept for debugging; they can say "Optimal" for a solve the time limit
        # cut short, so `termination` (decided below) is the honest status
        extra["pulp_status_raw"] = pulp.LpStatus.get(model.prob.status, str(model.prob.status))
        extra["pulp_sol_status_raw"] = pulp.constants.LpSolution.get(model.prob.sol_status, str(model.prob.sol_status))

        stopped, backend_bound = limit_and_bound(pulp, model.prob, self.backend, log)
        if stopped is None:  # the backend does not say; judge by the clock
            stopped = self.time_limit_s is not None and solve_s >= 0.98 * self.time_limit_s
        extra["stopped_by_limit"] = stopped

        sol = model.prob.sol_status
        if model.prob.status == pulp.LpStatusInfeasible or sol == pulp.LpSolutionInfeasible:
            if model.budget_rows:
                return infeasible(binding(lambda quantity: self._alone(problem, quantity), budgets))
            if not model.memory_rows:  # without memory rows or budgets every model has a feasible plan
                raise SolverError(f"ilp: backend {self.backend} reports an infeasible model without memory rows")
            return infeasible(infeasible_report(problem, model, self.memory_budget_bytes))

        has_solution = sol in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible)
        plan = model.extract() if has_solution else None
        if plan is None and stopped and warm and not budgets:
            # stopped before the backend took up the first incumbent (CBC on a loaded machine can spend a short
            # limit reading the model): that plan is still a plan, when it fits the devices' memory
            start = model.base if model.base is not None else host
            if self.memory == "off" or evaluate(problem, start).fits_memory:
                plan = start
                extra["note"] = "stopped before the backend took up the first incumbent; that plan is returned"
        if plan is None:
            if stopped:
                return SolveResult(self.name, "time_limit", None, bound=unscale(backend_bound, model), extra=extra,
                                   objective_name=self.objective)
            raise SolverError(f"ilp: backend {self.backend} returned no solution (status {extra['pulp_status_raw']})")

        objective = self._value(problem, plan)  # the figure Solver.solve reports
        obj_value = pulp.value(model.prob.objective)
        extra["backend_objective"] = None if obj_value is None else obj_value / model.scale
        bound = unscale(backend_bound, model)
        proven = sol == pulp.LpSolutionOptimal and not stopped
        if bound is None and proven:
            bound = objective * (1.0 - self.gap_rel)
            extra["bound_source"] = "proven within gap_rel" if self.gap_rel else "proven optimal"
        elif bound is None and self.objective in ("latency", "energy"):
            # stopped before the backend had a bound of its own (HiGHS within its presolve)
            bound = least(model, self.objective)
            extra["bound_source"] = "every node and edge term at its least (the backend reported none)"
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
            if self.backend == "HiGHS" and presolve:
                del model  # the re-solve builds its own; this one's memory is not needed any more
                again = self._resolved(problem, objective, bound, extra, time.perf_counter() - t0)
                if again is not None:
                    return again
        return SolveResult(
            self.name, termination, plan, objective=objective, bound=bound, extra=extra, objective_name=self.objective
        )

    def _resolved(self, problem: Problem, objective: float, bound: float, extra: dict,
                  spent_s: float) -> SolveResult | None:
        """The solve again without HiGHS's presolve, when its proof contradicted its own plan.

        Seen with HiGHS 1.16 on a few pairs-space models: the presolved solve returns a plan above the optimum it
        proved (its bound); without presolve it returns the optimal plan. The re-solve gets the time left of
        ``time_limit_s``; its result is kept when it is no worse than ``objective``, with the first solve's figures
        in ``extra["first_solve"]``; else None (and ``extra["note"]`` says it was tried).
        """
        first = {"objective": objective, "bound": bound, "solve_s": extra.get("solve_s")}
        left = None if self.time_limit_s is None else self.time_limit_s - spent_s
        if left is not None and left <= 0:
            extra["note"] += "; no time left to solve it again without presolve"
            return None
        again = type(self)(**dict(self.get_params(), time_limit_s=left))
        try:
            got = again._solve(problem, presolve=False)
        except SolverError as exc:
            extra["note"] += f"; solved again without presolve, that failed: {exc}"
            return None
        if got.plan is None or got.objective is None or got.objective > objective:
            extra["note"] += "; solved again without presolve, no better plan"
            return None
        got.extra["first_solve"] = first
        got.extra["note"] = (f"HiGHS's presolved solve returned a plan above its own bound ({objective:.9g} > "
                             f"{bound:.9g}); solved again without presolve" + (f": {got.extra['note']}"
                                                                                if got.extra.get("note") else ""))
        return got

    def _value(self, problem: Problem, plan: Plan) -> float:
        """The cost model's value of the objective for ``plan``."""
        if self.objective == "energy":
            value = energy(problem, plan)
            assert value is not None  # the model was built, so every device has power figures
            return value
        if self.objective == "peak_memory":
            return float(evaluate(problem, plan).peak_memory_bytes)
        return latency(problem, plan)

    def _alone(self, problem: Problem, quantity: str) -> SolveResult:
        """The least ``quantity`` within memory (and the memory budget), without the other budgets."""
        params = dict(self.get_params(), objective=quantity, deadline_s=None, energy_budget_j=None)
        return type(self)(**params)._solve(problem)
