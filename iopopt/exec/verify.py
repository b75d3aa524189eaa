"""Verification: run a plan with the simulated executor and check it against torch and the cost model.

:func:`verify` compares the executor's output with the unsplit forward of the
model, and what it measured (every message, the weight bytes per device and
node, the bytes held per device at every step) with the cost model's figures
(:meth:`~iopopt.compile.program.Program.messages`,
:func:`~iopopt.cost.memory.memory_profile`), byte for byte.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..compile.program import Program, compile_plan
from ..cost.memory import memory_profile
from ..frontend.reference import reference_values
from ..model.layouts import full_region
from .convert import converted_copy
from .regions import read_region
from .simulated import ExecutionTrace, Faults, SimulatedExecutor

__all__ = ["VerifyReport", "DEFAULT_RTOL", "OutputCheck", "check_output", "default_input", "verify"]


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of :func:`verify`.

    ``passed`` requires the numerics (``max_abs_err <= tolerance``) and the
    byte-exact agreement of messages, weights and activation memory with the
    cost model. ``diff`` says where they disagree (empty when all agree).
    """

    passed: bool
    max_abs_err: float
    max_rel_err: float
    output_scale: float
    tolerance: float
    messages_match: bool
    weights_match: bool
    memory_match: bool
    diff: str = ""
    dtype: str = "float64"
    expected_activation_peaks: tuple[int, ...] = ()
    actual_activation_peaks: tuple[int, ...] = ()
    reference_finite: bool = True

    @property
    def numerics_ok(self) -> bool:
        return self.max_abs_err <= self.tolerance

    def summary(self) -> str:
        state = "PASSED" if self.passed else "FAILED"
        if not self.reference_finite:
            return f"verify {state} ({self.dtype}): the unsplit model's own output is not finite on this input"
        return (
            f"verify {state} ({self.dtype}): max abs err {self.max_abs_err:.3g} (tolerance {self.tolerance:.3g}, "
            f"output scale {self.output_scale:.3g}), messages {'ok' if self.messages_match else 'DIFFER'}, "
            f"weights {'ok' if self.weights_match else 'DIFFER'}, memory {'ok' if self.memory_match else 'DIFFER'}"
        )


#: Default relative tolerance factor per dtype: pass iff max_abs_err <= factor · max(1, output_scale).
DEFAULT_RTOL = {torch.float64: 1e-9, torch.float32: 1e-4}


def default_input(graph, seed: int = 0) -> Tensor:
    """The input every executor draws when given none: standard normal, float64, ``Generator().manual_seed(seed)``."""
    shape = graph[graph.input_name].out_shape
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@dataclass(frozen=True)
class OutputCheck:
    """An output against the unsplit model's: max abs error, reference scale and the tolerance that applies."""

    max_abs_err: float
    output_scale: float
    tolerance: float
    shape_ok: bool

    @property
    def passed(self) -> bool:
        return self.shape_ok and self.max_abs_err <= self.tolerance


def check_output(out: Tensor | None, ref: Tensor, rtol: float, atol: float = 0.0) -> OutputCheck:
    """``max |out − ref|`` against ``atol + rtol · max(1, max |ref|)`` (inf for a missing or misshapen output)."""
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    tol = atol + rtol * max(1.0, scale)
    if out is None or tuple(out.shape) != tuple(ref.shape):
        return OutputCheck(math.inf, scale, tol, False)
    err = float((out.to(ref.dtype) - ref).abs().max()) if ref.numel() else 0.0
    return OutputCheck(err if math.isfinite(err) else math.inf, scale, tol, True)


