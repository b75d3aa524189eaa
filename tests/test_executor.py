"""The simulated executor: every plan must compute the unsplit model's output, and the messages,
weight shards and activation bytes it actually sends and holds must equal the cost model's.

The oracle is torch's own unsplit forward of the model; the byte figures are measured by the
executor from the tensors it holds and sends and compared with the compiler/cost model.
"""

from __future__ import annotations

import copy
import random

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

import iopopt
from iopopt import Cluster, Device, Problem, compile_plan, plans, zoo
from iopopt.compile import terms
from iopopt.exec.kernels import weight_shard
from iopopt.exec.simulated import Faults, SimulatedExecutor
from iopopt.exec.verify import verify
from iopopt.frontend.synthetic import SyntheticCNN, random_cnn
from iopopt.network import SharedNetwork, SwitchedNetwork

torch.set_num_threads(1)

KINDS = ("all_host", "all_oc", "coedge", "alternating")
SPEEDS = (1e9, 2.5e9, 0.7e9, 4e9, 1.3e9, 3e9)


def cluster(k: int, split: str = "proportional", host: int = 0) -> Cluster:
    return Cluster(tuple(Device(f"d{i}", SPEEDS[i]) for i in range(k)), host=host, split=split)


def network(kind: str):
    if kind == "shared":
        return SharedNetwork(bandwidth_bytes_per_s=1e7, latency_s=1e-3)
    return SwitchedNetwork(bandwidth_bytes_per_s=1e7, latency_s=1e-3)


def problem_of(module, shape, k, net="shared", **cl) -> Problem:
    return Problem(iopopt.trace(module, shape), cluster(k, **cl), network(net))


def reference_is_finite(module, shape) -> bool:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        return bool(torch.isfinite(copy.deepcopy(module).double()(x)).all())


def assert_verified(problem, plan, module, dtype=torch.float64):
    rep = verify(problem, plan, module, dtype=dtype)
    assert rep.passed, f"{plan!r}\n{rep.summary()}\n{rep.diff}"
    assert rep.messages_match and rep.weights_match and rep.memory_match
    return rep


def every_plan(problem, n_random: int):
    for kind in KINDS:
        yield kind, plans.build_plan(problem, kind)
    for seed in range(n_random):
        yield f"random{seed}", plans.random_plan(problem, seed)


# -- zoo tiny nets and synthetic nets -------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    return {name: zoo.build(name) for name in ("tiny_chain", "tiny_residual")}


@pytest.mark.parametrize("name", ["tiny_chain", "tiny_residual"])
@pytest.mark.parametrize("k,net", [(2, "shared"), (3, "switched"), (4, "shared"), (6, "switched")])
def test_tiny_zoo_every_plan_kind(tiny, name, k, net):
    module, shape = tiny[name]
    problem = problem_of(module, shape, k, net)
    for _, plan in every_plan(problem, n_random=3):
        assert_verified(problem, plan, module)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("kind", ["chain", "dag"])
def test_synthetic_every_plan_kind(seed, kind):
    module, shape = random_cnn(seed, n_layers=7, kind=kind, channels=(2, 12), input_hw=(12, 10))
    k = 2 + seed % 5
    net, split = ("switched", "proportional") if seed % 2 else ("shared", "equal")
    problem = problem_of(module, shape, k, net, split=split)
    for _, plan in every_plan(problem, n_random=3):
        assert_verified(problem, plan, module)


def test_float32_and_host_not_device_zero(tiny):
    module, shape = tiny["tiny_residual"]
    problem = problem_of(module, shape, 3, host=2)
    for _, plan in every_plan(problem, n_random=2):
        rep = assert_verified(problem, plan, module, dtype=torch.float32)
        assert rep.dtype == "float32" and rep.tolerance == pytest.approx(1e-4 * max(1.0, rep.output_scale))


def test_verify_leaves_the_module_alone(tiny):
    module, shape = tiny["tiny_chain"]
    before = copy.deepcopy(module.state_dict())
    problem = problem_of(module, shape, 3)
    verify(problem, plans.alternating(problem), module, dtype=torch.float64)
    after = module.state_dict()
    assert all(after[n].dtype == before[n].dtype and torch.equal(after[n], before[n]) for n in before)


