"""The op kinds of DESIGN §2 beyond conv/linear: every strategy runs and verifies against torch, byte-exact.

Small modules built from the patterns of torchvision's CNNs (squeeze-excitation
gates, grouped convs, ConvNeXt blocks, channel shuffles, channel splits,
global means, upsampling) are traced, and plans of every family plus seeded
random plans (which draw every strategy of every node) run on the simulated
executor; :func:`iopopt.verify` compares the output with the unsplit forward
and the messages, weights and memory with the cost model.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import iopopt
from iopopt import zoo
from iopopt.compile import terms
from iopopt.model import Cluster, Device, Layout, SwitchedNetwork
from iopopt.plans import build_plan
from iopopt.solver import make_solver

torch.set_num_threads(1)


class SE(nn.Module):
    """MobileNetV3/EfficientNet: expand, depthwise, squeeze-excitation gate (both operand orders), project."""

    def __init__(self, c=6, e=12):
        super().__init__()
        self.expand = nn.Conv2d(c, e, 1)
        self.dw = nn.Conv2d(e, e, 3, padding=1, groups=e)
        self.fc1 = nn.Conv2d(e, 4, 1)
        self.fc2 = nn.Conv2d(4, e, 1)
        self.spatial = nn.Conv2d(e, 1, 1)
        self.project = nn.Conv2d(e, c, 1)

    def forward(self, x):
        y = F.hardswish(self.dw(F.silu(self.expand(x))))
        s = F.adaptive_avg_pool2d(y, 1)
        y = torch.sigmoid(self.fc2(F.relu(self.fc1(s)))) * y  # the gate first, as torchvision writes it
        y = y * torch.sigmoid(self.spatial(y))  # a one-channel gate broadcast over the channels
        return self.project(y) + x


class Grouped(nn.Module):
    """ResNeXt/RegNet: 1x1 → grouped 3x3 → 1x1, and a grouped conv with a channel multiplier."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 12, 1)
        self.g = nn.Conv2d(12, 12, 3, padding=1, groups=4, bias=False)
        self.bn = nn.BatchNorm2d(12)
        self.m = nn.Conv2d(12, 18, 3, stride=2, groups=6)
        self.b = nn.Conv2d(18, 5, 1)

    def forward(self, x):
        return self.b(F.relu(self.m(F.relu(self.bn(self.g(F.relu(self.a(x))))))))


class LayerNorm2d(nn.LayerNorm):
    def forward(self, x):
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                            self.eps).permute(0, 3, 1, 2)


class NextBlock(nn.Module):
    """ConvNeXt: LayerNorm2d, depthwise 7x7, permute → LayerNorm → Linear → GELU → Linear → permute, layer scale."""

    def __init__(self, c=8):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, c, 2, stride=2), LayerNorm2d(c))
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c)
        self.pw1 = nn.Linear(c, 4 * c)
        self.pw2 = nn.Linear(4 * c, c)
        self.gamma = nn.Parameter(torch.linspace(0.5, 2.0, c).reshape(c, 1, 1))
        self.head = nn.Sequential(LayerNorm2d(c), nn.Flatten(1), nn.Linear(c * 5 * 4, 7))

    def forward(self, x):
        x = self.stem(x)
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.pw2(F.gelu(self.pw1(self.norm(y)), approximate="tanh")).permute(0, 3, 1, 2)
        x = x + self.gamma * y
        return self.head(x)


