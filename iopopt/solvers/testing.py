"""The solver contract: checks every solver must pass, reusable outside iopopt.

:func:`check_solver` solves a problem and checks the result against the cost
model and against independent plans; :func:`contract_problems` gives a few
small standard problems; :class:`SolverContract` packages both as pytest
tests to inherit (like Hydra's ``LauncherTestSuite``)::

    import pytest
    from iopopt.testing import SolverContract

    class TestMySolver(SolverContract):
        @pytest.fixture
        def solver(self):
            return MySolver(setting=1)

A solver may refuse a problem beyond its limits by raising
:class:`iopopt.solvers.base.SolverError` with a message saying why; the contract
accepts that (the test is skipped with the message) except on the smallest
contract problem, which every solver must solve.

A solver's result is judged by the objective it says it minimised
(``objective_name``: latency, energy or peak memory) and, when its settings
include budgets (``deadline_s``, ``energy_budget_j``, ``memory_budget_bytes``),
only plans within them count as better or as proof that a plan exists. The
contract problems' devices have power figures, so an energy solver is checked
on them too.

A solver whose settings include ``space: pairs`` is taken to search the IOP
decision space of :mod:`iopopt.space.pairs` (its ``base`` setting, default
``coedge``, plus disjoint pairs), and its optimality claims are checked
against plans of that space only. Where the space is small enough (the
smallest contract problem), an exact solver's optimum is checked against
exhaustive enumeration of every plan of its space; elsewhere against
independent reference plans.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..cost.evaluate import evaluate
from ..model.problem import InvalidPlan, Plan, Problem
from ._oracles import (
    CASE_IDS,
    CONTRACT_POWER,
    ContractCase,
    contract_case,
    contract_problems,
    exhaustive_optimum,
    reference_plans,
    space_plans,
    space_size,
    within_budgets,
)
from .base import (
    BUDGET_RTOL,
    BUDGETS,
    OBJECTIVE_RTOL,
    TERMINATIONS,
    ObjectiveMismatch,
    Solver,
    SolverError,
    SolveResult,
    objective_value,
)

try:  # the pytest suite is optional; the checks work without pytest
    import pytest
except ImportError:  # pragma: no cover
    pytest = None

__all__ = [
    "ContractViolation",
    "ContractCase",
    "CASE_IDS",
    "CONTRACT_POWER",
    "contract_case",
    "contract_problems",
    "reference_plans",
    "space_plans",
    "exhaustive_optimum",
    "solve_or_refusal",
    "check_solver",
    "SolverContract",
]

#: Enumerate a solver's whole space when it has at most this many plans.
EXHAUSTIVE_LIMIT = 5000


class ContractViolation(AssertionError):
    """A solver's result breaks the solver contract."""


def _require(ok: bool, solver: Solver, message: str) -> None:
    if not ok:
        raise ContractViolation(f"{solver.name}: {message}")

# -- the checks --------------------------------------------------------------------


def solve_or_refusal(solver: Solver, problem: Problem) -> SolveResult | SolverError:
    """``solver.solve(problem)``, or the :class:`SolverError` by which it refused.

    An :class:`iopopt.solvers.base.ObjectiveMismatch` (a subclass) is a contract
    failure, not a refusal, and propagates; so does a refusal without a message.
    """
    try:
        return solver.solve(problem)
    except ObjectiveMismatch:
        raise
    except SolverError as exc:
        _require(bool(str(exc).strip()), solver, "refused a problem without saying why")
        return exc