class _Odd(nn.Module):
    """A shared submodule, a list attribute, a plain tensor attribute, an int buffer, a frozen parameter."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.again = self.conv
        self.scales = [1.0, 2.0]
        self.offset = torch.tensor(0.5)
        self.register_buffer("count", torch.tensor(3))
        self.gain = nn.Parameter(torch.tensor(1.5), requires_grad=False)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(self.again(x)) * self.gain * self.scales[1] + self.offset


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_converted_copy_is_a_converted_deep_copy(tiny, dtype):
    from iopopt.exec.convert import converted_copy

    x = torch.randn(2, 3, 6, 5, generator=torch.Generator().manual_seed(1))
    for module in (_Odd().train(), torch.fx.symbolic_trace(tiny["tiny_chain"][0]), tiny["tiny_residual"][0]):
        got, want = converted_copy(module, dtype), copy.deepcopy(module).to(dtype).eval()
        assert not got.training and not any(m.training for m in got.modules())
        assert [type(m).__name__ for m in got.modules()] == [type(m).__name__ for m in want.modules()]
        assert all(a is not b for a, b in zip(got.modules(), module.modules()))
        sd, ref = got.state_dict(), want.state_dict()
        assert sd.keys() == ref.keys() and all(sd[k].dtype == ref[k].dtype and torch.equal(sd[k], ref[k]) for k in sd)
        assert all(b.data_ptr() != o.data_ptr() for b, o in zip(got.buffers(), module.buffers()) if b.numel())
        if isinstance(module, _Odd):
            assert got.again is got.conv and got.scales == [1.0, 2.0] and got.scales is not module.scales
            with torch.no_grad():
                assert torch.equal(got(x.to(dtype)), want(x.to(dtype)))


def test_deterministic_input_and_explicit_input(tiny):
    module, shape = tiny["tiny_chain"]
    problem = problem_of(module, shape, 2)
    plan = plans.random_plan(problem, 4)
    a, b = verify(problem, plan, module, seed=3), verify(problem, plan, module, seed=3)
    assert a == b
    x = torch.randn(shape, generator=torch.Generator().manual_seed(9))
    assert verify(problem, plan, module, x=x).passed


# -- reduced-size real networks ------------------------------------------------------------------


@pytest.mark.parametrize("name,kinds", [("resnet18", ("alternating", "coedge")), ("mobilenet_v2", ("all_oc",))])
def test_real_networks_reduced_input(name, kinds):
    module, _ = zoo.build(name)
    problem = Problem(iopopt.trace(module, (1, 3, 64, 64)), cluster(4), network("switched"))
    for kind in kinds:
        assert_verified(problem, plans.build_plan(problem, kind), module)
    assert_verified(problem, plans.random_plan(problem, 0), module)


# -- hypothesis: random small CNNs ----------------------------------------------------------------

_ACTS = [
    lambda d: nn.ReLU(),
    lambda d: nn.ReLU6(),
    lambda d: nn.Sigmoid(),
    lambda d: nn.Tanh(),
    lambda d: nn.GELU(approximate=d.draw(st.sampled_from(["none", "tanh"]))),
    lambda d: nn.SiLU(),
    lambda d: nn.Hardswish(),
    lambda d: nn.Hardsigmoid(),
    lambda d: nn.LeakyReLU(d.draw(st.sampled_from([0.01, 0.2]))),
]


class _NetBuilder:
    """Draws a random small CNN as a SyntheticCNN program; shapes come from meta-device runs."""

    def __init__(self, data, n: int, h: int, w: int):
        self.d = data
        self.n = n
        self.layers: list[nn.Module] = []
        self.program: list[tuple] = []
        self.shapes = {0: (3, h, w)}
        self.next = 1

    def _new(self, shape) -> int:
        s = self.next
        self.next += 1
        self.shapes[s] = tuple(shape)
        return s

    def apply(self, mod: nn.Module, src: int) -> int | None:
        """Apply ``mod``; None (layer dropped) when its output would be empty or torch refuses it."""
        try:
            out = mod.eval()(torch.empty((self.n,) + self.shapes[src], device="meta"))
        except (RuntimeError, ValueError):
            return None
        if any(s < 1 for s in out.shape):
            return None
        self.layers.append(mod)
        dst = self._new(out.shape[1:])
        self.program.append(("mod", len(self.layers) - 1, src, dst))
        return dst

    def conv(self, src: int, cout: int | None = None, same: bool = False) -> int | None:
        d = self.d
        cin = self.shapes[src][0]
        cout = cout or d.draw(st.integers(1, 7))
        kh, kw = d.draw(st.sampled_from([1, 2, 3, 5])), d.draw(st.sampled_from([1, 3]))
        if same:
            kh |= 1
            dil = d.draw(st.sampled_from([1, 2]))
            return self.apply(
                nn.Conv2d(cin, cout, (kh, kw), 1, (dil * (kh - 1) // 2, dil * (kw - 1) // 2), dil), src
            )
        dh = d.draw(st.sampled_from([1, 1, 2]))
        ph = d.draw(st.integers(0, dh * (kh - 1)))
        sh, sw = d.draw(st.integers(1, 3)), d.draw(st.integers(1, 2))
        return self.apply(
            nn.Conv2d(cin, cout, (kh, kw), (sh, sw), (ph, kw // 2), (dh, 1), bias=d.draw(st.booleans())), src
        )

    def block(self, src: int) -> int:
        d = self.d
        c = self.shapes[src][0]
        what = d.draw(st.sampled_from(["conv", "conv", "dw", "maxpool", "avgpool", "adaptive", "act", "bn", "drop",
                                       "res", "cat"]))
        out = None
        if what == "conv":
            out = self.conv(src)
        elif what == "dw":
            k = d.draw(st.sampled_from([3, 5]))
            out = self.apply(nn.Conv2d(c, c, k, d.draw(st.integers(1, 2)), k // 2, groups=c), src)
        elif what == "maxpool":
            k = d.draw(st.integers(2, 3))
            out = self.apply(
                nn.MaxPool2d(k, d.draw(st.integers(1, 3)), d.draw(st.integers(0, k // 2)),
                             d.draw(st.sampled_from([1, 1, 2])), ceil_mode=d.draw(st.booleans())),
                src,
            )
        elif what == "avgpool":
            k = d.draw(st.integers(2, 3))
            out = self.apply(
                nn.AvgPool2d(k, d.draw(st.integers(1, 3)), d.draw(st.integers(0, k // 2)),
                             ceil_mode=d.draw(st.booleans()), count_include_pad=d.draw(st.booleans())),
                src,
            )
        elif what == "adaptive":
            _, h, w = self.shapes[src]
            size = (d.draw(st.integers(1, h + 1)), d.draw(st.integers(1, w)))
            cls = d.draw(st.sampled_from([nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d]))
            out = self.apply(cls(size), src)
        elif what == "act":
            out = self.apply(d.draw(st.sampled_from(_ACTS))(d), src)
        elif what == "bn":
            out = self.apply(nn.BatchNorm2d(c, affine=d.draw(st.booleans())), src)
        elif what == "drop":
            out = self.apply(nn.Dropout(0.5), src)
        elif what == "res":
            a = self.conv(src, cout=c, same=True)
            if a is not None:
                if d.draw(st.booleans()):
                    a = self.apply(nn.ReLU(), a)
                b = src if d.draw(st.booleans()) else self.conv(src, cout=c, same=True)
                if b is not None:
                    out = self._new(self.shapes[src])
                    self.program.append(("add", a, b, out))
        elif what == "cat":
            branches = [self.conv(src, same=True) for _ in range(d.draw(st.integers(1, 3)))]
            branches = [b for b in branches if b is not None]
            if d.draw(st.booleans()):
                branches.append(src)
            if len(branches) >= 2:
                ch = sum(self.shapes[b][0] for b in branches)
                out = self._new((ch,) + self.shapes[src][1:])
                self.program.append(("cat", tuple(branches), out))
        return src if out is None else out

    def head(self, src: int) -> int:
        d = self.d
        if d.draw(st.booleans()):
            return src
        if d.draw(st.booleans()):
            flat = self._new((self.shapes[src][0] * self.shapes[src][1] * self.shapes[src][2],))
            self.program.append(("flatten", src, flat))
        else:
            flat = self.apply(nn.Flatten(), src)
        if d.draw(st.booleans()):
            flat = self.apply(nn.Dropout(), flat)
        s = self.apply(nn.Linear(self.shapes[flat][0], d.draw(st.integers(1, 9))), flat)
        if d.draw(st.booleans()):
            s = self.apply(nn.ReLU(), s)
            s = self.apply(nn.Linear(self.shapes[s][0], d.draw(st.integers(1, 5)), bias=d.draw(st.booleans())), s)
        return s


@st.composite
def random_nets(draw):
    data = draw(st.data())
    n = draw(st.integers(1, 2))
    h, w = draw(st.integers(4, 14)), draw(st.integers(3, 12))
    b = _NetBuilder(data, n, h, w)
    with torch.device("meta"):
        s = None
        while s is None:
            s = b.conv(0)
        for _ in range(draw(st.integers(1, 6))):
            s = b.block(s)
        s = b.head(s)
        model = SyntheticCNN(b.layers, b.program, s)
    model.to_empty(device="cpu")
    shape = (n, 3, h, w)
    zoo.init_weights(model, seed=draw(st.integers(0, 2**16)), input_shape=shape)
    return model.eval(), shape


def partial_heavy(problem, seed: int):
    """A random plan, then every add fed by two heavy nodes (or partial adds) made a partial-sum add."""
    chosen = dict(plans.random_plan(problem, seed))
    g = problem.graph
    for op in g:
        if op.kind == "add" and all(g[i].kind in ("conv", "linear") or chosen[i] == "partial" for i in op.inputs):
            for i in op.inputs:
                if g[i].kind in ("conv", "linear"):
                    chosen[i] = "ic"
            chosen[op.name] = "partial"
    plan = iopopt.Plan(chosen)
    plan.validate(problem)
    return plan


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    net=random_nets(),
    k=st.integers(2, 6),
    net_kind=st.sampled_from(["shared", "switched"]),
    split=st.sampled_from(["proportional", "equal"]),
    host=st.integers(0, 5),
    plan_seed=st.integers(0, 10**6),
)
def test_random_cnns_random_plans(net, k, net_kind, split, host, plan_seed):
    module, shape = net
    assume(reference_is_finite(module, shape))  # e.g. a max-pool window wholly in the padding gives -inf
    problem = problem_of(module, shape, k, net_kind, split=split, host=host % k)
    assert_verified(problem, plans.random_plan(problem, plan_seed), module)
    assert_verified(problem, partial_heavy(problem, plan_seed), module)
    kind = KINDS[plan_seed % len(KINDS)]
    assert_verified(problem, plans.build_plan(problem, kind), module)


class _TwoAdds(nn.Module):
    """Residual adds of conv outputs feeding each other: partial sums added, then reduced into each layout."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 5, 3, padding=1)
        self.b = nn.Conv2d(3, 5, 1, bias=False)
        self.c = nn.Conv2d(3, 5, 3, padding=2, dilation=2)
        self.d = nn.Conv2d(5, 4, 3, stride=2)

    def forward(self, x):
        y = self.a(x) + self.b(x)
        z = y + self.c(x)
        return self.d(torch.relu(z))


