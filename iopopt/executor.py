"""The simulated executor: run a compiled Program with torch, one process, k isolated devices.

:class:`SimulatedExecutor` keeps one store (a dict) per device and runs the
Program's steps in order. For every input of a step each device assembles
what the step needs exactly as the step's :class:`~iopopt.compiler.Resharding`
says -- local slicing of its own stored part plus the pieces that the
``Transfer`` s copy out of other devices' stores, phase by phase -- then
computes its output part with :mod:`iopopt.kernels` from its own buffers and
its own weight shard, and stores it. A device reads only its own store: a
missing or wrong message shows up as a wrong number.

While it runs, the executor measures what it actually does: every message
(sender, receiver, element count × the problem's bytes per element), the bytes
each device holds at every step (stored parts, staging buffers, current
output) and the bytes of the weight shards it built. :func:`verify` compares
those measurements with the cost model (:func:`iopopt.cost.memory_profile`,
:meth:`iopopt.compiler.Program.messages`) and the output with the unsplit
forward of the model.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from . import kernels
from .compiler import Program, Resharding, Step, compile_plan
from .layouts import Region, full_region

__all__ = [
    "Faults",
    "MessageRecord",
    "ExecutionTrace",
    "SimulatedExecutor",
    "VerifyReport",
    "verify",
    "dense_shape",
    "read_region",
    "region_index",
    "write_region",
]


@dataclass(frozen=True)
class Faults:
    """Deliberate faults, for tests that show the checks can fail.

    ``drop_message``: ``(node, index)`` -- the ``index``-th transfer (program
    order, over all inputs and phases) of node ``node``'s input reshardings is
    not delivered. ``double_ic_bias``: name of a conv/linear node in ``ic``
    whose host adds its bias twice. ``leak``: name of a node whose output is
    never freed.
    """

    drop_message: tuple[str, int] | None = None
    double_ic_bias: str | None = None
    leak: str | None = None


@dataclass(frozen=True)
class MessageRecord:
    """One message the executor delivered: node whose input it reshards, sender, receiver, bytes."""

    node: str
    src: int
    dst: int
    nbytes: int


@dataclass
class ExecutionTrace:
    """What one run did, measured from the tensors actually held and sent.

    ``held[p][d]``: bytes device d held while step p ran (stored parts,
    staging buffers, the step's output). ``weights[d]``: bytes of every
    weight shard d built; ``weights_per_node[name][d]`` the same per node.
    """

    output: Tensor
    messages: list[MessageRecord]
    held: list[list[int]]
    weights: list[int]
    weights_per_node: dict[str, list[int]]

    @property
    def activation_peaks(self) -> list[int]:
        k = len(self.weights)
        return [max((h[d] for h in self.held), default=0) for d in range(k)]


def region_index(region: Region, sub: Region, ndim: int) -> tuple:
    """Index of ``sub`` inside a dense part holding ``region``."""
    pos, offset = [], 0
    for a, b in region.ch:
        for c0, c1 in sub.ch:
            lo, hi = max(a, c0), min(b, c1)
            if lo < hi:
                pos.extend(range(offset + lo - a, offset + hi - a))
        offset += b - a
    if len(pos) != sub.n_ch:
        raise RuntimeError(f"region {sub} is not inside {region}")
    ch = slice(pos[0], pos[-1] + 1) if pos == list(range(pos[0], pos[-1] + 1)) else torch.tensor(pos)
    if ndim == 4:
        r0 = sub.rows[0] - region.rows[0]
        r1 = sub.rows[1] - region.rows[0]
        if r0 < 0 or r1 > region.rows[1] - region.rows[0]:
            raise RuntimeError(f"rows of {sub} are not inside {region}")
        return (slice(None), ch, slice(r0, r1))
    return (slice(None), ch)


def dense_shape(shape: tuple[int, ...], region: Region) -> tuple[int, ...]:
    if len(shape) == 4:
        return (shape[0], region.n_ch, region.n_rows, shape[3])
    return (shape[0], region.n_ch) + tuple(shape[2:])


def read_region(part: Tensor, held: Region, sub: Region) -> Tensor:
    """Copy ``sub`` out of a dense part holding ``held``."""
    if not held.contains(sub):
        raise RuntimeError(f"a device asked to send {sub} holds only {held}")
    idx = region_index(held, sub, part.dim())
    if isinstance(idx[1], Tensor):
        out = part.index_select(1, idx[1])
        return out[(slice(None), slice(None)) + idx[2:]].clone()
    return part[idx].clone()


def write_region(buf: Tensor, region: Region, sub: Region, piece: Tensor, accumulate: bool = False) -> None:
    idx = region_index(region, sub, buf.dim())
    if isinstance(idx[1], Tensor):
        for j, c in enumerate(idx[1].tolist()):
            tgt = buf[(slice(None), c) + idx[2:]]
            if accumulate:
                tgt += piece[:, j]
            else:
                tgt.copy_(piece[:, j])
        return
    if accumulate:
        buf[idx] += piece
    else:
        buf[idx] = piece


class SimulatedExecutor:
    """Run Programs of ``problem`` with the real weights of ``module``, one process, k isolated stores.

    Parameters
    ----------
    problem : Problem
        The problem the programs were compiled for.
    module : nn.Module
        The model (any module with the traced graph's submodule names); weights
        are read from it as they are, in ``dtype``: pass a module already
        converted to ``dtype`` (:func:`verify` does so on a copy).
    dtype : torch.dtype
        Precision of the computation. Byte figures always use
        ``problem.dtype_bytes`` per element, whatever ``dtype`` is.
    faults : Faults, optional
        Deliberate faults for tests.
    """

    def __init__(self, problem, module: nn.Module, dtype: torch.dtype = torch.float64, faults: Faults | None = None):
        self.problem = problem
        self.module = module
        self.dtype = dtype
        self.faults = faults or Faults()

    # -- resharding -----------------------------------------------------------------------
    def _assemble(self, res: Resharding, name: str, src_name: str, stores, staging, messages, counter) -> list:
        """Per device, the buffer of ``res.dst`` region for the consumer (None where it needs nothing)."""
        k = self.problem.k
        nb = self.problem.dtype_bytes
        src, dst = res.src, res.dst
        shape = src.shape
        mine = [stores[d].get(src_name) for d in range(k)]
        for d in range(k):
            if src.parts[d] is not None and mine[d] is None:
                raise RuntimeError(f"device {d} lost its part of {src_name!r} before step {name!r}")

        def deliver(t, read_from: list, read_regions: list) -> Tensor | None:
            i = counter[0]
            counter[0] += 1
            if self.faults.drop_message == (name, i):
                return None
            held = read_regions[t.src]
            if held is None or read_from[t.src] is None:
                raise RuntimeError(f"step {name!r}: device {t.src} must send {t.region} but holds nothing")
            piece = read_region(read_from[t.src], held, t.region)
            messages.append(MessageRecord(name, t.src, t.dst, piece.numel() * nb))
            return piece

        out: list = [None] * k
        if dst.kind == "P":  # P → P: every holder reads its stored partial
            if src.kind != "P":
                raise RuntimeError(f"step {name!r}: a partial input cannot come from layout {src.kind}")
            return list(mine)
        if src.kind != "P":
            for d in range(k):
                r = dst.parts[d]
                if r is not None and src.parts[d] == r:
                    out[d] = mine[d]  # identity
            for phase in res.phases:
                for t in phase:
                    if out[t.dst] is None:
                        out[t.dst] = self._staging(shape, dst.parts[t.dst], d=t.dst, staging=staging, fill=math.nan)
                        own = src.parts[t.dst]
                        inter = own.intersect(dst.parts[t.dst]) if own is not None else None
                        if inter is not None:
                            write_region(out[t.dst], dst.parts[t.dst], inter, read_region(mine[t.dst], own, inter))
                    piece = deliver(t, mine, src.parts)
                    if piece is not None:
                        write_region(out[t.dst], dst.parts[t.dst], t.region, piece)
            for d in range(k):  # devices that need no message: local slicing
                r = dst.parts[d]
                if r is not None and out[d] is None:
                    own = src.parts[d]
                    if r.is_empty():  # a window wholly in the padding needs no real row
                        out[d] = self._staging(shape, r, d=d, staging=staging, fill=math.nan)
                        continue
                    if own is None or not own.contains(r):
                        raise RuntimeError(f"step {name!r}: device {d} needs {r} of {src_name!r} and receives nothing")
                    out[d] = self._staging(shape, r, d=d, staging=staging, fill=math.nan)
                    out[d].copy_(read_region(mine[d], own, r))
            return out

        # partial sums: reduce (phase 1), and for P → R an all-gather of the reduced blocks (phase 2)
        if dst.kind == "R":
            phases = list(res.phases)
            gather = phases[-1] if phases else ()
            reduce = phases[0] if len(phases) == 2 else ()
            blocks: dict[int, Region] = {}
            for t in reduce:
                blocks[t.dst] = t.region
            for t in gather:
                blocks[t.src] = t.region
            if not phases:  # a single device: its partial is the whole sum
                for d in range(k):
                    if dst.parts[d] is not None and src.parts[d] is not None:
                        blocks[d] = dst.parts[d]
            for d in range(k):
                if dst.parts[d] is not None:
                    out[d] = self._staging(shape, dst.parts[d], d=d, staging=staging, fill=math.nan)
            for d, r in blocks.items():
                out[d][region_index(dst.parts[d], r, len(shape))] = 0.0
                if src.parts[d] is not None:
                    write_region(out[d], dst.parts[d], r, read_region(mine[d], src.parts[d], r), accumulate=True)
            for t in reduce:
                piece = deliver(t, mine, src.parts)
                if piece is not None:
                    write_region(out[t.dst], dst.parts[t.dst], t.region, piece, accumulate=True)
            # phase 2 reads what the devices hold now: their reduced blocks in their staging buffers
            # (a receiver writes only other devices' blocks, so reading the live buffers is exact)
            now = [out[d] if d in blocks else None for d in range(k)]
            now_regions = [dst.parts[d] if d in blocks else None for d in range(k)]
            for t in gather:
                if now_regions[t.src] is None or not blocks[t.src].contains(t.region):
                    raise RuntimeError(f"step {name!r}: device {t.src} sends {t.region} it has not reduced")
                piece = deliver(t, now, now_regions)
                if piece is not None:
                    write_region(out[t.dst], dst.parts[t.dst], t.region, piece)
            return out
        for d in range(k):
            r = dst.parts[d]
            if r is None:
                continue
            out[d] = self._staging(shape, r, d=d, staging=staging, fill=0.0)
            if src.parts[d] is not None:
                write_region(out[d], r, r, read_region(mine[d], src.parts[d], r), accumulate=True)
        for phase in res.phases:
            for t in phase:
                if dst.parts[t.dst] is None:
                    raise RuntimeError(f"step {name!r}: device {t.dst} receives a partial it does not need")
                piece = deliver(t, mine, src.parts)
                if piece is not None:
                    write_region(out[t.dst], dst.parts[t.dst], t.region, piece, accumulate=True)
        return out

    def _staging(self, shape, region: Region, d: int, staging, fill: float) -> Tensor:
        buf = torch.full(dense_shape(shape, region), fill, dtype=self.dtype)
        staging[d].append(buf)
        return buf

    # -- running --------------------------------------------------------------------------
    def run(self, program: Program, x: Tensor, observer=None) -> ExecutionTrace:
        """Run ``program`` on input ``x`` (full input tensor, placed on the host only).

        ``observer(step, parts)``, when given, is called after each operator with
        every device's output part (None where it holds nothing); for diagnosis only.
        """
        problem = self.problem
        if program.problem is not problem:
            raise ValueError("SimulatedExecutor.run: the program was compiled for another problem")
        g = problem.graph
        k, host, nb = problem.k, problem.host, problem.dtype_bytes
        stores: list[dict[str, Tensor]] = [dict() for _ in range(k)]
        last_use = {n: g.last_use(n) for n in g.order}
        freed_at: dict[int, list[str]] = {}
        for n, p in last_use.items():
            if n != self.faults.leak:
                freed_at.setdefault(p, []).append(n)
        messages: list[MessageRecord] = []
        held_steps: list[list[int]] = []
        weights = [0] * k
        per_node: dict[str, list[int]] = {}
        result = None
        for p, step in enumerate(program.steps):
            op, name = step.op, step.op.name
            staging: list[list[Tensor]] = [[] for _ in range(k)]
            counter = [0]
            bufs = [
                self._assemble(res, name, src, stores, staging, messages, counter)
                for res, src in zip(step.inputs, op.inputs)
            ]
            outs: list[Tensor | None] = [None] * k
            node_w = [0] * k
            if op.kind == "input":
                if tuple(x.shape) != tuple(op.out_shape):
                    raise ValueError(f"input shape {tuple(x.shape)} != traced shape {op.out_shape}")
                outs[host] = x.to(self.dtype).clone()
            elif op.kind == "output":
                result = bufs[0][host]
                if result is None:
                    raise RuntimeError("the output did not reach the host")
            else:
                outs, node_w = self._compute(step, bufs)
                if observer is not None:
                    observer(step, outs)
            for d in range(k):
                weights[d] += node_w[d]
            per_node[name] = node_w
            # what each device holds now: its store, its staging buffers, the step's output part
            held = []
            for d in range(k):
                b = sum(t.numel() for t in stores[d].values())
                b += sum(t.numel() for t in staging[d])
                b += outs[d].numel() if outs[d] is not None else 0
                held.append(b * nb)
            held_steps.append(held)
            for d in range(k):
                if outs[d] is not None:
                    stores[d][name] = outs[d]
            for gone in freed_at.get(p, ()):
                for d in range(k):
                    stores[d].pop(gone, None)
            del staging, bufs
        return ExecutionTrace(result, messages, held_steps, weights, per_node)

    def _compute(self, step: Step, bufs: list[list]) -> tuple[list, list[int]]:
        problem = self.problem
        k, host, nb = problem.k, problem.host, problem.dtype_bytes
        op, term, s = step.op, step.term, step.strategy
        extra = kernels.op_extra(op, self.module)
        outs: list[Tensor | None] = [None] * k
        node_w = [0] * k
        for d in range(k):
            region = term.out.parts[d]
            if region is None:
                continue
            shard = kernels.weight_shard(op, s, d, term, self.module, host=host)
            node_w[d] = kernels.shard_elems(shard) * nb
            inputs = [b[d] for b in bufs]
            in_regions = [res.dst.parts[d] for res in step.inputs]
            out = kernels.compute(op, s, d, inputs, in_regions, region, shard, host=host, extra=extra, dtype=self.dtype)
            if self.faults.double_ic_bias == op.name and s == "ic" and d == host and "bias" in shard:
                bias = shard["bias"]
                out = out + bias.reshape((1, -1) + (1,) * (out.dim() - 2))
            want = dense_shape(term.out.shape, region) if term.out.kind != "P" else tuple(term.out.shape)
            if tuple(out.shape) != want:
                raise RuntimeError(
                    f"node {op.name!r} device {d}: kernel output {tuple(out.shape)}, region {region} needs {want}"
                )
            outs[d] = out
        return outs, node_w


# -- verification -------------------------------------------------------------------------------


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

    @property
    def numerics_ok(self) -> bool:
        return self.max_abs_err <= self.tolerance

    def summary(self) -> str:
        state = "PASSED" if self.passed else "FAILED"
        return (
            f"verify {state} ({self.dtype}): max abs err {self.max_abs_err:.3g} (tolerance {self.tolerance:.3g}, "
            f"output scale {self.output_scale:.3g}), messages {'ok' if self.messages_match else 'DIFFER'}, "
            f"weights {'ok' if self.weights_match else 'DIFFER'}, memory {'ok' if self.memory_match else 'DIFFER'}"
        )


#: Default relative tolerance factor per dtype: pass iff max_abs_err <= factor · max(1, output_scale).
DEFAULT_RTOL = {torch.float64: 1e-9, torch.float32: 1e-4}


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
    import torch.fx

    g = problem.graph
    gm = torch.fx.GraphModule(model, copy.deepcopy(g.module.graph))  # the traced graph stays untouched
    env: dict[str, Tensor] = {}

    class _Record(torch.fx.Interpreter):
        def run_node(self, n):
            val = super().run_node(n)
            if isinstance(val, Tensor):
                env[n.name] = val
            return val

    with torch.no_grad():
        _Record(gm).run(x)
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
    :meth:`~iopopt.compiler.Program.messages`), weight bytes per device and per
    node, and activation bytes per device at every step (hence the peaks of
    :func:`~iopopt.cost.memory_profile`) must agree exactly; the executor's
    figures are measured from the tensors it holds and sends.

    Parameters
    ----------
    x : Tensor, optional
        Input; when None a standard normal input is drawn from
        ``torch.Generator().manual_seed(seed)``.
    faults : Faults, optional
        Deliberate faults (tests only).
    """
    from .cost import memory_profile

    if dtype not in DEFAULT_RTOL:
        raise ValueError(f"verify: dtype must be one of {list(DEFAULT_RTOL)}, got {dtype}")
    if rtol is None:
        rtol = DEFAULT_RTOL[dtype]
    program = compile_plan(problem, plan)
    g = problem.graph
    shape = g[g.input_name].out_shape
    if x is None:
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(shape, generator=gen, dtype=torch.float64)
    x = x.to(dtype)
    model = copy.deepcopy(module).to(dtype).eval()
    with torch.no_grad():
        ref = model(x)
        trace = SimulatedExecutor(problem, model, dtype=dtype, faults=faults).run(program, x)
    out = trace.output
    diff: list[str] = []
    if tuple(out.shape) != tuple(ref.shape):
        diff.append(f"output shape {tuple(out.shape)} != reference {tuple(ref.shape)}")
        max_abs = math.inf
    else:
        err = (out - ref).abs()
        max_abs = float(err.max()) if err.numel() else 0.0
        if not math.isfinite(max_abs):
            max_abs = math.inf
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    tol = atol + rtol * max(1.0, scale)
    max_rel = max_abs / scale if scale > 0 else max_abs
    if not max_abs <= tol:
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
    passed = bool(max_abs <= tol and messages_match and weights_match and memory_match)
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
    )
