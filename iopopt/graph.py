"""Operator graphs traced from torch modules.

:func:`trace` runs ``torch.fx`` symbolic tracing plus shape propagation on a
module and turns every node into an :class:`OpNode` that records what the cost
model and the executors need: the op kind, its shapes, FLOPs, weight and output
bytes. The result is an :class:`OpGraph`, a thin wrapper over a networkx
``DiGraph`` with a fixed topological order.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import torch
import torch.fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

__all__ = [
    "OpNode",
    "OpGraph",
    "UnsupportedOperator",
    "trace",
    "HEAVY_KINDS",
    "CHANNELWISE_KINDS",
    "WINDOWED_KINDS",
    "JOIN_KINDS",
]

HEAVY_KINDS = frozenset({"conv", "linear"})
#: Channel-wise kinds: output channel c depends on input channel c only.
CHANNELWISE_KINDS = frozenset(
    {"act", "bn", "maxpool", "avgpool", "adaptive_avgpool", "adaptive_maxpool", "dropout", "dwconv", "flatten"}
)
#: Channel-wise kinds whose output rows depend on a window of input rows.
WINDOWED_KINDS = frozenset({"maxpool", "avgpool", "adaptive_avgpool", "adaptive_maxpool", "dwconv"})
JOIN_KINDS = frozenset({"add", "cat"})

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


class UnsupportedOperator(ValueError):
    """Raised when :func:`trace` meets an operator iopopt cannot partition."""


@dataclass(frozen=True)
class OpNode:
    """One operator of a traced graph.

    Shapes are full tensor shapes including the batch dimension. ``params``
    holds the operator's hyper-parameters (``kernel``, ``stride``,
    ``padding``, ``dilation`` as (h, w) pairs for convs and pools, ``act`` for
    activations, ``eps`` for batchnorm, ``output_size`` for adaptive pools).
    ``module`` is the qualified name of the submodule for ``call_module``
    nodes (empty otherwise) and ``target`` a readable name of the callable.
    """

    name: str
    kind: str
    target: str
    module: str
    inputs: tuple[str, ...]
    in_shapes: tuple[tuple[int, ...], ...]
    out_shape: tuple[int, ...]
    weight_shape: tuple[int, ...] | None = None
    bias_shape: tuple[int, ...] | None = None
    flops: int = 0
    weight_elems: int = 0
    params: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    source: str = ""

    @property
    def is_channelwise(self) -> bool:
        return self.kind in CHANNELWISE_KINDS

    @property
    def is_windowed(self) -> bool:
        return self.kind in WINDOWED_KINDS


class OpGraph:
    """A traced operator graph with a fixed topological order.

    Attributes
    ----------
    g : networkx.DiGraph
        Nodes are op names with attribute ``op`` (:class:`OpNode`); an edge
        u→v carries ``index``, the position(s) of u among v's inputs.
    order : tuple of str
        Topological order used by execution and the cost model (the order of
        the fx graph, which is a valid topological order).
    dtype_bytes : int
        Bytes per element of activations and weights (4 for float32).
    """

    def __init__(self, nodes: list[OpNode], dtype_bytes: int = 4, name: str = ""):
        self.name = name
        self.dtype_bytes = dtype_bytes
        self.g = nx.DiGraph()
        self._nodes: dict[str, OpNode] = {}
        for op in nodes:
            if op.name in self._nodes:
                raise ValueError(f"duplicate node name {op.name!r}")
            self._nodes[op.name] = op
            self.g.add_node(op.name, op=op)
            for i, src in enumerate(op.inputs):
                if src not in self._nodes:
                    raise ValueError(f"node {op.name!r} uses {src!r} before it is defined")
                self.g.add_edge(src, op.name)
        self.order: tuple[str, ...] = tuple(op.name for op in nodes)
        self.position = {n: i for i, n in enumerate(self.order)}
        inputs = [op.name for op in nodes if op.kind == "input"]
        outputs = [op.name for op in nodes if op.kind == "output"]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(
                f"an OpGraph needs exactly one input and one output node, got inputs={inputs} outputs={outputs}"
            )
        self.input_name, self.output_name = inputs[0], outputs[0]
        self._consumers: dict[str, list[tuple[str, int]]] = {n: [] for n in self.order}
        for op in nodes:
            for i, src in enumerate(op.inputs):
                self._consumers[src].append((op.name, i))

    # -- access -----------------------------------------------------------------
    def __getitem__(self, name: str) -> OpNode:
        try:
            return self._nodes[name]
        except KeyError:
            raise KeyError(f"no node {name!r} in graph {self.name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._nodes

    def __iter__(self):
        return (self._nodes[n] for n in self.order)

    def __len__(self) -> int:
        return len(self.order)

    def consumers(self, name: str) -> list[tuple[str, int]]:
        """(consumer, input index) pairs of ``name``'s output, in topological order."""
        return self._consumers[name]

    def edges(self) -> list[tuple[str, str, int]]:
        """Every (producer, consumer, input index), consumers in topological order."""
        return [(src, op.name, i) for op in self for i, src in enumerate(op.inputs)]

    def last_use(self, name: str) -> int:
        """Position of the last consumer of ``name`` (its own position if none)."""
        cons = self._consumers[name]
        return max((self.position[c] for c, _ in cons), default=self.position[name])

    @property
    def total_flops(self) -> int:
        return sum(op.flops for op in self)

    @property
    def total_weight_elems(self) -> int:
        return sum(op.weight_elems for op in self)

    def parameter_count(self) -> int:
        """Learnable parameters (as ``sum(p.numel())``; batchnorm running statistics excluded)."""
        total = 0
        for op in self:
            total += op.weight_elems - (2 * op.in_shapes[0][1] if op.kind == "bn" else 0)
        return total

    def macs(self, kinds=("conv", "linear", "dwconv")) -> int:
        """Multiply-accumulates of the given kinds (FLOPs / 2)."""
        return sum(op.flops // 2 for op in self if op.kind in kinds)

    def is_chain(self) -> bool:
        """True when every node has at most one consumer and one input."""
        return all(len(self._consumers[n]) <= 1 and len(self[n].inputs) <= 1 for n in self.order)

    def summary(self) -> str:
        lines = [f"{'node':<28}{'kind':<18}{'out shape':<24}{'MFLOPs':>10}"]
        for op in self:
            lines.append(f"{op.name:<28}{op.kind:<18}{str(op.out_shape):<24}{op.flops / 1e6:>10.2f}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"OpGraph({self.name!r}, {len(self)} nodes, {self.total_flops / 1e9:.3f} GFLOPs)"


# -- tracing --------------------------------------------------------------------


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _source(node: torch.fx.Node) -> str:
    trace = node.meta.get("stack_trace") or ""
    torch_dir = str(__import__("pathlib").Path(torch.__file__).parent)
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


def trace(module: nn.Module, input_shape, dtype_bytes: int = 4, name: str = "") -> OpGraph:
    """Trace ``module`` on an input of ``input_shape`` into an :class:`OpGraph`.

    Parameters
    ----------
    module : nn.Module
        Any fx-traceable module, in eval mode (it is switched to eval).
    input_shape : sequence of int
        Full input shape, e.g. ``(1, 3, 224, 224)``.
    dtype_bytes : int
        Bytes per element used for every byte figure (4 = float32).

    Raises
    ------
    UnsupportedOperator
        For any operator outside the supported kinds, naming node, target and
        source line.
    """
    input_shape = tuple(int(s) for s in input_shape)
    if len(input_shape) != 4:
        raise ValueError(f"input_shape must be (N, C, H, W), got {input_shape}")
    module = module.eval()
    try:
        tracer = torch.fx.Tracer()
        tracer.record_stack_traces = True  # lets errors name the model's source line
        graph = tracer.trace(module)
        gm = torch.fx.GraphModule(tracer.root, graph)
    except Exception as exc:  # fx raises many kinds of errors
        raise UnsupportedOperator(f"torch.fx could not trace {type(module).__name__}: {exc}") from exc
    mods = dict(gm.named_modules())
    for node in gm.graph.nodes:  # reject unknown operators before running anything
        _precheck(node, mods)
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(torch.zeros(input_shape))
    except Exception as exc:
        raise ValueError(f"{type(module).__name__} failed on an input of shape {input_shape}: {exc}") from exc
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
        if kind == "add":
            if len(tensor_args) != 2 or any(s != out_shape for s in in_shapes):
                raise _unsupported(node, "add must join two tensors of the same shape (no broadcasting, no scalars)")
        if kind in ("act", "dropout") and len(tensor_args) != 1:
            raise _unsupported(node, "expected one tensor argument")
        if kind in CHANNELWISE_KINDS and kind != "flatten" and len(out_shape) == 4 and out_shape[1] != in_shapes[0][1]:
            raise _unsupported(node, "channel-wise op changes the channel count")
        if kind in WINDOWED_KINDS or kind == "bn" or kind == "conv":
            if len(in_shapes[0]) != 4:
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
