"""Every registered solver (conf/solver/*.yaml, and entry points of installed packages) passes the contract.

A new solver is covered by adding its module and YAML: no new test code.
"""

from __future__ import annotations

import textwrap

import pytest
import torch

from iopopt.solvers import (
    ObjectiveMismatch,
    Solver,
    SolverError,
    SolveResult,
    make_solver,
    registered_solvers,
    solver_configs,
)
from iopopt.solvers.testing import (
    CASE_IDS,
    ContractViolation,
    SolverContract,
    check_solver,
    contract_case,
    contract_problems,
)

torch.set_num_threads(1)

SOLVER_NAMES = sorted(registered_solvers())  # conf/solver/*.yaml and entry points of installed packages


class TestConfiguredSolvers(SolverContract):
    """The contract suite, once per ``conf/solver/*.yaml`` (test ids: the YAML stem)."""

    @pytest.fixture(params=SOLVER_NAMES, ids=SOLVER_NAMES)
    def solver(self, request) -> Solver:
        solver = make_solver(request.param)
        available = getattr(solver, "available", None)
        if callable(available) and not available():
            pytest.skip(f"solver {request.param!r}: its backend is not installed")
        return solver


def test_every_config_builds_a_solver():
    assert {"greedy_iop", "single", "coedge", "oc", "best_uniform", "random"} <= set(SOLVER_NAMES)
    for name in SOLVER_NAMES:  # a config may be a variant of another's class (ilp_pairs → ilp)
        assert isinstance(make_solver(name), Solver), f"conf/solver/{name}.yaml does not build a Solver"


def test_contract_problems_are_small_and_distinct():
    cases = contract_problems()
    assert [c.id for c in cases] == list(CASE_IDS)
    assert len({c.problem.graph.name for c in cases}) == len(cases)
    assert {c.problem.k for c in cases} >= {2, 3, 4}
    assert {c.problem.network.name for c in cases} == {"shared", "switched"}
    assert all(len(c.problem.graph) <= 40 for c in cases)
    assert any(not c.problem.graph.is_chain() for c in cases)


def test_memory_case_binds():
    """The memory case leaves the all-host plan out but some plan in."""
    from iopopt import evaluate
    from iopopt.space.pairs import base_plan

    problem = contract_case("dag10-k2-memory").problem
    assert not evaluate(problem, problem.plan({})).fits_memory
    assert evaluate(problem, base_plan(problem, "oc")).fits_memory


# -- solvers that live outside the project --------------------------------------------

_PLUGIN = '''
"""A solver written outside iopopt: the best of all-host and all-replicate."""
from iopopt.cost import latency
from iopopt.solvers import Solver, SolveResult


class MySolver(Solver):
    name = "mine"

    def __init__(self, prefer: str = "host"):
        self.prefer = prefer

    def _solve(self, problem):
        plans = [problem.plan({}, default=self.prefer), problem.plan({}, default="replicate")]
        plan = min(plans, key=lambda p: latency(problem, p))
        return SolveResult(self.name, "completed", plan, objective=latency(problem, plan))
'''


def test_external_solver_plugs_in(tmp_path, monkeypatch):
    module = f"my_solver_xyz_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(_PLUGIN))
    conf = tmp_path / "conf"
    (conf / "solver").mkdir(parents=True)
    (conf / "solver" / "mine.yaml").write_text(
        f"# a plugin solver\n_target_: {module}.MySolver  # solver class\nprefer: host  # first candidate\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert list(solver_configs(conf)) == ["mine"]
    solver = make_solver("mine", conf_dir=conf)
    for case in contract_problems()[:2]:
        result = check_solver(solver, case.problem)
        assert result.termination == "completed"


class _WrongObjective(Solver):
    name = "wrong_objective"

    def _solve(self, problem):
        plan = problem.plan({})
        from iopopt.cost import latency

        return SolveResult(self.name, "completed", plan, objective=latency(problem, plan) * 1.01)


def test_wrong_objective_is_caught():
    with pytest.raises(ObjectiveMismatch, match="differs from the cost model"):
        check_solver(_WrongObjective(), contract_problems()[0].problem)


class _FalseOptimum(Solver):
    """Claims optimality for all-replicate, which costs more than all-host (an input broadcast more)."""

    name = "false_optimum"
    exact = True

    def _solve(self, problem):
        from iopopt.cost import latency

        plan = problem.plan({}, default="replicate")
        return SolveResult(self.name, "optimal", plan, objective=latency(problem, plan))


def test_false_optimality_claim_is_caught():
    with pytest.raises(ContractViolation, match="claims optimal"):
        check_solver(_FalseOptimum(), contract_problems()[0].problem)


class _Flaky(Solver):
    """A different plan on every call."""

    name = "flaky"

    def __init__(self):
        self._calls = 0

    def _solve(self, problem):
        from iopopt.cost import latency

        self._calls += 1
        plan = problem.plan({}, default="replicate" if self._calls % 2 else "host")
        return SolveResult(self.name, "completed", plan, objective=latency(problem, plan))


def test_nondeterminism_is_caught():
    with pytest.raises(ContractViolation, match="different plans"):
        check_solver(_Flaky(), contract_problems()[0].problem)


class _Silent(Solver):
    name = "silent"

    def _solve(self, problem):
        raise SolverError(" ")


def test_refusal_must_say_why():
    from iopopt.solvers.testing import solve_or_refusal

    with pytest.raises(ContractViolation, match="without saying why"):
        solve_or_refusal(_Silent(), contract_problems()[0].problem)