def _message_diff(program: Program, trace: ExecutionTrace) -> list[str]:
    lines = []
    expected: dict[str, Counter] = {}
    for step in program.steps:
        c = Counter((t.src, t.dst, t.nbytes) for r in step.inputs for t in r.transfers)
        if c:
            expected[step.op.name] = c
    actual: dict[str, Counter] = {}
    for m in trace.messages:
        actual.setdefault(m.node, Counter())[(m.src, m.dst, m.nbytes)] += 1
    for step in program.steps:
        name = step.op.name
        e, a = expected.get(name, Counter()), actual.get(name, Counter())
        if e != a:
            missing, extra = e - a, a - e
            lines.append(
                f"messages of node {name!r} ({step.strategy}): "
                + (f"expected but not sent {sorted(missing.elements())}" if missing else "")
                + ("; " if missing and extra else "")
                + (f"sent but not expected {sorted(extra.elements())}" if extra else "")
                + " (src, dst, bytes)"
            )
    return lines


def _first_divergence(problem, program, model, x, dtype, rtol, faults) -> str:
    """Re-run with every node checked against the unsplit model's intermediates; name the first that differs."""
    env = reference_values(problem.graph, model, x)
    found: list[str] = []

    class _Stop(Exception):
        pass

    def observe(step, parts):
        ref = env.get(step.op.name)
        if ref is None:
            return
        dist = step.term.out
        tol = rtol * max(1.0, float(ref.abs().max()) if ref.numel() else 0.0)
        if dist.kind == "P":
            held = [t for t in parts if t is not None]
            got = held[0].clone()
            for t in held[1:]:
                got = got + t
            err = float((got - ref).abs().max())
            if not err <= tol:
                found.append(
                    f"first divergence: node {step.op.name!r} ({step.strategy}): the sum of the partials "
                    f"of devices {list(dist.holders())} is off by {err:.3g}"
                )
                raise _Stop
            return
        for d, part in enumerate(parts):
            if part is None:
                continue
            want = read_region(ref, full_region(ref.shape), dist.parts[d])
            err = float((part - want).abs().max()) if part.numel() else 0.0
            if not err <= tol:
                found.append(
                    f"first divergence: node {step.op.name!r} ({step.strategy}), device {d}, "
                    f"part {dist.parts[d]}: max abs err {err:.3g}"
                )
                raise _Stop

    try:
        with torch.no_grad():
            SimulatedExecutor(problem, model, dtype=dtype, faults=faults).run(program, x, observer=observe)
    except _Stop:
        pass
    return found[0] if found else "every node's parts match the unsplit model (the final gather differs)"