class Shuffle(nn.Module):
    """ShuffleNetV2: chunk, one branch, cat, channel shuffle; a global mean and a linear head."""

    def __init__(self, c=8):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.branch = nn.Sequential(nn.Conv2d(c // 2, c // 2, 1), nn.BatchNorm2d(c // 2), nn.ReLU(),
                                    nn.Conv2d(c // 2, c // 2, 3, padding=1, groups=c // 2))
        self.fc = nn.Linear(c, 5)

    def forward(self, x):
        x = self.stem(x)
        for _ in range(2):
            a, b = x.chunk(2, dim=1)
            x = torch.cat((a, self.branch(b)), 1)
            n, c, h, w = x.size()
            x = x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
        return self.fc(x.mean([2, 3]))


class Resample(nn.Module):
    """Upsampling (nearest by scale, bilinear by size and with aligned corners), slices, splits, scalars."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 7, 3, stride=2, padding=1)
        self.b = nn.Conv2d(7, 4, 1)
        self.c = nn.Conv2d(11, 6, 3, padding=1)

    def forward(self, x):
        y = self.a(x)
        up = F.interpolate(y, scale_factor=2, mode="nearest")[:, 1:5]
        z = F.interpolate(self.b(y), size=(x.shape[2], x.shape[3]), mode="bilinear", align_corners=False)
        p, q = torch.split(self.c(torch.cat([up, z, x], 1)), [2, 4], dim=1)
        q = F.interpolate(q, scale_factor=1.5, mode="bilinear", align_corners=True)
        p = F.avg_pool2d(F.max_pool2d(p, 2, 1, 1), 3, 1, 1) * 0.5 - 1.0
        return torch.cat([F.interpolate(p, size=q.shape[2:], mode="nearest"), F.hardtanh(q / 6, -1.0, 1.0)], 1)


MODELS = {
    "se": (SE, (1, 6, 11, 9)),
    "grouped": (Grouped, (2, 3, 9, 10)),
    "next": (NextBlock, (1, 3, 10, 8)),
    "shuffle": (Shuffle, (1, 3, 7, 9)),
    "resample": (Resample, (1, 3, 10, 12)),
}
KINDS = {
    "se": {"eltwise", "dwconv", "adaptive_avgpool", "add"},
    "grouped": {"gconv"},
    "next": {"layernorm", "conv", "eltwise", "add", "dwconv", "flatten"},
    "shuffle": {"split", "cat", "shuffle", "mean"},
    "resample": {"upsample", "split", "eltwise", "cat"},
}


@pytest.fixture(scope="module")
def models():
    out = {}
    for name, (cls, shape) in MODELS.items():
        with torch.device("meta"):
            module = cls()
        module.to_empty(device="cpu")
        for p in module.parameters():  # LayerNorm and layer-scale parameters are not re-drawn by init_weights
            if p.dim() <= 3:
                p.data.copy_(torch.linspace(0.5, 1.5, p.numel()).reshape(p.shape))
        out[name] = (zoo.init_weights(module, seed=3, input_shape=shape).eval(), shape)
    return out


def _hetero(k):
    return Cluster(tuple(Device(f"d{i}", 1e9 * (k - i)) for i in range(k)))


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_plan_family_and_random_plans_verify(models, name, k):
    module, shape = models[name]
    g = iopopt.trace(module, shape)
    assert KINDS[name] <= {str(op.kind) for op in g}
    problem = iopopt.Problem(g, _hetero(k), SwitchedNetwork(1e8, 1e-4))
    seen: dict[str, set] = {op.name: set() for op in g}
    for kind, seed in [("all_host", 0), ("all_oc", 0), ("coedge", 0), ("alternating", 0)] + [
        ("random", s) for s in range(12)
    ]:
        plan = build_plan(problem, kind, seed=seed)
        rep = iopopt.verify(problem, plan, module)
        assert rep.passed, (kind, seed, rep.diff)
        for n, s in plan.items():
            seen[n].add(s)
    # the random plans exercised the new kinds' split strategies
    new = [op for op in g if op.kind in ("gconv", "eltwise", "layernorm", "shuffle", "split", "upsample", "mean")]
    assert any(seen[op.name] & {"channel", "rows", "oc"} for op in new)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_solvers_plans_verify(models, name):
    module, shape = models[name]
    problem = iopopt.Problem(iopopt.trace(module, shape), _hetero(3), SwitchedNetwork(1e9, 1e-5))
    for solver in ("greedy_iop", "ilp"):
        result = make_solver(solver).solve(problem)
        rep = iopopt.verify(problem, result.plan, module)
        assert rep.passed, (solver, rep.diff)


def test_small_operand_follows_the_big_one():
    module, shape = SE(), (1, 6, 11, 9)
    g = iopopt.trace(module, shape)
    problem = iopopt.Problem(g, _hetero(3), SwitchedNetwork(1e8, 1e-4))
    t = terms(problem)
    gate_mul, spatial_mul = [op for op in g if op.kind == "eltwise"]
    big = gate_mul.params["big"]
    assert big == 1 and gate_mul.in_shapes[0] == (1, 12, 1, 1)
    # channel split: the (N, C, 1, 1) gate gets the big operand's channel split
    req = t.node(gate_mul.name, "channel").required
    assert [r.ch for r in req[0].parts] == [r.ch for r in req[1].parts]
    assert all(r.rows == (0, 1) for r in req[0].parts)
    # row split: the gate is whole on every device
    req = t.node(gate_mul.name, "rows").required
    assert all(r.ch == ((0, 12),) and r.rows == (0, 1) for r in req[0].parts)
    assert [r.rows for r in req[1].parts] != [(0, 11)] * 3
    # a one-channel gate under a channel split: whole, on every device
    req = t.node(spatial_mul.name, "channel").required
    assert req[1].kind == Layout.REPLICATED and all(r.ch == ((0, 1),) for r in req[1].parts)


def test_grouped_conv_splits_by_whole_groups_where_its_input_is():
    module, shape = Grouped(), (1, 3, 9, 10)
    g = iopopt.trace(module, shape)
    t = terms(iopopt.Problem(g, _hetero(3), SwitchedNetwork(1e8, 1e-4)))
    gconv = next(op for op in g if op.kind == "gconv" and op.params["groups"] == 4)
    out = t.out_dist(gconv.name, "channel").parts
    need = t.node(gconv.name, "channel").required[0].parts
    for o, r in zip(out, need):
        if o is None:
            continue
        groups_out = {c // 3 for c in o.channel_indices()}
        assert {c // 3 for c in r.channel_indices()} == groups_out  # the same whole groups in and out
        assert len(o.channel_indices()) == 3 * len(groups_out)
    # each group goes to a device holding most of its input channels under the input's own split
    # (conv ``a`` in oc: 12 channels as 6/4/2 by speed)
    a_out = t.out_dist(g[gconv.inputs[0]].inputs[0], "oc").parts
    held = [set(r.channel_indices()) for r in a_out]
    for d, r in enumerate(need):
        for grp in {c // 3 for c in (r.channel_indices() if r else [])}:
            mine = {3 * grp, 3 * grp + 1, 3 * grp + 2}
            assert len(mine & held[d]) == max(len(mine & h) for h in held)


def test_distributed_executor_runs_the_new_kinds(models):
    """The same kernels over real processes and gloo messages: every model, three plan families, 3 ranks."""
    from iopopt import compile_plan
    from iopopt.distributed import DistributedExecutor, Job, check_trace

    jobs = []
    for name in sorted(MODELS):
        module, shape = models[name]
        problem = iopopt.Problem(iopopt.trace(module, shape), _hetero(3), SwitchedNetwork(1e8, 1e-4))
        for kind in ("all_oc", "coedge", "random"):
            jobs.append((f"{name}-{kind}", Job(compile_plan(problem, build_plan(problem, kind, seed=5)), module)))
    traces = DistributedExecutor(warmup=0, repeats=1, timeout_s=60, run_timeout_s=300).run_many([j for _, j in jobs])
    for (label, job), tr in zip(jobs, traces):
        rep = check_trace(job.program, tr, job.module)
        assert rep.passed, (label, rep.summary())
        expected = [sum(s.term.weight_bytes[d] for s in job.program.steps) for d in range(3)]
        assert [r.weight_bytes for r in tr.ranks] == expected, label