def check_solver(
    solver: Solver,
    problem: Problem,
    *,
    verify: bool = False,
    module: Any = None,
    result: SolveResult | None = None,
) -> SolveResult:
    """Solve ``problem`` with ``solver`` and check the result against the contract.

    Checks: a :class:`SolveResult` naming the solver, with a termination in
    :data:`~iopopt.solvers.base.TERMINATIONS`; a plan (unless infeasible, error or
    time limit) that validates and covers every node; ``objective_name`` the
    solver's ``objective`` setting (latency by default); objective (and the
    solver's own, when given) equal to :func:`iopopt.evaluate`'s figure for it
    (relative 1e-9); the plan within the solver's budgets; ``memory_fits``
    false exactly when the plan exceeds a device's memory; bound ≤ objective;
    wall time ≥ 0; the same plan when solved again (unless either run hit its
    time limit); for an exact solver, an ``optimal`` objective equal to the
    exhaustive optimum of its space (:func:`exhaustive_optimum`, when the
    space has at most :data:`EXHAUSTIVE_LIMIT` plans) or else no worse than
    any :func:`reference_plans` within memory and budgets, and no
    ``infeasible`` claim while such a plan exists. With ``verify=True``, runs
    the plan through ``iopopt.verify(problem, plan, module)``.

    ``result``: an already computed first result (saves one solve).
    Raises :class:`ContractViolation` (an ``AssertionError``) on the first
    broken rule; returns the first result.
    """
    if result is None:
        result = solver.solve(problem)
    _require(isinstance(result, SolveResult), solver, f"solve returned {type(result).__name__}, not a SolveResult")
    _require(result.solver == solver.name, solver, f"result names solver {result.solver!r}")
    _require(result.termination in TERMINATIONS, solver, f"unknown termination {result.termination!r}")
    wall = result.wall_time_s
    _require(isinstance(wall, (int, float)) and math.isfinite(wall) and wall >= 0, solver, f"wall_time_s {wall!r}")
    plan = result.plan
    if plan is None:
        _require(
            result.termination in ("infeasible", "error", "time_limit"),
            solver,
            f"termination {result.termination!r} but no plan",
        )
    else:
        _check_plan(solver, problem, result)
    if result.termination == "infeasible" or (solver.exact and result.termination == "optimal"):
        _check_against_references(solver, problem, result)
    again = solver.solve(problem)
    if "time_limit" not in (result.termination, again.termination):
        _require(again.plan == plan, solver, "solving the same problem twice gave different plans")
    if verify and plan is not None:
        _verify(solver, problem, plan, module)
    return result


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=OBJECTIVE_RTOL, abs_tol=1e-15)


def _check_plan(solver: Solver, problem: Problem, result: SolveResult) -> None:
    plan = result.plan
    _require(isinstance(plan, Plan), solver, f"plan is a {type(plan).__name__}, not a Plan")
    missing = set(problem.graph.order) - set(plan)
    _require(not missing, solver, f"plan misses {len(missing)} node(s), e.g. {sorted(missing)[:3]}")
    try:
        plan.validate(problem)
    except InvalidPlan as exc:
        raise ContractViolation(f"{solver.name}: invalid plan: {exc}") from None
    report = evaluate(problem, plan)
    name = result.objective_name
    configured = solver.get_params().get("objective", "latency")
    _require(name == configured, solver, f"set to minimise {configured}, but its result says {name}")
    value = objective_value(report, name)
    _require(result.objective is not None, solver, "a plan without an objective")
    _require(value is not None, solver, f"objective {name}, but the cost model has no {name} for the problem")
    _require(
        _close(result.objective, value),
        solver,
        f"objective {result.objective!r} ({name}), cost model {value!r}",
    )
    own = result.solver_objective
    _require(
        own is None or _close(own, value),
        solver,
        f"solver objective {own!r} ({name}), cost model {value!r}",
    )
    for key, limit in solver.budgets().items():
        got = objective_value(report, BUDGETS[key])
        ok = got is not None and got <= limit * (1 + BUDGET_RTOL)
        _require(ok, solver, f"its plan breaks {key}={limit!r}: the cost model gives {got!r}")
    _require(
        result.memory_fits is report.fits_memory,
        solver,
        f"memory_fits={result.memory_fits!r} but the cost model says fits_memory={report.fits_memory}",
    )
    if result.bound is not None:
        _require(
            result.bound <= result.objective * (1 + OBJECTIVE_RTOL) + 1e-15,
            solver,
            f"bound {result.bound!r} above objective {result.objective!r}",
        )