@pytest.mark.parametrize("consumer", ["host", "replicate", "channel", "rows"])
@pytest.mark.parametrize("k", [2, 3, 5])
def test_partial_sum_adds(consumer, k):
    with torch.device("meta"):
        module = _TwoAdds()
    module.to_empty(device="cpu")
    shape = (2, 3, 9, 7)
    zoo.init_weights(module, seed=k, input_shape=shape)
    problem = problem_of(module.eval(), shape, k, "switched")
    base = {n: "ic" for n in ("a", "b", "c")} | {"add": "partial", "add_1": "partial", "relu": consumer}
    plan = problem.plan(base, default="oc")
    assert plan["relu"] == consumer and plan["d"] == "oc"
    assert_verified(problem, plan, module)


# -- weight shards (independent check against the module's tensors) --------------------------------


def test_weight_shards_slice_the_real_weights(tiny):
    module, shape = tiny["tiny_chain"]
    problem = problem_of(module, shape, 3)
    t = terms(problem)
    conv = problem.graph["conv2"]
    w, b = module.conv2.weight.detach(), module.conv2.bias.detach()
    oc = t.node("conv2", "oc")
    got = [weight_shard(conv, "oc", d, oc, module, host=0) for d in range(3)]
    assert torch.equal(torch.cat([g["weight"] for g in got]), w)
    assert torch.equal(torch.cat([g["bias"] for g in got]), b)
    ic = t.node("conv2", "ic")
    got = [weight_shard(conv, "ic", d, ic, module, host=1) for d in range(3)]
    assert torch.equal(torch.cat([g["weight"] for g in got], 1), w)
    assert [("bias" in g) for g in got] == [False, True, False]
    assert weight_shard(conv, "host", 1, t.node("conv2", "host"), module, host=0) == {}


