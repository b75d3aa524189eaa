"""Capture: a torch module → an :class:`~iopopt.model.graph.OpGraph`.

:func:`trace` runs ``torch.fx`` symbolic tracing plus shape propagation on a
module and turns every node into an :class:`~iopopt.model.graph.OpNode`; any
operator outside the supported kinds raises :class:`UnsupportedOperator`.
"""

from __future__ import annotations

import contextlib
import io
import math
import operator
import traceback
from pathlib import Path
from typing import Any

import torch
import torch.fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from ..model.graph import CHANNELWISE_KINDS, WINDOWED_KINDS, OpGraph, OpNode
from .shapes import InputShapeError, expected_input, shape_error

__all__ = ["InputShapeError", "UnsupportedOperator", "expected_input", "trace"]


class UnsupportedOperator(ValueError):
    """Raised when :func:`trace` meets an operator iopopt cannot partition."""


_ACTIVATIONS = {
    nn.ReLU: "relu",
    nn.ReLU6: "relu6",
    nn.Sigmoid: "sigmoid",
    nn.Tanh: "tanh",
    nn.GELU: "gelu",
    nn.SiLU: "silu",
    nn.Hardswish: "hardswish",
    nn.Hardsigmoid: "hardsigmoid",
    nn.LeakyReLU: "leaky_relu",
}
_ACTIVATION_FUNCTIONS = {
    torch.relu: "relu",
    torch.nn.functional.relu: "relu",
    torch.nn.functional.relu6: "relu6",
    torch.sigmoid: "sigmoid",
    torch.nn.functional.sigmoid: "sigmoid",
    torch.tanh: "tanh",
    torch.nn.functional.silu: "silu",
    torch.nn.functional.gelu: "gelu",
    torch.nn.functional.hardswish: "hardswish",
}
_ADD_TARGETS = {operator.add, torch.add, operator.iadd}
_CAT_TARGETS = {torch.cat, torch.concat}
_FLATTEN_TARGETS = {torch.flatten}


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _source(node: torch.fx.Node) -> str:
    trace = node.meta.get("stack_trace") or ""
    torch_dir = str(Path(torch.__file__).parent)
    lines = [
        ln.strip()
        for ln in trace.strip().splitlines()
        if ln.strip().startswith("File") and torch_dir not in ln
    ]
    return lines[-1] if lines else ""


def _unsupported(node: torch.fx.Node, why: str) -> UnsupportedOperator:
    where = _source(node)
    return UnsupportedOperator(
        f"unsupported operator at node {node.name!r} (op={node.op}, target={_target_name(node)}): {why}"
        + (f"; source: {where}" if where else "")
    )


def _target_name(node: torch.fx.Node) -> str:
    t = node.target
    if isinstance(t, str):
        return t
    return getattr(t, "__qualname__", None) or getattr(t, "__name__", None) or repr(t)


def _shape(node) -> tuple[int, ...]:
    meta = node.meta.get("tensor_meta")
    if meta is None or not hasattr(meta, "shape"):
        raise _unsupported(node, "its value is not a single tensor")
    return tuple(int(s) for s in meta.shape)


def _window_params(mod_or_kwargs, node) -> dict[str, Any]:
    get = (lambda k, d=None: getattr(mod_or_kwargs, k, d)) if not isinstance(mod_or_kwargs, dict) else mod_or_kwargs.get
    kernel = _pair(get("kernel_size"))
    stride = get("stride") or kernel
    return {
        "kernel": kernel,
        "stride": _pair(stride),
        "padding": _pair(get("padding", 0) or 0),
        "dilation": _pair(get("dilation", 1) or 1),
        "ceil_mode": bool(get("ceil_mode", False)),
    }


