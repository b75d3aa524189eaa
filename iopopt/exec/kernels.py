"""Per-device computation of one operator under one strategy.

Pure functions shared by the executors: :func:`weight_shard` slices a node's
real weights for one device as the plan says, and :func:`compute` computes
that device's part of the node's output from its own input buffers and its
own shard only (no access to other devices' data or to the full module).

A device's *part* of a tensor is a dense tensor holding its region
(:class:`iopopt.layouts.Region`): the region's channel intervals
concatenated in interval order along dim 1, and its row interval along dim 2
(full width). For 2-D tensors (after a flatten) dim 1 is the feature axis.
A partial-sum part (layouts ``P``) is a full-size tensor.

Strategy semantics (see DESIGN.md §3):

* ``host`` / ``replicate`` -- the full computation with the full weights.
* ``oc`` -- conv/linear with the device's output-channel rows of ``W``.
* ``ic`` -- conv/linear with ``W[:, in_channels]`` on the device's input
  channels, a full-size partial output; the bias is added on the host only
  (a host without input channels outputs just the broadcast bias).
* ``rows`` -- the input buffer covers the halo rows of
  :func:`iopopt.layouts.halo_rows`; the missing virtual padding rows are added
  explicitly (zeros, ``-inf`` for max pooling) and the op runs with zero row
  padding and its original width padding. Adaptive pools compute each output
  row from its own input-row window.
* ``channel`` -- channel-wise ops per channel (with per-channel weight
  slices for depthwise conv and batchnorm); ``cat`` concatenates the device's
  input parts in channel order; ``flatten`` maps channels ``[c0, c1)`` of
  ``(N, C, H, W)`` to features ``[c0·H·W, c1·H·W)``.
* ``partial`` -- ``add`` of partial sums: the sum of the partial inputs the
  device holds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..model.graph import WEIGHTED_KINDS, OpNode
from ..model.layouts import Region, base_strategy, halo_rows, placement
from . import ops

__all__ = ["weight_shard", "module_tensors", "compute", "op_extra", "shard_elems", "KernelError"]


class KernelError(RuntimeError):
    """A device cannot compute its part (missing input, bad region, unsupported case)."""


# -- weights ----------------------------------------------------------------------------


def module_tensors(op: OpNode, module: nn.Module) -> dict[str, Tensor]:
    """The weight tensors of ``op`` (detached), by role: those it names by qualified name, else its submodule's."""
    if "tensors" in op.params:
        return ops.named_tensors(op, module)
    if not op.module:
        return {}
    try:
        mod = module.get_submodule(op.module)
    except AttributeError:
        raise KernelError(f"node {op.name!r}: module has no submodule {op.module!r}") from None
    out: dict[str, Tensor] = {}
    if op.kind == "bn":
        if mod.weight is not None:
            out["weight"] = mod.weight.detach()
            out["bias"] = mod.bias.detach()
        out["running_mean"] = mod.running_mean.detach()
        out["running_var"] = mod.running_var.detach()
        return out
    if op.kind in ("conv", "dwconv", "linear"):
        out["weight"] = mod.weight.detach()
        if mod.bias is not None:
            out["bias"] = mod.bias.detach()
    return out


def _take(t: Tensor, dim: int, region: Region) -> Tensor:
    """``region``'s channels of ``t`` along ``dim``: a view for one interval, else a copy (``index_select``)."""
    if len(region.ch) == 1:
        a, b = region.ch[0]
        return t.narrow(dim, a, b - a)
    return t.index_select(dim, torch.tensor(region.channel_indices(), dtype=torch.long))


