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

A solver whose settings include ``space: pairs`` is taken to search the IOP
decision space of :mod:`iopopt.space.pairs` (its ``base`` setting, default
``coedge``, plus disjoint pairs), and its optimality claims are checked
against plans of that space only. Where the space is small enough (the
smallest contract problem), an exact solver's optimum is checked against
exhaustive enumeration of every plan of its space; elsewhere against
independent reference plans.
"""

from __future__ import annotations

import functools
import itertools
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..cost.evaluate import evaluate, latency
from ..frontend.capture import trace
from ..model.cluster import Cluster, Device
from ..model.network import SharedNetwork, SwitchedNetwork
from ..model.problem import InvalidPlan, Plan, Problem
from ..space.pairs import apply_pairs, base_plan, candidate_pairs, conflicts
from .base import OBJECTIVE_RTOL, TERMINATIONS, ObjectiveMismatch, Solver, SolverError, SolveResult

try:  # the pytest suite is optional; the checks work without pytest
    import pytest
except ImportError:  # pragma: no cover
    pytest = None

__all__ = [
    "ContractViolation",
    "ContractCase",
    "CASE_IDS",
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


# -- standard problems -------------------------------------------------------------


@dataclass(frozen=True)
class ContractCase:
    """A contract problem and the torch module it was traced from (for ``verify``)."""

    id: str
    problem: Problem
    module: Any = field(repr=False, compare=False)


# id -> (seed, n_layers, kind, channels, input_hw, devices' FLOP/s, network kind, tight memory)
# Devices are slow and the network fast, so that partitioning pays off and
# solvers face real choices. The first case is the smallest (960 plans).
_SPECS = {
    "chain7-k2-shared": (1, 2, "chain", (4, 8), (8, 8), (1e7, 1e7), "shared", False),
    "dag7-k3-switched": (30, 2, "dag", (2, 6), (8, 8), (2e7, 1e7, 1e7), "switched", False),
    "dag10-k2-memory": (7, 3, "dag", (2, 6), (8, 8), (1e7, 1e7), "shared", True),
    "chain-k3-shared": (2, 5, "chain", (4, 16), (12, 12), (1e7, 1e7, 1e7), "shared", False),
    "dag-k4-switched": (3, 6, "dag", (4, 16), (12, 12), (1e7, 1e7, 1e7, 1e7), "switched", False),
}

#: Ids of the contract problems, smallest first.
CASE_IDS: tuple[str, ...] = tuple(_SPECS)


@functools.cache
def contract_case(case_id: str) -> ContractCase:
    """The contract problem ``case_id`` (one of :data:`CASE_IDS`), built once per process.

    The ``...-memory`` case gives every device the peak memory of the ``oc``
    base plan, so some plans (all-host) do not fit while a fitting one exists.
    """
    from ..frontend.synthetic import random_cnn

    try:
        seed, n_layers, kind, channels, hw, flops, net, tight = _SPECS[case_id]
    except KeyError:
        raise ValueError(f"unknown contract case {case_id!r}; valid: {list(CASE_IDS)}") from None
    module, shape = random_cnn(seed, n_layers, kind=kind, channels=channels, input_hw=hw)
    graph = trace(module, shape, name=case_id)
    network = SharedNetwork(1e8, 1e-5) if net == "shared" else SwitchedNetwork(1e8, 1e-5)
    cluster = Cluster(tuple(Device(f"d{i}", f) for i, f in enumerate(flops)))
    problem = Problem(graph, cluster, network, name=case_id)
    if tight:
        capacity = evaluate(problem, base_plan(problem, "oc")).peak_memory_bytes
        cluster = Cluster(tuple(Device(f"d{i}", f, capacity) for i, f in enumerate(flops)))
        problem = Problem(graph, cluster, network, name=case_id)
    return ContractCase(case_id, problem, module)


def contract_problems() -> list[ContractCase]:
    """Every contract problem, smallest first."""
    return [contract_case(i) for i in CASE_IDS]


# -- independent plans -------------------------------------------------------------


def _random_valid_plan(problem: Problem, rng: random.Random, tries: int = 200) -> Plan | None:
    # whole-plan rejection sampling, on purpose unlike the `random` baseline's per-node filtering
    names = problem.graph.order
    for _ in range(tries):
        plan = Plan({n: rng.choice(problem.strategies(n)) for n in names})
        if math.isfinite(latency(problem, plan)):
            return plan
    return None


def reference_plans(problem: Problem, solver: Solver | None = None, n_random: int = 4, seed: int = 0) -> list[Plan]:
    """Valid plans to compare an exact solver's optimum with, drawn independently of it.

    For a solver with ``space: pairs``: its base plan, the base plan with each
    single candidate pair, and with ``n_random`` random sets of disjoint
    pairs. Otherwise: all-host, both base plans and ``n_random`` random valid
    plans.
    """
    rng = random.Random(seed)
    params = solver.get_params() if solver is not None else {}
    if params.get("space") == "pairs":
        base = base_plan(problem, params.get("base", "coedge"))
        pairs = candidate_pairs(problem)
        plans = [base] + [apply_pairs(base, [p]) for p in pairs]
        for _ in range(n_random):
            chosen, used = [], set()
            for p in rng.sample(pairs, len(pairs)):
                if rng.random() < 0.5 and used.isdisjoint(p.nodes):
                    chosen.append(p)
                    used.update(p.nodes)
            plans.append(apply_pairs(base, chosen))
        return plans
    plans = [problem.plan({}), base_plan(problem, "coedge"), base_plan(problem, "oc")]
    for _ in range(n_random):
        plan = _random_valid_plan(problem, rng)
        if plan is not None:
            plans.append(plan)
    return plans


def space_plans(problem: Problem, solver: Solver | None = None) -> Iterator[Plan]:
    """Every plan of the solver's decision space (all strategy combinations, or base plan + disjoint pairs).

    Infeasible combinations (a ``partial`` consumer of a non-partial producer)
    are included; their latency is ``inf``.
    """
    params = solver.get_params() if solver is not None else {}
    names = problem.graph.order
    if params.get("space") == "pairs":
        base = base_plan(problem, params.get("base", "coedge"))
        pairs = candidate_pairs(problem)
        clash = {(pairs.index(a), pairs.index(b)) for a, b in conflicts(pairs)}
        for bits in itertools.product((False, True), repeat=len(pairs)):
            chosen = [j for j, on in enumerate(bits) if on]
            if any((i, j) in clash for i in chosen for j in chosen):
                continue
            yield apply_pairs(base, [pairs[j] for j in chosen])
        return
    for combo in itertools.product(*(problem.strategies(n) for n in names)):
        yield Plan(dict(zip(names, combo)))


def space_size(problem: Problem, solver: Solver | None = None) -> int:
    """The number of combinations :func:`space_plans` walks (an upper bound on its plans)."""
    params = solver.get_params() if solver is not None else {}
    if params.get("space") == "pairs":
        return 2 ** len(candidate_pairs(problem))
    return math.prod(len(problem.strategies(n)) for n in problem.graph.order)


def exhaustive_optimum(problem: Problem, solver: Solver | None = None, memory: bool = True) -> float | None:
    """The least latency of a plan of the solver's space (that fits memory, unless ``memory`` is false).

    An oracle independent of every solver: plain enumeration and the cost
    model. None when no plan fits.
    """
    best = None
    finite_memory = memory and any(math.isfinite(d.memory_bytes) for d in problem.cluster.devices)
    for plan in space_plans(problem, solver):
        lat = latency(problem, plan)
        if not math.isfinite(lat) or (best is not None and lat >= best):
            continue
        if finite_memory and not evaluate(problem, plan).fits_memory:
            continue
        best = lat
    return best


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
    time limit) that validates and covers every node; objective (and the
    solver's own, when given) equal to :func:`iopopt.evaluate`'s latency
    (relative 1e-9); ``memory_fits`` false exactly when the plan exceeds a
    device's memory; bound ≤ objective; wall time ≥ 0; the same plan when
    solved again (unless either run hit its time limit); for an exact solver,
    an ``optimal`` objective equal to the exhaustive optimum of its space
    (:func:`exhaustive_optimum`, when the space has at most
    :data:`EXHAUSTIVE_LIMIT` plans) or else no worse than any fitting
    :func:`reference_plans`, and no ``infeasible`` claim while a plan fits. With ``verify=True``,
    runs the plan through ``iopopt.verify(problem, plan, module)``.

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
    _require(result.objective is not None, solver, "a plan without an objective")
    _require(
        _close(result.objective, report.latency_s),
        solver,
        f"objective {result.objective!r} s, cost model {report.latency_s!r} s",
    )
    own = result.solver_objective
    _require(
        own is None or _close(own, report.latency_s),
        solver,
        f"solver objective {own!r} s, cost model {report.latency_s!r} s",
    )
    _require(
        result.memory_fits is report.fits_memory,
        solver,
        f"memory_fits={result.memory_fits!r} but the cost model says fits_memory={report.fits_memory}",
    )
    if result.bound is not None:
        _require(
            result.bound <= result.objective * (1 + OBJECTIVE_RTOL) + 1e-15,
            solver,
            f"bound {result.bound!r} s above objective {result.objective!r} s",
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
            f"claims optimal at {result.objective!r} s, but the exhaustive optimum of its space is {best!r} s",
        )
        return
    for ref in reference_plans(problem, solver):
        report = evaluate(problem, ref)
        if not report.fits_memory:
            continue
        _require(
            result.termination != "infeasible",
            solver,
            f"claims infeasible, but a valid plan fits memory ({report.latency_s!r} s: {ref!r})",
        )
        _require(
            result.objective <= report.latency_s * (1 + OBJECTIVE_RTOL) + 1e-15,
            solver,
            f"claims optimal at {result.objective!r} s, but an independent plan costs {report.latency_s!r} s",
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