def _classify_module(node, mod: nn.Module, in_shape, out_shape) -> tuple[str, dict, tuple | None, tuple | None, int]:
    """Kind, params, weight shape, bias shape and FLOPs of a call_module node."""
    out_elems = math.prod(out_shape)
    if isinstance(mod, nn.Conv2d):
        if mod.padding_mode != "zeros" or isinstance(mod.padding, str):
            raise _unsupported(node, f"Conv2d padding {mod.padding!r}/{mod.padding_mode!r}; use integer zero padding")
        params = {
            "kernel": _pair(mod.kernel_size),
            "stride": _pair(mod.stride),
            "padding": _pair(mod.padding),
            "dilation": _pair(mod.dilation),
            "groups": mod.groups,
        }
        kh, kw = params["kernel"]
        wshape = tuple(mod.weight.shape)
        bshape = tuple(mod.bias.shape) if mod.bias is not None else None
        if mod.groups == 1:
            return "conv", params, wshape, bshape, 2 * out_elems * mod.in_channels * kh * kw
        if mod.groups == mod.in_channels == mod.out_channels:
            return "dwconv", params, wshape, bshape, 2 * out_elems * kh * kw
        raise _unsupported(
            node, f"grouped Conv2d with groups={mod.groups} (only groups=1 or depthwise groups=in=out channels)"
        )
    if isinstance(mod, nn.Linear):
        wshape = tuple(mod.weight.shape)
        bshape = tuple(mod.bias.shape) if mod.bias is not None else None
        if len(in_shape) != 2:
            raise _unsupported(node, f"Linear on a {len(in_shape)}-D input; flatten to (N, features) first")
        return "linear", {}, wshape, bshape, 2 * out_elems * mod.in_features
    for cls, act in _ACTIVATIONS.items():
        if type(mod) is cls:
            params = {"act": act}
            if isinstance(mod, nn.LeakyReLU):
                params["negative_slope"] = mod.negative_slope
            return "act", params, None, None, out_elems
    if isinstance(mod, nn.BatchNorm2d):
        if mod.training:
            raise _unsupported(node, "BatchNorm2d in training mode; call module.eval() first")
        if mod.running_mean is None:
            raise _unsupported(node, "BatchNorm2d without running statistics")
        n = mod.num_features
        wshape = (n,) if mod.affine else None
        return "bn", {"eps": mod.eps}, wshape, ((n,) if mod.affine else None), out_elems
    if isinstance(mod, nn.MaxPool2d):
        p = _window_params(mod, node)
        if mod.return_indices:
            raise _unsupported(node, "MaxPool2d with return_indices=True")
        return "maxpool", p, None, None, out_elems * p["kernel"][0] * p["kernel"][1]
    if isinstance(mod, nn.AvgPool2d):
        p = _window_params(mod, node)
        p["count_include_pad"] = mod.count_include_pad
        if mod.divisor_override is not None:
            raise _unsupported(node, "AvgPool2d with divisor_override")
        return "avgpool", p, None, None, out_elems * p["kernel"][0] * p["kernel"][1]
    if isinstance(mod, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        kind = "adaptive_avgpool" if isinstance(mod, nn.AdaptiveAvgPool2d) else "adaptive_maxpool"
        return kind, {"output_size": tuple(out_shape[2:])}, None, None, math.prod(in_shape)
    if isinstance(mod, (nn.Dropout, nn.Dropout2d, nn.Identity)):
        return "dropout", {}, None, None, 0
    if isinstance(mod, nn.Flatten):
        if mod.start_dim != 1 or mod.end_dim != -1:
            raise _unsupported(node, f"Flatten(start_dim={mod.start_dim}, end_dim={mod.end_dim}); only (1, -1)")
        return "flatten", {}, None, None, 0
    raise _unsupported(node, f"module type {type(mod).__name__}")


def _classify_function(node, in_shapes, out_shape) -> tuple[str, dict, int]:
    t = node.target
    out_elems = math.prod(out_shape)
    if t in _ACTIVATION_FUNCTIONS:
        return "act", {"act": _ACTIVATION_FUNCTIONS[t]}, out_elems
    if t in _ADD_TARGETS:
        return "add", {}, out_elems
    if t in _CAT_TARGETS:
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        if dim not in (1, 1 - len(out_shape)):
            raise _unsupported(node, f"concat along dim {dim}; only channel concat (dim=1) is supported")
        return "cat", {}, 0
    if t in _FLATTEN_TARGETS:
        start = node.kwargs.get("start_dim", node.args[1] if len(node.args) > 1 else 0)
        end = node.kwargs.get("end_dim", node.args[2] if len(node.args) > 2 else -1)
        if start != 1 or end != -1:
            raise _unsupported(node, f"flatten(start_dim={start}, end_dim={end}); only flatten(x, 1)")
        return "flatten", {}, 0
    if t is torch.nn.functional.adaptive_avg_pool2d:
        return "adaptive_avgpool", {"output_size": tuple(out_shape[2:])}, math.prod(in_shapes[0])
    if t is torch.nn.functional.dropout:
        return "dropout", {}, 0
    raise _unsupported(node, "function not supported")


def _classify_method(node, in_shapes, out_shape) -> tuple[str, dict, int]:
    t = node.target
    out_elems = math.prod(out_shape)
    if t in ("relu", "sigmoid", "tanh"):
        return "act", {"act": t}, out_elems
    if t in ("add", "__add__"):
        return "add", {}, out_elems
    if t in ("view", "reshape", "flatten"):
        src = in_shapes[0]
        if len(out_shape) == 2 and len(src) == 4 and out_shape[0] == src[0] and out_shape[1] == math.prod(src[1:]):
            return "flatten", {}, 0
        if tuple(out_shape) == tuple(src):
            return "dropout", {}, 0  # a no-op reshape
        raise _unsupported(node, f"{t} from {src} to {out_shape}; only flattening (N, C, H, W) → (N, C·H·W)")
    if t in ("contiguous",):
        return "dropout", {}, 0
    raise _unsupported(node, "method not supported")


_MODULE_TYPES = (
    nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d, nn.Dropout, nn.Dropout2d, nn.Identity, nn.Flatten, *_ACTIVATIONS,
)
_FUNCTIONS = set(_ACTIVATION_FUNCTIONS) | _ADD_TARGETS | _CAT_TARGETS | _FLATTEN_TARGETS | {
    torch.nn.functional.adaptive_avg_pool2d, torch.nn.functional.dropout,
}
_METHODS = {"relu", "sigmoid", "tanh", "add", "__add__", "view", "reshape", "flatten", "contiguous"}


def _precheck(node: torch.fx.Node, mods: dict) -> None:
    if node.op == "call_module" and type(mods[node.target]) not in _MODULE_TYPES:
        raise _unsupported(node, f"module type {type(mods[node.target]).__name__}")
    if node.op == "call_function" and node.target not in _FUNCTIONS:
        raise _unsupported(node, "function not supported")
    if node.op == "call_method" and node.target not in _METHODS:
        raise _unsupported(node, "method not supported")


class _Tracer(torch.fx.Tracer):
    """fx's tracer, recording each node's Python stack from the model's first ``forward`` on, torch's own
    frames left out. (fx's ``record_stack_traces`` gives the same lines, but its first use imports
    torch._dynamo: most of a second for every process that traces.)"""

    _TORCH_DIR = str(Path(torch.__file__).parent)

    def create_node(self, *args, **kwargs):
        node = super().create_node(*args, **kwargs)
        if not node.stack_trace:
            stack = traceback.extract_stack()[:-1]  # without this frame
            first = next((i for i, f in enumerate(stack) if f.name == "forward"), None)
            if first is not None:
                frames = [f for f in stack[first:] if not f.filename.startswith(self._TORCH_DIR)]
                node.stack_trace = "".join(traceback.StackSummary.from_list(frames).format()).strip()
        return node


def trace(module: nn.Module, input_shape, dtype_bytes: int = 4, name: str = "") -> OpGraph:
    """Trace ``module`` on an input of ``input_shape`` into an :class:`OpGraph`.

    Parameters
    ----------
    module : nn.Module
        Any fx-traceable module, in eval mode (it is switched to eval).
    input_shape : sequence of int
        Full input shape, e.g. ``(1, 3, 224, 224)``.
        A module on the meta device (``zoo.build(name, weights=False)``) is
        traced on a meta input: the same graph, without computing anything.
    dtype_bytes : int
        Bytes per element used for every byte figure (4 = float32).

    Raises
    ------
    UnsupportedOperator
        For any operator outside the supported kinds, naming node, target and
        source line.
    InputShapeError
        When the module cannot run on ``input_shape`` (one line, naming the
        shape its first conv or linear layer expects where it can be told).
    """
    input_shape = tuple(int(s) for s in input_shape)
    if len(input_shape) != 4:
        raise ValueError(f"input_shape must be (N, C, H, W), got {input_shape}")
    module = module.eval()
    # a module without weights (built on the meta device) is traced with a meta input: shapes only, no arithmetic
    device = next((p.device for p in module.parameters() if p.device.type == "meta"), torch.device("cpu"))
    try:
        tracer = _Tracer()  # records each node's stack trace: errors and OpNode.source name the model's line
        graph = tracer.trace(module)
        gm = torch.fx.GraphModule(tracer.root, graph)
    except Exception as exc:  # fx raises many kinds of errors
        raise UnsupportedOperator(f"torch.fx could not trace {type(module).__name__}: {exc}") from exc
    mods = dict(gm.named_modules())
    for node in gm.graph.nodes:  # reject unknown operators before running anything
        _precheck(node, mods)
    try:
        # ShapeProp prints the whole traceback of a failing node itself; the error below says it in one line
        with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
            ShapeProp(gm).propagate(torch.zeros(input_shape, device=device))
    except Exception as exc:
        raise shape_error(module, gm, mods, input_shape, exc) from exc
    nodes: list[OpNode] = []
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if nodes:
                raise _unsupported(node, "more than one graph input")
            nodes.append(OpNode(node.name, "input", "input", "", (), (), _shape(node)))
            continue
        if node.op == "output":
            arg = node.args[0]
            if not isinstance(arg, torch.fx.Node):
                raise _unsupported(node, "the model must return a single tensor")
            shp = _shape(arg)
            nodes.append(OpNode("output", "output", "output", "", (arg.name,), (shp,), shp))
            continue
        if node.op == "get_attr":
            raise _unsupported(node, "tensor constants/parameters used directly in forward")
        # cat keeps its tensors in argument order (all_input_nodes drops repeats)
        tensor_args = list(node.args[0]) if node.target in _CAT_TARGETS else list(node.all_input_nodes)
        out_shape = _shape(node)
        inputs = tuple(a.name for a in tensor_args)
        in_shapes = tuple(_shape(a) for a in tensor_args)
        wshape = bshape = None
        module_name = ""
        if node.op == "call_module":
            module_name = str(node.target)
            kind, params, wshape, bshape, flops = _classify_module(node, mods[node.target], in_shapes[0], out_shape)
            if len(tensor_args) != 1:
                raise _unsupported(node, "module called with more than one tensor argument")
        elif node.op == "call_function":
            kind, params, flops = _classify_function(node, in_shapes, out_shape)
        elif node.op == "call_method":
            kind, params, flops = _classify_method(node, in_shapes, out_shape)
        else:  # pragma: no cover - fx has no other ops
            raise _unsupported(node, "unknown fx op")
        if kind == "add" and (len(tensor_args) != 2 or any(s != out_shape for s in in_shapes)):
            raise _unsupported(node, "add must join two tensors of the same shape (no broadcasting, no scalars)")
        if kind in ("act", "dropout") and len(tensor_args) != 1:
            raise _unsupported(node, "expected one tensor argument")
        if kind in CHANNELWISE_KINDS and kind != "flatten" and len(out_shape) == 4 and out_shape[1] != in_shapes[0][1]:
            raise _unsupported(node, "channel-wise op changes the channel count")
        if (kind in WINDOWED_KINDS or kind == "bn" or kind == "conv") and len(in_shapes[0]) != 4:
            raise _unsupported(node, f"{kind} on a {len(in_shapes[0])}-D tensor; expected (N, C, H, W)")
        welems = (math.prod(wshape) if wshape else 0) + (math.prod(bshape) if bshape else 0)
        if kind == "bn":
            welems = 4 * in_shapes[0][1] if wshape else 2 * in_shapes[0][1]  # scale, shift, mean, var
        nodes.append(
            OpNode(
                name=node.name,
                kind=kind,
                target=_target_name(node) if node.op != "call_module" else type(mods[node.target]).__name__,
                module=module_name,
                inputs=inputs,
                in_shapes=in_shapes,
                out_shape=out_shape,
                weight_shape=wshape,
                bias_shape=bshape,
                flops=int(flops),
                weight_elems=int(welems),
                params=params,
                source=_source(node),
            )
        )
    graph = OpGraph(nodes, dtype_bytes=dtype_bytes, name=name or type(module).__name__)
    graph.module = gm  # type: ignore[attr-defined]
    return graph
