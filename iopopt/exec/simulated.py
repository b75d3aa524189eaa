"""The simulated executor: run a compiled Program with torch, one process, k isolated devices.

:class:`SimulatedExecutor` keeps one store (a dict) per device and runs the
Program's steps in order. For every input of a step the devices' buffers are
built by the assembler both executors share (:func:`iopopt.exec.assemble.assemble`)
exactly as the step's :class:`~iopopt.compile.reshard.Resharding` says -- local
slicing of each device's own stored part plus the pieces its transport copies
out of other devices' stores, phase by phase -- then each device computes its
output part with :mod:`iopopt.exec.kernels` from its own buffers and its own
weight shard, and stores it. A device reads only its own store: a missing or
wrong message shows up as a wrong number.

While it runs, the executor measures what it actually does: every message
(sender, receiver, element count × the problem's bytes per element), the bytes
each device holds at every step (stored parts, the staging buffers the
assembler allocated, current output) and the bytes of the weight shards it
built. :func:`~iopopt.exec.verify.verify` compares those measurements with the
cost model (:func:`iopopt.cost.memory.memory_profile`,
:meth:`iopopt.compile.program.Program.messages`) and the output with the
unsplit forward of the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..compile.program import Program, Step
from ..compile.reshard import Resharding
from . import kernels
from .assemble import assemble
from .regions import dense_shape

__all__ = ["Faults", "MessageRecord", "ExecutionTrace", "SimulatedExecutor"]


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


class _InProcess:
    """The simulated transport: pieces handed over from the sender's store, every message recorded.

    One per step: ``drop`` (``Faults.drop_message``) counts the step's
    transfers in program order over all its inputs and phases.
    """

    def __init__(self, node: str, drop: tuple[str, int] | None, dtype_bytes: int, messages: list):
        self.node = node
        self.drop = drop[1] if drop is not None and drop[0] == node else None
        self.dtype_bytes = dtype_bytes
        self.messages = messages
        self.count = 0

    def exchange(self, phase, transfers, read) -> dict[int, Tensor | None]:
        got: dict[int, Tensor | None] = {}
        for j, t in enumerate(transfers):
            i, self.count = self.count, self.count + 1
            if i == self.drop:
                got[j] = None
                continue
            piece = read(t)  # a view of the sender's part: the receiver copies it into its buffer, or keeps it whole
            self.messages.append(MessageRecord(self.node, t.src, t.dst, piece.numel() * self.dtype_bytes))
            got[j] = piece
        return got


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

    Notes
    -----
    Under ``replicate`` every device computes the whole op from its own copy
    of the input; the kernel is given ``reuse`` (:func:`iopopt.exec.kernels.compute`),
    so a device whose input buffers are bit-for-bit equal to those of a device
    already computed (with the same weight tensors) gets that output instead
    of the same computation run again, and a device whose buffers differ in
    any element (a lost or wrong message) is computed on its own. Stored parts
    and buffers are never written in place, so devices may share such an
    output tensor.
    """

    def __init__(self, problem, module: nn.Module, dtype: torch.dtype = torch.float64, faults: Faults | None = None):
        self.problem = problem
        self.module = module
        self.dtype = dtype
        self.faults = faults or Faults()

    def _assemble(self, res: Resharding, name: str, src_name: str, stores, staging, transport) -> list:
        """Per device, the buffer of ``res.dst`` for the consumer (None where it needs nothing)."""
        k = self.problem.k
        devices = range(k)
        stored = {d: stores[d].get(src_name) for d in devices}
        got = assemble(res, devices, stored, transport, self.dtype, name, src_name)
        for d, bufs in got.allocated.items():
            staging[d].extend(bufs)
        return [got.buffers[d] for d in devices]

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
        stored_elems = [0] * k  # elements of the tensors in each store, kept as they come and go
        freed_at = g.free_schedule(keep=(self.faults.leak,))
        messages: list[MessageRecord] = []
        held_steps: list[list[int]] = []
        weights = [0] * k
        per_node: dict[str, list[int]] = {}
        result = None
        for p, step in enumerate(program.steps):
            op, name = step.op, step.op.name
            staging: list[list[Tensor]] = [[] for _ in range(k)]
            transport = _InProcess(name, self.faults.drop_message, nb, messages)
            bufs = [
                self._assemble(res, name, src, stores, staging, transport) for res, src in zip(step.inputs, op.inputs)
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
                b = stored_elems[d] + sum(t.numel() for t in staging[d])
                b += outs[d].numel() if outs[d] is not None else 0
                held.append(b * nb)
            held_steps.append(held)
            for d in range(k):
                if outs[d] is not None:
                    stores[d][name] = outs[d]
                    stored_elems[d] += outs[d].numel()
            for gone in freed_at.get(p, ()):
                for d in range(k):
                    t = stores[d].pop(gone, None)
                    if t is not None:
                        stored_elems[d] -= t.numel()
            del staging, bufs
        return ExecutionTrace(result, messages, held_steps, weights, per_node)

    def _compute(self, step: Step, bufs: list[list]) -> tuple[list, list[int]]:
        problem = self.problem
        k, host, nb = problem.k, problem.host, problem.dtype_bytes
        op, term, s = step.op, step.term, step.strategy
        extra = kernels.op_extra(op, self.module)
        tensors = kernels.module_tensors(op, self.module) if op.kind in _WEIGHTED else None  # looked up once
        outs: list[Tensor | None] = [None] * k
        node_w = [0] * k
        reuse: list | None = [] if s.partition("@")[0] == "replicate" else None  # replicated copies computed once
        for d in range(k):
            region = term.out.parts[d]
            if region is None:
                continue
            shard = kernels.weight_shard(op, s, d, term, self.module, host=host, tensors=tensors)
            node_w[d] = kernels.shard_elems(shard) * nb
            inputs = [b[d] for b in bufs]
            in_regions = [res.dst.parts[d] for res in step.inputs]
            out = kernels.compute(
                op, s, d, inputs, in_regions, region, shard, host=host, extra=extra, dtype=self.dtype, reuse=reuse
            )
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


#: Op kinds with weight tensors.
_WEIGHTED = ("conv", "dwconv", "linear", "bn")