def weight_shard(
    op: OpNode,
    strategy: str,
    d: int,
    term,
    module: nn.Module,
    host: int = 0,
    tensors: Mapping[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """The weight tensors device ``d`` holds for ``op`` under ``strategy``.

    ``term`` is the node's :class:`iopopt.compiler.NodeTerm` (its output and
    required distributions say which channels ``d`` owns); ``module`` is the
    traced model (or any module with the same qualified submodule names);
    ``host`` is the cluster's host index; ``tensors``, when given, are the
    node's full weight tensors already looked up in ``module`` (callers that
    shard one node for several devices look them up once). Rules (DESIGN.md
    §4): ``oc`` -- rows of ``W`` and the bias slice; ``ic`` -- input-channel
    columns of ``W``, the bias on the host only; ``rows``/``replicate`` --
    everything; ``host`` -- everything on the host only, ``dev<j>`` on device j only; ``channel``
    (depthwise conv, batchnorm) -- per-channel slices. An empty dict means
    ``d`` holds no weights. A shard of one channel interval is a view of the
    module's tensors (never written to), other shards are copies.
    """
    if op.kind not in WEIGHTED_KINDS:
        return {}
    strategy = base_strategy(strategy)  # on a device subset: the split's rule (devices outside hold no part)
    full = module_tensors(op, module) if tensors is None else tensors
    if strategy == "host":
        return dict(full) if d == host else {}
    on = placement(strategy)
    if on is not None:  # the whole op on one device
        return dict(full) if d == on else {}
    if strategy in ("replicate", "rows"):
        return dict(full)
    if strategy == "oc" and op.kind in ("conv", "linear", "gconv"):
        part = term.out.parts[d]
        if part is None:
            return {}
        return {name: _take(t, 0, part) for name, t in full.items()}
    if strategy == "ic" and op.kind in ("conv", "linear"):
        part = term.required[0].parts[d]
        shard: dict[str, Tensor] = {}
        if part is not None:
            shard["weight"] = _take(full["weight"], 1, part)
        if d == host and "bias" in full:
            shard["bias"] = full["bias"]
        return shard
    if strategy == "channel" and op.kind in ("dwconv", "bn", "gconv", "eltwise"):
        part = term.out.parts[d]
        if part is None:
            return {}
        if op.params.get("weight_broadcast"):  # one value for every channel
            return dict(full)
        return {name: _take(t, 0, part) for name, t in full.items()}
    raise KernelError(f"node {op.name!r} ({op.kind}): no weight rule for strategy {strategy!r}")


def shard_elems(shard: Mapping[str, Tensor]) -> int:
    """Elements of a weight shard (what the device stores)."""
    return sum(t.numel() for t in shard.values())


def op_extra(op: OpNode, module: nn.Module) -> dict[str, Any]:
    """Hyper-parameters the traced :class:`OpNode` does not record (e.g. GELU's ``approximate``)."""
    if op.kind == "act" and op.module:
        mod = module.get_submodule(op.module)
        if isinstance(mod, nn.GELU):
            return {"approximate": mod.approximate}
    return {}


# -- elementwise helpers ------------------------------------------------------------------


def _act(x: Tensor, op: OpNode, extra: Mapping[str, Any]) -> Tensor:
    act = op.params["act"]
    if act == "relu":
        return F.relu(x)
    if act == "relu6":
        return F.relu6(x)
    if act == "sigmoid":
        return torch.sigmoid(x)
    if act == "tanh":
        return torch.tanh(x)
    if act == "gelu":
        return F.gelu(x, approximate=op.params.get("approximate") or extra.get("approximate", "none"))
    if act == "hardtanh":
        return F.hardtanh(x, op.params["min_val"], op.params["max_val"])
    if act == "mish":
        return F.mish(x)
    if act == "elu":
        return F.elu(x, op.params.get("alpha", 1.0))
    if act == "silu":
        return F.silu(x)
    if act == "hardswish":
        return F.hardswish(x)
    if act == "hardsigmoid":
        return F.hardsigmoid(x)
    if act == "leaky_relu":
        return F.leaky_relu(x, op.params.get("negative_slope", 0.01))
    raise KernelError(f"node {op.name!r}: unknown activation {act!r}")


def _bn(x: Tensor, op: OpNode, w: Mapping[str, Tensor]) -> Tensor:
    return F.batch_norm(
        x, w["running_mean"], w["running_var"], w.get("weight"), w.get("bias"), False, 0.0, op.params["eps"]
    )


# -- windowed ops -------------------------------------------------------------------------


def _window(op: OpNode, x: Tensor, w: Mapping[str, Tensor], row_padding: bool) -> Tensor:
    """Run a conv / depthwise conv / pool; ``row_padding=False`` drops the height padding."""
    p = op.params
    if op.kind == "adaptive_avgpool":
        return F.adaptive_avg_pool2d(x, p["output_size"])
    if op.kind == "adaptive_maxpool":
        return F.adaptive_max_pool2d(x, p["output_size"])
    ph, pw = p["padding"]
    pad = (ph if row_padding else 0, pw)
    if op.kind in ("conv", "dwconv", "gconv"):
        groups = x.shape[1] if op.kind == "dwconv" else op.params.get("groups", 1)
        return F.conv2d(x, w["weight"], w.get("bias"), p["stride"], pad, p["dilation"], groups)
    if op.kind == "maxpool":
        return F.max_pool2d(x, p["kernel"], p["stride"], pad, p["dilation"], p["ceil_mode"])
    if op.kind == "avgpool":
        return F.avg_pool2d(x, p["kernel"], p["stride"], pad, p["ceil_mode"], p["count_include_pad"])
    raise KernelError(f"node {op.name!r}: {op.kind} is not a windowed op")


def _rows(op: OpNode, x: Tensor | None, in_region: Region | None, out_rows: tuple[int, int], w) -> Tensor:
    """Output rows ``out_rows`` of a windowed op from the halo buffer ``x``."""
    a, b = out_rows
    lo, hi, pad_top, pad_bottom = halo_rows(op, a, b)
    have = (0, 0) if in_region is None else in_region.rows
    if hi > lo and have != (lo, hi):
        raise KernelError(f"node {op.name!r}: rows {a}:{b} need input rows {lo}:{hi}, the buffer has {have}")
    if op.kind in ("adaptive_avgpool", "adaptive_maxpool"):
        h_in, h_out = op.in_shapes[0][2], op.out_shape[2]
        w_out = op.out_shape[3]
        pool = F.adaptive_avg_pool2d if op.kind == "adaptive_avgpool" else F.adaptive_max_pool2d
        rows = []
        for i in range(a, b):
            s = (i * h_in) // h_out
            e = -((-(i + 1) * h_in) // h_out)
            rows.append(pool(x[:, :, s - lo : e - lo], (1, w_out)))
        return torch.cat(rows, 2)
    if pad_top or pad_bottom:
        # the virtual padding rows the clipped window lacks, made explicit
        n, c, _, width = x.shape
        fill = -math.inf if op.kind == "maxpool" else 0.0
        top = torch.full((n, c, pad_top, width), fill, dtype=x.dtype)
        bottom = torch.full((n, c, pad_bottom, width), fill, dtype=x.dtype)
        x = torch.cat([top, x, bottom], 2)
    out = _window(op, x, w, row_padding=False)
    if out.shape[2] != b - a:
        raise KernelError(f"node {op.name!r}: computed {out.shape[2]} rows, expected {b - a}")
    return out


# -- the kernel ------------------------------------------------------------------------------


def _heavy(op: OpNode, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    if op.kind == "linear":
        return F.linear(x, weight, bias)
    p = op.params
    return F.conv2d(x, weight, bias, p["stride"], p["padding"], p["dilation"], 1)


def compute(
    op: OpNode,
    strategy: str,
    d: int,
    inputs: Sequence[Tensor | None],
    in_regions: Sequence[Region | None],
    out_region: Region | None,
    shard: Mapping[str, Tensor],
    host: int = 0,
    extra: Mapping[str, Any] | None = None,
    dtype: torch.dtype | None = None,
    reuse: list | None = None,
) -> Tensor | None:
    """Device ``d``'s part of ``op``'s output (None when ``out_region`` is None).

    ``inputs[i]`` is the device's buffer of input ``i`` holding exactly
    ``in_regions[i]`` (None when the device holds nothing of that input);
    ``shard`` is its :func:`weight_shard`; ``extra`` is :func:`op_extra`;
    ``dtype`` is used only when the device has no input at all (an ``ic``
    host holding only the bias).

    ``reuse``, a list the caller keeps for one node and strategy, remembers
    the calls made with it: a call whose inputs hold the same bits as an
    earlier one's, with the same regions and the same weight tensors, returns
    that call's output instead of computing it again (a kernel is a pure
    function of these). The simulated executor passes one for replicated ops,
    whose copies on the devices are the same computation.
    """
    if out_region is None:
        return None
    strategy = base_strategy(strategy)  # a split on a device subset computes as the split does
    if reuse is None:
        return _compute(op, strategy, d, inputs, in_regions, out_region, shard, extra, dtype)
    for args, out in reuse:
        if _same_call(args, (op, strategy, inputs, in_regions, out_region, shard, extra)):
            return out
    out = _compute(op, strategy, d, inputs, in_regions, out_region, shard, extra, dtype)
    reuse.append(((op, strategy, list(inputs), list(in_regions), out_region, shard, extra), out))
    return out


def _same_call(a: tuple, b: tuple) -> bool:
    """Two calls of :func:`compute` with the same op, regions, weight tensors, settings and input bits."""
    op, strategy, inputs, in_regions, out_region, shard, extra = a
    if op is not b[0] or strategy != b[1] or list(in_regions) != list(b[3]) or out_region != b[4]:
        return False
    if shard.keys() != b[5].keys() or any(shard[n] is not b[5][n] for n in shard) or (extra or {}) != (b[6] or {}):
        return False
    return len(inputs) == len(b[2]) and all(_same_bits(x, y) for x, y in zip(inputs, b[2]))


def _same_bits(a: Tensor | None, b: Tensor | None) -> bool:
    """``a`` and ``b`` hold the same bits (same shape and dtype)."""
    if a is None or b is None:
        return a is b
    if a is b:
        return True
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.data_ptr() == b.data_ptr() and a.stride() == b.stride():
        return True  # the same memory (e.g. one piece delivered whole to two devices)
    # compared as raw bytes (a memcmp-speed scan; torch.equal is several times slower and compares values)
    x = a.detach().contiguous().reshape(-1).view(torch.uint8).numpy()
    y = b.detach().contiguous().reshape(-1).view(torch.uint8).numpy()
    if x.size % 8 == 0:
        x, y = x.view(np.int64), y.view(np.int64)
    return bool(np.array_equal(x, y))


def _compute(op, strategy, d, inputs, in_regions, out_region, shard, extra, dtype) -> Tensor:
    """:func:`compute` itself (``host`` plays no part: the shard carries the ``ic`` bias)."""
    extra = extra or {}
    kind = op.kind
    x = inputs[0] if inputs else None
    if kind in ("input", "output"):
        raise KernelError(f"node {op.name!r}: {kind} nodes are handled by the executor")

    if strategy == "partial":
        held = [t for t in inputs if t is not None]
        if not held:
            raise KernelError(f"node {op.name!r}: device {d} holds no partial input")
        out = held[0].clone()
        for t in held[1:]:
            out = out + t
        return out

    if kind in ("conv", "linear") and strategy == "ic":
        bias = shard.get("bias")
        if x is None:
            if bias is None:
                raise KernelError(f"node {op.name!r}: device {d} has neither input channels nor the bias")
            shape = op.out_shape
            view = (1, -1) + (1,) * (len(shape) - 2)
            return bias.reshape(view).expand(shape).to(dtype or bias.dtype).clone()
        return _heavy(op, x, shard["weight"], bias)

    if x is None and kind not in ("cat",):
        raise KernelError(f"node {op.name!r}: device {d} has no input buffer for strategy {strategy!r}")

    if strategy == "rows" and (kind in ("conv", "gconv") or op.is_windowed):
        return _rows(op, x, in_regions[0], out_region.rows, shard)
    if kind in ops.KINDS:
        return ops.compute(op, strategy, inputs, in_regions, out_region, shard)

    if kind in ("conv", "linear"):  # host, replicate, oc: the shard is the right slice of W
        return _heavy(op, x, shard["weight"], shard.get("bias"))
    if kind in ("dwconv", "maxpool", "avgpool", "adaptive_avgpool", "adaptive_maxpool"):
        return _window(op, x, shard, row_padding=True)
    if kind == "act":
        return _act(x, op, extra)
    if kind == "bn":
        return _bn(x, op, shard)
    if kind == "dropout":
        return x.clone()
    if kind == "flatten":
        # a channel part (N, c, H, W) flattens to features [c0·H·W, c1·H·W) per interval, in order
        return x.reshape(x.shape[0], -1).clone()
    if kind == "add":
        if len(inputs) != 2 or inputs[1] is None:
            raise KernelError(f"node {op.name!r}: device {d} lacks the second addend")
        return inputs[0] + inputs[1]
    if kind == "cat":
        if strategy == "channel":
            # the output holds the union of the input parts; inputs come in channel order
            held = [t for t in inputs if t is not None]
        else:
            held = list(inputs)
            if any(t is None for t in held):
                raise KernelError(f"node {op.name!r}: device {d} lacks a cat input")
        if not held:
            raise KernelError(f"node {op.name!r}: device {d} holds no cat input")
        out = torch.cat(held, 1)
        if out.shape[1] != out_region.n_ch:
            raise KernelError(f"node {op.name!r}: cat of {out.shape[1]} channels, region {out_region} expects more")
        return out
    raise KernelError(f"node {op.name!r}: no kernel for {kind} in strategy {strategy!r}")
