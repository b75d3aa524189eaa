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

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..compile.program import Program, Step
from ..compile.reshard import Resharding
from ..model.layouts import Region
from . import kernels
from .regions import dense_shape, read_region, region_index, write_region

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