# -- fault injection: the checks can fail and say where ------------------------------------------------


@pytest.fixture(scope="module")
def residual_case(tiny):
    module, shape = tiny["tiny_residual"]
    problem = problem_of(module, shape, 3)
    plan = plans.alternating(problem)
    return problem, plan, module


def _steps_with_messages(problem, plan):
    return [s.op.name for s in compile_plan(problem, plan).steps if any(r.n_messages for r in s.inputs)]


def test_dropping_any_message_fails_and_names_the_node(residual_case):
    problem, plan, module = residual_case
    names = _steps_with_messages(problem, plan)
    assert len(names) >= 4
    for name in names:
        rep = verify(problem, plan, module, faults=Faults(drop_message=(name, 0)))
        assert not rep.passed and not rep.messages_match and rep.max_abs_err > rep.tolerance, name
        assert f"messages of node {name!r}" in rep.diff
        assert "expected but not sent" in rep.diff


def test_dropping_a_reduce_scatter_message_is_caught():
    module, shape = zoo.build("tiny_chain")
    problem = problem_of(module, shape, 3)
    plan = plans.all_oc(problem).replace(conv3="ic", relu3="replicate", flatten="replicate", fc="host")
    steps = compile_plan(problem, plan).steps
    relu3 = next(s for s in steps if s.op.name == "relu3")
    assert [r.src.kind + r.dst.kind for r in relu3.inputs] == ["PR"] and len(relu3.inputs[0].phases) == 2
    assert_verified(problem, plan, module)
    rs, ag = relu3.inputs[0].phases
    # drop one message to the host in each phase (the other devices' copies are never read)
    for i in (rs.index(next(t for t in rs if t.dst == 0)), len(rs) + ag.index(next(t for t in ag if t.dst == 0))):
        rep = verify(problem, plan, module, faults=Faults(drop_message=("relu3", i)))
        assert not rep.passed and "messages of node 'relu3'" in rep.diff and rep.max_abs_err > rep.tolerance


