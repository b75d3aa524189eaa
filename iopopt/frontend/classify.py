"""Rules for the computing ATen operators: which OpGraph node each becomes, with its FLOPs and weights.

A rule is ``rule(b, node, a)``: ``b`` the builder of the capture walk
(:class:`iopopt.frontend.capture._Builder`, whose ``emit`` adds a node),
``node`` the fx node of the exported graph and ``a`` its arguments by schema
name with every graph value replaced by what the walk knows of it
(:mod:`iopopt.frontend.values`). It returns the node's value, or raises
:class:`~iopopt.frontend.values.Reject` saying why the node cannot be
represented. Rules are keyed by the operator's name without the in-place
suffix (``relu_`` is ``relu``: the research behind this showed no model
reads a tensor after an in-place op changed it, and the walk rebinds the
mutated input to the result, so later readers see the new value).

Layout rules (permute, view, cat, chunk, ...) live in :mod:`iopopt.frontend.reshape`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .values import Opaque, Reject, T, Weight, pair

__all__ = ["RULES", "first", "plain", "weight", "tensor"]

RULES: dict[str, Callable[..., Any]] = {}


def rule(*names: str):
    def register(fn):
        for n in names:
            RULES[n] = fn
        return fn

    return register


# -- argument checks ------------------------------------------------------------------------


def tensor(v: Any, what: str = "input") -> T:
    """``v`` as an OpGraph tensor in any axis order, or a rejection naming what it is instead."""
    if isinstance(v, T):
        return v
    if isinstance(v, Opaque):
        dims = f"a {len(v.shape)}-D tensor" if v.shape is not None else "a non-tensor value"
        raise Reject(f"its {what} is {dims} made by an unsupported operator")
    if isinstance(v, Weight):
        raise Reject(f"its {what} is a parameter/buffer, not an activation")
    raise Reject(f"its {what} is {type(v).__name__} {v!r}, not a tensor")


def plain(v: Any, ndims: tuple[int, ...] = (4,), what: str = "input") -> T:
    """``v`` as a tensor the model sees in canonical order, with one of ``ndims`` dimensions."""
    t = tensor(v, what)
    if len(t.shape) not in ndims:
        want = " or ".join({2: "(N, features)", 4: "(N, C, H, W)"}[n] for n in ndims)
        raise Reject(f"its {what} is a {len(t.shape)}-D tensor; expected {want}")
    if not t.plain:
        raise Reject(f"its {what} is a permuted view {t.actual_shape} of an (N, C, H, W) tensor")
    return t


def weight(v: Any, role: str, optional: bool = False) -> Weight | None:
    if v is None and optional:
        return None
    if not isinstance(v, Weight):
        raise Reject(f"its {role} is computed in forward, not a parameter or buffer")
    if v.fqn is None:
        raise Reject(f"its {role} is a tensor constant created in forward (not a parameter or buffer)")
    return v


def first(a: dict[str, Any]) -> Any:
    """The first tensor argument (``input`` or ``self``, as the operator's schema names it)."""
    return a["input"] if "input" in a else a["self"]


def _tensors(**kw: Weight | None) -> dict[str, Weight]:
    return {k: w for k, w in kw.items() if w is not None}


# -- heavy operators ----------------------------------------------------------------------------


@rule("conv2d", "convolution", "_convolution")
def _conv(b, node, a):
    x = plain(a["input"])
    w = weight(a["weight"], "weight")
    bias = weight(a.get("bias"), "bias", optional=True)
    if a.get("transposed"):
        raise Reject("transposed convolution (only Conv2d)")
    if len(w.shape) != 4:
        raise Reject(f"a {len(w.shape) - 2}-D convolution (only Conv2d)")
    kernel = (w.shape[2], w.shape[3])
    dilation = pair(a["dilation"])
    padding = a["padding"]
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        else:  # "same": symmetric only when the total padding is even
            total = [dl * (k - 1) for dl, k in zip(dilation, kernel)]
            if any(t % 2 for t in total):
                raise Reject(f"padding='same' with kernel {kernel} needs asymmetric padding")
            padding = (total[0] // 2, total[1] // 2)
    groups = int(a.get("groups") or 1)
    cin, cout = x.shape[1], w.shape[0]
    kind = "conv" if groups == 1 else "dwconv" if groups == cin == cout else "gconv"
    out = tuple(b.out_actual(node))
    params = {
        "kernel": kernel,
        "stride": pair(a["stride"]),
        "padding": pair(padding),
        "dilation": dilation,
        "groups": groups,
    }
    flops = 2 * math.prod(out) * w.shape[1] * kernel[0] * kernel[1]
    return b.emit(
        node, kind, [x], out, flops=flops, params=params, tensors=_tensors(weight=w, bias=bias),
        weight_shape=w.shape, bias_shape=bias.shape if bias else None,
    )


@rule("linear")
def _linear(b, node, a):
    x = tensor(a["input"])
    w = weight(a["weight"], "weight")
    bias = weight(a.get("bias"), "bias", optional=True)
    tensors = _tensors(weight=w, bias=bias)
    bshape = bias.shape if bias else None
    if len(x.shape) == 2 and x.plain:
        out = (x.shape[0], w.shape[0])
        return b.emit(node, "linear", [x], out, flops=2 * math.prod(out) * w.shape[1], tensors=tensors,
                      weight_shape=w.shape, bias_shape=bshape)
    if len(x.shape) == 4 and x.perm[-1] == 1:
        # a Linear over the channels of a channels-last tensor (ConvNeXt) is a 1x1 conv of the (N, C, H, W) one
        n, _, h, wd = x.shape
        out = (n, w.shape[0], h, wd)
        params = {"kernel": (1, 1), "stride": (1, 1), "padding": (0, 0), "dilation": (1, 1), "groups": 1}
        return b.emit(node, "conv", [x], out, perm=x.perm, flops=2 * math.prod(out) * w.shape[1], params=params,
                      tensors=tensors, weight_shape=(w.shape[0], w.shape[1], 1, 1), bias_shape=bshape)
    raise Reject(
        f"Linear on a {len(x.shape)}-D tensor {x.actual_shape}; only (N, features) or the channels of a "
        "channels-last (N, H, W, C) tensor"
    )


# -- normalisation -----------------------------------------------------------------------------


@rule("batch_norm", "_native_batch_norm_legit_no_training", "native_batch_norm", "cudnn_batch_norm")
def _batch_norm(b, node, a):
    if a.get("training"):
        raise Reject("batch norm in training mode; call module.eval() first")
    x = plain(a["input"], (2, 4))
    mean = weight(a["running_mean"], "running mean", optional=True)
    var = weight(a["running_var"], "running variance", optional=True)
    if mean is None or var is None:
        raise Reject("batch norm without running statistics (track_running_stats=False)")
    w = weight(a.get("weight"), "weight", optional=True)
    bias = weight(a.get("bias"), "bias", optional=True)
    out = b.emit(
        node, "bn", [x], x.shape, flops=math.prod(x.shape), params={"eps": float(a["eps"])},
        tensors=_tensors(weight=w, bias=bias, running_mean=mean, running_var=var),
        weight_shape=w.shape if w else None, bias_shape=bias.shape if bias else None,
    )
    if node.target.overloadpacket.__name__ == "batch_norm":
        return out
    return (out, Opaque(None), Opaque(None))  # the batch statistics outputs of the native variants


@rule("layer_norm", "native_layer_norm")
def _layer_norm(b, node, a):
    x = tensor(a["input"])
    shape = list(a["normalized_shape"])
    if len(x.shape) == 4 and x.perm[-1] == 1 and shape == [x.shape[1]]:
        pass  # over the channels of a channels-last tensor: LayerNorm2d, ConvNeXt's permute → LayerNorm
    elif len(x.shape) == 2 and x.plain and shape == [x.shape[1]]:
        pass
    else:
        raise Reject(
            f"layer norm over {shape} of a {len(x.shape)}-D tensor {x.actual_shape}; only over the channels "
            "(of a channels-last (N, H, W, C) tensor, or of (N, features))"
        )
    w = weight(a.get("weight"), "weight", optional=True)
    bias = weight(a.get("bias"), "bias", optional=True)
    out = b.emit(
        node, "layernorm", [x], x.shape, perm=x.perm, flops=math.prod(x.shape), params={"eps": float(a["eps"])},
        tensors=_tensors(weight=w, bias=bias), weight_shape=w.shape if w else None,
        bias_shape=bias.shape if bias else None,
    )
    if node.target.overloadpacket.__name__ == "layer_norm":
        return out
    return (out, Opaque(None), Opaque(None))


# -- elementwise, one tensor ---------------------------------------------------------------------

_ACTS = {
    "relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "gelu": "gelu", "silu": "silu",
    "hardswish": "hardswish", "hardsigmoid": "hardsigmoid", "leaky_relu": "leaky_relu", "hardtanh": "hardtanh",
    "relu6": "relu6", "mish": "mish", "elu": "elu",
}


@rule(*_ACTS)
def _activation(b, node, a):
    x = tensor(first(a))
    name = _ACTS[node.target.overloadpacket.__name__.rstrip("_")]
    params: dict[str, Any] = {"act": name}
    if name == "gelu":
        params["approximate"] = a.get("approximate") or "none"
    elif name == "leaky_relu":
        params["negative_slope"] = float(a["negative_slope"])
    elif name == "hardtanh":
        lo, hi = float(a["min_val"]), float(a["max_val"])
        if (lo, hi) == (0.0, 6.0):
            params = {"act": "relu6"}
        else:
            params.update(min_val=lo, max_val=hi)
    elif name == "elu":
        if float(a.get("scale", 1)) != 1 or float(a.get("input_scale", 1)) != 1:
            raise Reject("elu with scale or input_scale (only alpha)")
        params["alpha"] = float(a["alpha"])
    return b.emit(node, "act", [x], x.shape, perm=x.perm, flops=math.prod(x.shape), params=params)


@rule("dropout", "feature_dropout", "alpha_dropout", "feature_alpha_dropout")
def _dropout(b, node, a):
    if a.get("train"):
        raise Reject("dropout in training mode; call module.eval() first")
    x = tensor(first(a))
    return b.emit(node, "dropout", [x], x.shape, perm=x.perm)


@rule("clone", "contiguous", "alias", "detach", "lift_fresh_copy", "_to_copy", "to")
def _same(b, node, a):
    x = first(a)
    dtype = a.get("dtype")
    if dtype is not None and isinstance(x, (T,)) and str(dtype) != str(node.meta["val"].dtype):
        raise Reject(f"dtype conversion to {dtype}")
    if isinstance(x, Opaque):
        tensor(x)
    return x  # no operator: the value itself (any layout, view or chunk)


# -- pooling and reductions ----------------------------------------------------------------------


def _window(a) -> dict[str, Any]:
    kernel = pair(a["kernel_size"])
    stride = a.get("stride")
    return {
        "kernel": kernel,
        "stride": pair(stride) if stride else kernel,
        "padding": pair(a.get("padding") or 0),
        "dilation": pair(a.get("dilation") or 1),
        "ceil_mode": bool(a.get("ceil_mode")),
    }


@rule("max_pool2d", "max_pool2d_with_indices")
def _max_pool(b, node, a):
    x = plain(first(a))
    p = _window(a)
    out_shape = tuple(b.out_actual(node, 0))
    out = b.emit(node, "maxpool", [x], out_shape, flops=math.prod(out_shape) * p["kernel"][0] * p["kernel"][1],
                 params=p)
    return out if node.target.overloadpacket.__name__ == "max_pool2d" else (out, Opaque(None))


@rule("avg_pool2d")
def _avg_pool(b, node, a):
    x = plain(first(a))
    if a.get("divisor_override") is not None:
        raise Reject("avg_pool2d with divisor_override")
    p = _window(a)
    p["count_include_pad"] = bool(a.get("count_include_pad", True))
    out_shape = tuple(b.out_actual(node))
    return b.emit(node, "avgpool", [x], out_shape, flops=math.prod(out_shape) * p["kernel"][0] * p["kernel"][1],
                  params=p)


@rule("adaptive_avg_pool2d", "_adaptive_avg_pool2d", "adaptive_max_pool2d")
def _adaptive(b, node, a):
    x = plain(first(a))
    out_shape = tuple(b.out_actual(node, 0))
    is_max = node.target.overloadpacket.__name__ == "adaptive_max_pool2d"
    out = b.emit(node, "adaptive_maxpool" if is_max else "adaptive_avgpool", [x], out_shape,
                 flops=math.prod(x.shape), params={"output_size": out_shape[2:]})
    return (out, Opaque(None)) if is_max else out


@rule("mean")
def _mean(b, node, a):
    x = tensor(first(a))
    dims = a.get("dim")
    if dims is None or len(x.shape) != 4:
        raise Reject("a mean over every axis or of a non-(N, C, H, W) tensor (only the global mean over H and W)")
    canon = {x.perm[d % 4] for d in dims}
    if canon != {2, 3} or a.get("dtype") is not None:
        raise Reject(f"a mean over dims {list(dims)}; only the global mean over H and W")
    if a.get("keepdim"):
        if not x.plain:
            raise Reject("a mean with keepdim of a permuted tensor")
        # the same as adaptive average pooling to 1x1
        out = (x.shape[0], x.shape[1], 1, 1)
        return b.emit(node, "adaptive_avgpool", [x], out, flops=math.prod(x.shape), params={"output_size": (1, 1)})
    out = (x.shape[0], x.shape[1])
    return b.emit(node, "mean", [x], out, flops=math.prod(x.shape), params={"dims": (2, 3)})


# -- upsampling ----------------------------------------------------------------------------------

_UPSAMPLE = {
    "upsample_nearest2d": "nearest",
    "_upsample_nearest_exact2d": "nearest-exact",
    "upsample_bilinear2d": "bilinear",
    "upsample_bicubic2d": "bicubic",
}


@rule(*_UPSAMPLE)
def _upsample(b, node, a):
    x = plain(first(a))
    mode = _UPSAMPLE[node.target.overloadpacket.__name__]
    scales = a.get("scale_factors")
    if scales is None and a.get("scales_h") is not None:
        scales = (a["scales_h"], a.get("scales_w") or a["scales_h"])
    out = tuple(b.out_actual(node))
    params = {
        "mode": mode,
        "align_corners": bool(a.get("align_corners") or False),
        "scales": tuple(float(s) for s in scales) if scales else None,
        "size": out[2:],
    }
    return b.emit(node, "upsample", [x], out, flops=math.prod(out), params=params)