def verify(
    problem,
    plan,
    module: nn.Module,
    x: Tensor | None = None,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    rtol: float | None = None,
    atol: float = 0.0,
    faults: Faults | None = None,
) -> VerifyReport:
    """Run ``plan`` with the simulated executor and check it against torch and the cost model.

    The output is compared with the unsplit forward of ``module`` (a deep copy
    converted to ``dtype``; the caller's module is not touched). Numerics pass
    iff ``max_abs_err <= atol + rtol · max(1, output_scale)``, where
    ``output_scale = max |reference|``. Default ``rtol``: ``1e-9`` in float64;
    ``1e-4`` in float32, which leaves room for the float32 rounding of sums
    reordered by the split (channel partial sums, split convs) through deep
    nets: over the whole zoo (VGG-16, ResNet-50, ...; 4 plan kinds and 20
    random plans each) the observed float32 errors stay below 2.1e-6 · scale,
    a margin of about 50; float64 errors stay below 1e-14 · scale.

    Messages (the multiset of (src, dst, bytes) against
    :meth:`~iopopt.compile.program.Program.messages`), weight bytes per device and per
    node, and activation bytes per device at every step (hence the peaks of
    :func:`~iopopt.cost.memory.memory_profile`) must agree exactly; the executor's
    figures are measured from the tensors it holds and sends.

    Parameters
    ----------
    plan : Plan, mapping or Program
        The plan, or the :class:`~iopopt.compile.program.Program` it was
        already compiled into (a job compiles once: solving, costing and
        verifying share the Program).
    x : Tensor, optional
        Input; when None a standard normal input is drawn from
        ``torch.Generator().manual_seed(seed)``.
    faults : Faults, optional
        Deliberate faults (tests only).
    """
    if dtype not in DEFAULT_RTOL:
        raise ValueError(f"verify: dtype must be one of {list(DEFAULT_RTOL)}, got {dtype}")
    if rtol is None:
        rtol = DEFAULT_RTOL[dtype]
    if isinstance(plan, Program):
        if plan.problem is not problem:
            raise ValueError("verify: the program was compiled for another problem")
        program = plan
    else:
        program = compile_plan(problem, plan)
    if x is None:
        x = default_input(problem.graph, seed)
    x = x.to(dtype)
    model = converted_copy(module, dtype)
    with torch.no_grad():
        ref = model(x)
        trace = SimulatedExecutor(problem, model, dtype=dtype, faults=faults).run(program, x)
    out = trace.output
    diff: list[str] = []
    reference_finite = bool(torch.isfinite(ref).all())
    if not reference_finite:
        diff.append(
            "the unsplit model's own output is not finite (NaN or inf) on this input, so there is nothing to "
            "compare the plan with (e.g. a max-pool window wholly in the padding); verify with another input"
        )
    check = check_output(out, ref, rtol, atol)
    if not check.shape_ok:
        diff.append(f"output shape {tuple(out.shape)} != reference {tuple(ref.shape)}")
    max_abs, scale, tol = check.max_abs_err, check.output_scale, check.tolerance
    max_rel = max_abs / scale if scale > 0 else max_abs
    if reference_finite and not max_abs <= tol:
        diff.append(f"output differs from the unsplit model: max abs err {max_abs:.3g} > tolerance {tol:.3g}")
        if out.numel() and not bool(torch.isfinite(out).all()):
            diff.append("the output has non-finite values: a staging buffer region no message filled (NaN) reached it")
        diff.append(_first_divergence(problem, program, model, x, dtype, rtol, faults))

    # messages
    expected_msgs = Counter(program.messages())
    actual_msgs = Counter((m.src, m.dst, m.nbytes) for m in trace.messages)
    messages_match = expected_msgs == actual_msgs
    msg_lines = _message_diff(program, trace)
    messages_match = messages_match and not msg_lines
    diff.extend(msg_lines)

    # weights and memory
    exp_weights, exp_peaks, exp_held = memory_profile(program)
    weights_match = list(exp_weights) == list(trace.weights)
    for step in program.steps:
        got = trace.weights_per_node.get(step.op.name, [0] * problem.k)
        if list(step.term.weight_bytes) != list(got):
            weights_match = False
            diff.append(
                f"weights of node {step.op.name!r} ({step.strategy}): expected {list(step.term.weight_bytes)} B, "
                f"built {got} B per device"
            )
    if list(exp_weights) != list(trace.weights):
        diff.append(f"weight bytes per device: expected {list(exp_weights)}, built {trace.weights}")
    act_peaks = trace.activation_peaks
    memory_match = list(exp_peaks) == act_peaks
    for p, (e, a) in enumerate(zip(exp_held, trace.held)):
        if list(e) != list(a):
            memory_match = False
            step = program.steps[p]
            devs = [d for d in range(problem.k) if e[d] != a[d]]
            diff.append(
                f"activation bytes at step {p} (node {step.op.name!r}, {step.strategy}): "
                + ", ".join(f"device {d} expected {e[d]} B, held {a[d]} B" for d in devs)
            )
            break  # later steps usually differ for the same reason
    if list(exp_peaks) != act_peaks:
        diff.append(f"activation peaks per device: expected {list(exp_peaks)}, measured {act_peaks}")
    passed = bool(reference_finite and max_abs <= tol and messages_match and weights_match and memory_match)
    return VerifyReport(
        passed=passed,
        max_abs_err=max_abs,
        max_rel_err=max_rel,
        output_scale=scale,
        tolerance=tol,
        messages_match=messages_match,
        weights_match=weights_match,
        memory_match=memory_match,
        diff="\n".join(diff),
        dtype=str(dtype).replace("torch.", ""),
        expected_activation_peaks=tuple(exp_peaks),
        actual_activation_peaks=tuple(act_peaks),
        reference_finite=reference_finite,
    )