def test_double_ic_bias_fails_numerics(residual_case):
    problem, plan, module = residual_case
    assert plan["fc"] == "ic"
    rep = verify(problem, plan, module, faults=Faults(double_ic_bias="fc"))
    assert not rep.passed and rep.messages_match and rep.weights_match and rep.memory_match
    assert rep.max_abs_err > rep.tolerance
    assert "first divergence: node 'fc' (ic)" in rep.diff


def test_leaked_tensor_fails_memory(residual_case):
    problem, plan, module = residual_case
    rep = verify(problem, plan, module, faults=Faults(leak="relu1"))
    assert not rep.passed and not rep.memory_match and rep.max_abs_err <= rep.tolerance
    assert "activation bytes at step" in rep.diff


def test_executor_reports_measured_bytes(residual_case):
    problem, plan, module = residual_case
    program = compile_plan(problem, plan)
    x = torch.randn(problem.graph["x"].out_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    model = copy.deepcopy(module).double()
    trace = SimulatedExecutor(problem, model, dtype=torch.float64).run(program, x)
    # float64 compute, but bytes are counted at the problem's 4 bytes per element
    assert problem.dtype_bytes == 4
    assert sum(m.nbytes for m in trace.messages) == sum(b for _, _, b in program.messages())
    assert trace.output.dtype == torch.float64


# -- plan builders ---------------------------------------------------------------------------------------


def test_plan_builders(tiny):
    module, shape = tiny["tiny_residual"]
    problem = problem_of(module, shape, 4)
    assert set(plans.all_host(problem).values()) == {"host"}
    assert plans.random_plan(problem, 7) == plans.random_plan(problem, 7)
    assert len({plans.random_plan(problem, s) for s in range(10)}) > 5
    oc = plans.all_oc(problem)
    assert all(oc[op.name] == "oc" for op in problem.graph if op.kind in ("conv", "linear"))
    ce = plans.coedge(problem)
    assert all(ce[op.name] == "rows" for op in problem.graph if op.kind == "conv") and ce["fc"] == "host"
    alt = [plans.alternating(problem)[op.name] for op in problem.graph if op.kind in ("conv", "linear")]
    assert alt[:4] == ["oc", "ic", "oc", "ic"]
    with pytest.raises(ValueError, match="valid"):
        plans.build_plan(problem, "nope")
    # the same baselines as the greedy's base plans
    from iopopt.space.pairs import base_plan

    assert base_plan(problem, "coedge") == ce and base_plan(problem, "oc") == oc


# -- full acceptance (slow) ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["alexnet", "vgg16", "resnet18", "resnet50", "mobilenet_v2", "inception_mini"])
def test_zoo_acceptance(name):
    module, shape = zoo.build(name)
    problem = Problem(iopopt.trace(module, shape), cluster(4), network("switched"))
    rng = random.Random(name)
    for label, plan in every_plan(problem, n_random=20):
        for dtype in (torch.float64, torch.float32):
            rep = verify(problem, plan, module, dtype=dtype, seed=rng.randrange(1000))
            assert rep.passed, f"{name} {label} {dtype}: {rep.summary()}\n{rep.diff}"
