"""Kernels of the op kinds beyond conv/linear and the classic channel-wise ops, and weights by qualified name.

:func:`compute` is called by :func:`iopopt.exec.kernels.compute` for the kinds
of :data:`KINDS` (both executors share it), with the same contract: device
d's part of the node's output from its own input buffers and weight shard.

* ``gconv`` -- ``host``/``replicate``: the whole grouped conv; ``oc``: the
  device's whole groups from the replicated input (it picks its groups'
  input channels); ``channel``: its groups from its groups' input channels.
  (``rows`` goes through the windowed path of :mod:`~iopopt.exec.kernels`.)
* ``eltwise`` -- the op on the device's parts of its operands (a small
  operand's part broadcasts), its weight shard or a scalar.
* ``mean`` -- the global mean over H and W of its channels.
* ``layernorm`` -- normalises each position over the channels (every device
  part holds all channels).
* ``shuffle`` -- the channel shuffle of its rows.
* ``split`` -- channels ``[start, stop)`` of its input part, as far as it holds them.
* ``upsample`` -- ``rows``: the halo rows placed where they belong in a
  zero tensor of the input's height, resampled, the device's rows kept
  (output rows read only halo rows, so the zeros never reach them).

:func:`named_tensors` reads the tensors a traced node names in
``params["tensors"]`` (qualified names) from the module, reshaped to the
node's canonical weight shape (a Linear applied to channels-last data is a
1x1 conv, so its (out, in) weight becomes (out, in, 1, 1)).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..frontend.reference import lookup
from ..model.graph import OpNode
from ..model.layouts import Region
from .regions import read_region

__all__ = ["KINDS", "compute", "named_tensors"]

#: Kinds whose kernels live here.
KINDS = frozenset({"gconv", "eltwise", "mean", "layernorm", "shuffle", "split", "upsample"})


def named_tensors(op: OpNode, module: nn.Module) -> dict[str, Tensor]:
    """The tensors ``op`` reads, by role, in the node's canonical shapes."""
    out = {}
    for role, fqn in op.params["tensors"].items():
        t = lookup(module, fqn)
        if role in ("weight", "operand") and op.weight_shape is not None and tuple(t.shape) != op.weight_shape:
            t = t.reshape(op.weight_shape)
        out[role] = t
    return out


def compute(
    op: OpNode,
    strategy: str,
    inputs: Sequence[Tensor | None],
    in_regions: Sequence[Region | None],
    out_region: Region,
    shard: Mapping[str, Tensor],
) -> Tensor:
    """This device's part of ``op``'s output (see the module docstring)."""
    x = inputs[0]
    assert x is not None
    kind = op.kind
    if kind == "gconv":
        return _gconv(op, strategy, x, out_region, shard)
    if kind == "eltwise":
        return _eltwise(op, inputs, shard)
    if kind == "mean":
        return x.mean(dim=(2, 3))
    if kind == "layernorm":
        eps = op.params["eps"]
        if x.dim() == 4:
            y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), shard.get("weight"), shard.get("bias"), eps)
            return y.permute(0, 3, 1, 2).contiguous()
        return F.layer_norm(x, (x.shape[1],), shard.get("weight"), shard.get("bias"), eps)
    if kind == "shuffle":
        n, c, h, w = x.shape
        g = op.params["groups"]
        return x.reshape(n, g, c // g, h, w).transpose(1, 2).reshape(n, c, h, w)
    if kind == "split":
        held = in_regions[0]
        assert held is not None
        start = op.params["start"]
        want = Region(tuple((a + start, b + start) for a, b in out_region.ch), held.rows)
        return read_region(x, held, want).contiguous()
    if kind == "upsample":
        return _upsample(op, strategy, x, in_regions[0], out_region)
    raise RuntimeError(f"node {op.name!r}: no kernel for {kind}")  # pragma: no cover


def _gconv(op: OpNode, strategy: str, x: Tensor, out_region: Region, shard: Mapping[str, Tensor]) -> Tensor:
    p = op.params
    groups = p["groups"]
    if strategy in ("oc", "channel"):  # the device's whole groups
        og, ig = op.out_shape[1] // groups, op.in_shapes[0][1] // groups
        mine = sorted({c // og for c in out_region.channel_indices()})
        groups = len(mine)
        if strategy == "oc":  # a replicated input: pick the groups' input channels
            idx = torch.tensor([g * ig + i for g in mine for i in range(ig)], dtype=torch.long)
            x = x.index_select(1, idx)
    return F.conv2d(x, shard["weight"], shard.get("bias"), p["stride"], p["padding"], p["dilation"], groups)


def _eltwise(op: OpNode, inputs: Sequence[Tensor | None], shard: Mapping[str, Tensor]) -> Tensor:
    vals: list = []
    for o in op.params["operands"]:
        vals.append(inputs[o[1]] if o[0] == "in" else shard["operand"] if o[0] == "w" else o[1])
    a, b = vals
    fn = op.params["op"]
    if fn == "add":
        return a + b
    if fn == "sub":
        return a - b
    if fn == "mul":
        return a * b
    if fn == "div":
        return a / b
    raise RuntimeError(f"node {op.name!r}: unknown elementwise op {fn!r}")


def _upsample(op: OpNode, strategy: str, x: Tensor, held: Region | None, out_region: Region) -> Tensor:
    p = op.params
    corners = p["align_corners"] if p["mode"] in ("bilinear", "bicubic") else None

    def run(t: Tensor) -> Tensor:
        if p["scales"] is not None:
            return F.interpolate(t, scale_factor=p["scales"], mode=p["mode"], align_corners=corners)
        return F.interpolate(t, size=p["size"], mode=p["mode"], align_corners=corners)

    if strategy != "rows":
        return run(x)
    assert held is not None and held.rows is not None and out_region.rows is not None
    n, c, _, w = x.shape
    full = x.new_zeros((n, c, op.in_shapes[0][2], w))
    lo, hi = held.rows
    full[:, :, lo:hi] = x
    a, b = out_region.rows
    return run(full)[:, :, a:b].contiguous()