def _check_against_references(solver: Solver, problem: Problem, result: SolveResult) -> None:
    if space_size(problem, solver) <= EXHAUSTIVE_LIMIT:
        # a solver that ignores memory (dp) is optimal over the plans regardless of memory
        best = exhaustive_optimum(problem, solver, memory=result.memory_fits is not False)
        if best is None:
            _require(result.termination == "infeasible", solver, "no plan of its space fits, yet it claims one")
            return
        _require(result.termination != "infeasible", solver, f"claims infeasible, but a plan fits ({best!r} s)")
        _require(
            _close(result.objective, best),
            solver,
            f"claims optimal at {result.objective!r}, but the exhaustive optimum of its space is {best!r}",
        )
        return
    params = solver.get_params()
    for ref in reference_plans(problem, solver):
        report = evaluate(problem, ref)
        if not within_budgets(report, params):
            continue
        value = objective_value(report, result.objective_name)
        _require(
            result.termination != "infeasible",
            solver,
            f"claims infeasible, but a valid plan fits memory and its budgets ({value!r}: {ref!r})",
        )
        _require(
            value is None or result.objective <= value * (1 + OBJECTIVE_RTOL) + 1e-15,
            solver,
            f"claims optimal at {result.objective!r}, but an independent plan has {value!r} ({result.objective_name})",
        )


def _verify(solver: Solver, problem: Problem, plan: Plan, module: Any) -> None:
    _require(module is not None, solver, "check_solver(verify=True) needs the torch module")
    from ..exec.verify import verify as run_verify  # heavy (torch execution): import on demand

    report = run_verify(problem, plan, module)
    passed = getattr(report, "passed", True)
    _require(bool(passed), solver, f"the plan fails numerical verification: {report!r}")


# -- pytest suite --------------------------------------------------------------------

if pytest is not None:

    class SolverContract:
        """Tests every solver inherits: subclass it and define a ``solver`` fixture.

        ``contract_ids`` (class attribute) selects the contract problems.
        """

        contract_ids: Sequence[str] = CASE_IDS

        @pytest.fixture
        def solver(self) -> Solver:  # pragma: no cover - subclasses override
            raise NotImplementedError("subclass SolverContract and define a `solver` fixture")

        def test_contract(self, solver: Solver, case_id: str) -> None:
            if not solver.available():
                pytest.skip(f"{solver.name} is not available here")
            problem = contract_case(case_id).problem
            got = solve_or_refusal(solver, problem)
            if isinstance(got, SolverError):
                pytest.skip(f"{solver.name} refuses {case_id}: {got}")
            check_solver(solver, problem, result=got)

        def test_solves_and_runs_smallest_problem(self, solver: Solver) -> None:
            # every solver must solve the smallest case; the simulated executor then checks its plan
            # numerically and byte for byte against the cost model
            if not solver.available():
                pytest.skip(f"{solver.name} is not available here")
            case = contract_case(self.contract_ids[0])
            got = solve_or_refusal(solver, case.problem)
            _require(not isinstance(got, SolverError), solver, f"refuses the smallest contract problem: {got}")
            if got.plan is not None:
                _verify(solver, case.problem, got.plan, case.module)

        def test_settings_roundtrip(self, solver: Solver) -> None:
            _require(isinstance(solver.name, str) and bool(solver.name), solver, "needs a non-empty name")
            params = solver.get_params()
            clone = type(solver)(**params)
            _require(clone.get_params() == params, solver, "the constructor must store its settings unchanged")

        def pytest_generate_tests(self, metafunc) -> None:
            # pytest calls this on test classes: one test per contract problem, id = the case id
            if "case_id" in metafunc.fixturenames:
                ids = list(self.contract_ids)
                metafunc.parametrize("case_id", ids, ids=ids)
