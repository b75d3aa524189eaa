"""Property-based fuzzing: random small CNNs through capture, every cheap solver and the executors.

The short profile (a few tens of models) runs in the default suite; the long
one (2,000 models, the distributed executor on every 100th) is marked slow and
is also ``scripts/fuzz.py``.
"""

import random
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import iopopt
from iopopt.frontend.fuzz import RandomDraw, describe, fuzz_cnn
from iopopt.network import SharedNetwork
from iopopt.studies import fuzz as fuzz_study
from iopopt.studies.fuzz import FuzzOutcome, check_model


class HypothesisDraw:
    """A :class:`iopopt.frontend.fuzz.Draw` over hypothesis' ``data.draw`` (so failures shrink)."""

    def __init__(self, data):
        self.data = data

    def integer(self, lo: int, hi: int) -> int:
        return self.data.draw(st.integers(lo, hi))


def _assert_clean(o: FuzzOutcome, model, shape):
    assert o.ok, describe(model, shape) + "\n" + "\n".join(o.lines())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_fuzzed_models_solve_verify_and_agree_with_the_cost_model(data, seed):
    torch.set_num_threads(1)
    model, shape = fuzz_cnn(HypothesisDraw(data))
    o = check_model(model, shape, random.Random(seed), n_random=2, brute_max=500)
    _assert_clean(o, model, shape)
    assert o.unsupported or o.reference_not_finite or o.plans >= 8  # the solvers' plans and the random ones ran


def test_the_generator_draws_the_awkward_cases():
    """Over 200 seeds the generator does produce what the fuzz test is for (else it would test little)."""
    seen = set()
    for seed in range(200):
        model, shape = fuzz_cnn(RandomDraw(random.Random(seed)))
        seen.add("batch>1" if shape[0] > 1 else "batch1")
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                reach = [m.dilation[i] * (m.kernel_size[i] - 1) for i in range(2)]
                if m.padding[0] > reach[0]:
                    seen.add("padding beyond reach")
                seen.update({f"stride{m.stride[0]}"} | ({"dilation"} if m.dilation[0] > 1 else set()))
                seen.update({"gconv"} if m.groups > 1 else set())
            if isinstance(m, (torch.nn.MaxPool2d, torch.nn.AvgPool2d)) and m.ceil_mode:
                seen.add("ceil pool")
        seen.update(ins[0] for ins in model.program)
    assert {"batch>1", "padding beyond reach", "stride2", "stride3", "dilation", "gconv", "ceil pool",
            "add", "cat", "flatten"} <= seen


def test_the_fuzz_checks_can_fail(monkeypatch):
    """A cost model that miscounts one message, and a plan cheaper than the 'optimum', are both reported."""
    model, shape = fuzz_cnn(RandomDraw(random.Random(1)))
    real = fuzz_study.evaluate

    def off_by_one(problem, plan):
        rep = real(problem, plan)
        return type(rep)(**{**rep.__dict__, "messages": rep.messages + 1})

    monkeypatch.setattr(fuzz_study, "evaluate", off_by_one)
    o = check_model(model, shape, random.Random(0), n_random=1, brute_max=50)
    assert o.cost_mismatches and not o.crashes
    out = FuzzOutcome()
    fuzz_study._check_optima(out, {"full": [("ilp", 1.0)], "pairs": []}, {"random#0": 0.5, "oc": 1.0})
    assert len(out.below_optimum) == 1 and "random#0" in out.below_optimum[0]


def _issue_case():
    m = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 1), torch.nn.Conv2d(4, 4, 1, padding=(3, 0))).eval()
    g = iopopt.trace(m, (1, 4, 5, 5))
    problem = iopopt.Problem(g, iopopt.Cluster.homogeneous(3, 1e9), SharedNetwork(1e6))
    first, second = [op.name for op in g if op.kind == "conv"]
    return m, problem, problem.plan({first: "ic", second: "rows"})


def test_padding_beyond_reach_split_by_rows_simulated():
    """A device whose row block is empty (all its rows' windows in the padding) gets an empty block, no crash."""
    m, problem, plan = _issue_case()
    program = iopopt.compile_plan(problem, plan)
    assert any(p is not None and p.is_empty() for p in program.steps[2].inputs[0].dst.parts)  # the awkward case
    report = iopopt.verify(problem, plan, m)
    assert report.passed, report.diff
    cost = iopopt.evaluate(problem, plan)
    # scatter 2, reduce-scatter 4 (none to the empty block), gather 2
    assert cost.messages == len(program.messages()) == 8


def test_padding_beyond_reach_split_by_rows_distributed():
    from iopopt.exec.distributed.executor import verify_distributed

    m, problem, plan = _issue_case()
    (report,) = verify_distributed(problem, plan, m)
    assert report.passed, report.summary()
    assert report.trace.messages == iopopt.evaluate(problem, plan).messages


@pytest.mark.slow
def test_fuzz_long(tmp_path: Path):
    """2,000 models (scripts/fuzz.py): no crash, no verification failure, no cost mismatch, nothing below an optimum."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("fuzz_script", Path(__file__).parents[1] / "scripts" / "fuzz.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--models", "2000", "--out", str(tmp_path)]) == 0, (tmp_path / "findings.txt").read_text()
