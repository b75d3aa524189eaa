"""Capture: a torch module → an :class:`~iopopt.model.graph.OpGraph`.

:func:`trace` captures the module with torch's own graph capture at the given
input shape -- non-strict :func:`torch.export.export`, which runs the Python
forward on fake tensors of that shape, so shape queries (``x.shape``,
``size()``), asserts and shape-dependent branches specialise away -- and
walks the exported ATen graph, turning each operator into an
:class:`~iopopt.model.graph.OpNode` by the rules of
:mod:`iopopt.frontend.classify`, :mod:`~iopopt.frontend.joins` and
:mod:`~iopopt.frontend.reshape`. Parameters and buffers the forward reads
(weights, batchnorm statistics, ConvNeXt's layer scale) become weights of the
node that reads them, named by their qualified names. Identity-like
operators are no nodes (``contiguous``, ``clone``, ``Identity`` and
stochastic depth in eval leave nothing in the exported graph or are looked
through), except dropout, which keeps its node of kind ``dropout`` as the
fx capture had it, so graphs of the same structure stay the same. Nodes are
named as torch.fx named them (a module call after its path, ``layer1_0_conv1``;
a function after itself, ``add_1``). An operator no rule
accepts does not stop the walk: :class:`UnsupportedOperator` lists every one
of them at once, grouped by operator, with module and source line.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
from torch import nn
from torch.export.graph_signature import InputKind, OutputKind

from ..model.graph import OpGraph, OpNode
from . import joins, reshape  # noqa: F401  (registers their rules)
from .classify import RULES
from .provenance import LEAF_MODULES, Failure, Names, module_of, report, source_of
from .shapes import InputShapeError, expected_input, run_or_explain
from .values import Opaque, Reject, T, Weight, identity, normalize_args

__all__ = ["InputShapeError", "UnsupportedOperator", "Capture", "expected_input", "trace"]


class UnsupportedOperator(ValueError):
    """Raised when :func:`trace` meets operators iopopt cannot partition; ``failures`` lists every one."""

    def __init__(self, message: str, failures: tuple[Failure, ...] = ()):
        super().__init__(message)
        self.failures = tuple(failures)


@dataclass(frozen=True)
class Capture:
    """How a graph was captured: the exported ATen graph and where each OpGraph node's value is in it.

    ``weights`` maps each parameter/buffer placeholder to its qualified name,
    ``constants`` holds the tensor constants export lifted (by placeholder),
    ``user_input`` names the input placeholder, ``values`` maps each OpGraph
    node to the exported node computing it and the permutation of its axes
    (axis i of the exported value is canonical axis ``perm[i]``).
    """

    graph_module: torch.fx.GraphModule
    weights: dict[str, str]
    constants: dict[str, torch.Tensor]
    user_input: str
    values: dict[str, tuple[str, tuple[int, ...]]]


#: Operators with no value the graph needs (shape asserts left by export).
_IGNORED = ("_assert_tensor_metadata", "_assert_scalar", "_assert_async", "sym_constrain_range",
            "sym_constrain_range_for_size", "_functional_assert_async", "_functional_assert_scalar",
            "_set_grad_enabled")


def _op_name(node) -> str:
    t = node.target
    if isinstance(t, torch._ops.OpOverload):
        base = t.overloadpacket.__name__
        return base[:-1] if base.endswith("_") and not base.endswith("__") else base
    return getattr(t, "__name__", str(t))


class _Builder:
    """The OpGraph under construction (rules call :meth:`emit`), the failures, the value map."""

    def __init__(self, root: nn.Module):
        self.root = root
        self.nodes: list[OpNode] = []
        self.names = Names()
        self.failures: list[Failure] = []
        self.values: dict[str, tuple[str, tuple[int, ...]]] = {}

    @staticmethod
    def out_actual(node, index: int | None = None) -> tuple[int, ...]:
        val = node.meta["val"]
        if isinstance(val, (list, tuple)):
            val = val[index or 0]
        return tuple(int(s) for s in val.shape)

    def emit(self, node, kind, inputs, out_shape, *, perm=None, flops=0, params=None, tensors=None,
             weight_shape=None, bias_shape=None, hint=None) -> T:
        path, mod = module_of(self.root, node)
        leaf = bool(path) and mod is not None and isinstance(mod, LEAF_MODULES)
        name = self.names.make(path if leaf else (hint or _op_name(node)))
        params = dict(params or {})
        tensors = tensors or {}
        if tensors:
            params["tensors"] = {role: w.fqn for role, w in tensors.items()}
            buffers = sum(w.numel for w in tensors.values() if w.buffer)
            if buffers:
                params["buffer_elems"] = buffers
        out_shape = tuple(out_shape)
        self.nodes.append(
            OpNode(
                name=name,
                kind=kind,
                target=str(node.target),
                module=path,
                inputs=tuple(t.name for t in inputs),
                in_shapes=tuple(t.shape for t in inputs),
                out_shape=out_shape,
                weight_shape=tuple(weight_shape) if weight_shape else None,
                bias_shape=tuple(bias_shape) if bias_shape else None,
                flops=int(flops),
                weight_elems=sum(w.numel for w in tensors.values()),
                params=params,
                source=source_of(node),
            )
        )
        perm = tuple(perm) if perm is not None else identity(len(out_shape))
        self.values[name] = (node.name, perm)
        return T(name, out_shape, perm)

    def fail(self, node, reason: str) -> None:
        path, mod = module_of(self.root, node)
        kind = type(mod).__name__ if mod is not None else "?"
        self.failures.append(Failure(str(node.target), node.name, reason, path, kind, source_of(node)))

    def opaque_value(self, node):
        """What the walk carries on after a rejected node: a stand-in tensor, so only real blockers are listed."""
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor):
            return Opaque(None)
        shape = tuple(int(s) for s in val.shape)
        if len(shape) in (2, 4):
            return T(f"<unsupported {node.name}>", shape, identity(len(shape)))
        return Opaque(shape)


def _resolve(v, env):
    if isinstance(v, torch.fx.Node):
        return env[v]
    if isinstance(v, (list, tuple)):
        return type(v)(_resolve(x, env) for x in v)
    return v


def _export(module: nn.Module, shape: tuple[int, ...]):
    # on the module's device: a model built on the meta device traces without any weight memory
    device = next((t.device for t in module.parameters()), None) or next(
        (t.device for t in module.buffers()), torch.device("cpu")
    )
    x = torch.zeros(shape, device=device)
    try:
        return torch.export.export(module, (x,), strict=False)
    except Exception as exc:  # export raises many kinds of errors; tell a wrong input shape from a capture limit
        failure = run_or_explain(module, x)
        if failure is not None:
            raise failure from exc
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UnsupportedOperator(
            f"torch.export could not capture {type(module).__name__} at input shape {shape}: "
            f"{type(exc).__name__}: {first}"
        ) from exc


def _call(b: _Builder, node, env):
    target = node.target
    if target is operator.getitem:
        return joins.getitem(b, node, env[node.args[0]], node.args[1])
    if not isinstance(target, torch._ops.OpOverload):
        raise Reject(f"{getattr(target, '__name__', target)} is not an ATen operator")
    rule = RULES.get(_op_name(node))
    if rule is None:
        raise Reject("no partitioning rule for this operator")
    args = {k: _resolve(v, env) for k, v in normalize_args(node).items()}
    return rule(b, node, args)


def trace(module: nn.Module, input_shape, dtype_bytes: int = 4, name: str = "") -> OpGraph:
    """Trace ``module`` on an input of ``input_shape`` into an :class:`OpGraph`.

    Parameters
    ----------
    module : nn.Module
        Any module ``torch.export`` can capture (it is switched to eval mode).
    input_shape : sequence of int
        Full input shape, e.g. ``(1, 3, 224, 224)``. A module on the meta
        device (``zoo.build(name, weights=False)``) is traced on a meta input:
        the same graph, without computing anything.
    dtype_bytes : int
        Bytes per element used for every byte figure (4 = float32).

    Raises
    ------
    UnsupportedOperator
        Listing every operator outside the supported kinds (DESIGN §2),
        grouped by operator, with node, module and source line.
    InputShapeError
        When the module cannot run on ``input_shape`` (one line, naming the
        shape its first conv or linear layer expects where it can be told).
    """
    input_shape = tuple(int(s) for s in input_shape)
    if len(input_shape) != 4:
        raise ValueError(f"input_shape must be (N, C, H, W), got {input_shape}")
    module = module.eval()
    ep = _export(module, input_shape)
    gm = ep.graph_module
    specs = {spec.arg.name: spec for spec in ep.graph_signature.input_specs}
    b = _Builder(module)
    env: dict = {}
    weights: dict[str, str] = {}
    constants: dict[str, torch.Tensor] = {}
    user_input, result = "", None
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            spec = specs[node.name]
            shape = b.out_actual(node) if isinstance(node.meta.get("val"), torch.Tensor) else ()
            if spec.kind == InputKind.USER_INPUT and not user_input:
                user_input = node.name
                op = OpNode(b.names.make(node.name), "input", "input", "", (), (), shape)
                b.nodes.append(op)
                b.values[op.name] = (node.name, identity(len(shape)))
                env[node] = T(op.name, shape, identity(len(shape)))
            elif spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
                weights[node.name] = spec.target
                env[node] = Weight(spec.target, shape, buffer=spec.kind == InputKind.BUFFER)
            elif spec.kind == InputKind.CONSTANT_TENSOR:
                constants[node.name] = ep.constants[spec.target]
                env[node] = Weight(None, shape)
            else:
                b.fail(node, "a second model input (iopopt partitions models of one image tensor)")
                env[node] = b.opaque_value(node)
            continue
        if node.op == "output":
            specs_out = ep.graph_signature.output_specs
            outs = [a for a, s in zip(node.args[0], specs_out) if s.kind == OutputKind.USER_OUTPUT]
            result = env.get(outs[0]) if len(outs) == 1 else None
            if not isinstance(result, T) or not result.plain:
                b.fail(node, "the model must return a single (N, C, H, W) or (N, features) tensor")
            continue
        if node.op != "call_function":
            env[node] = Opaque(None)
            continue
        if _op_name(node) in _IGNORED and not node.users:
            continue
        try:
            value = _call(b, node, env)
        except Reject as exc:
            b.fail(node, str(exc))
            value = b.opaque_value(node)
        env[node] = value
        base = node.target.overloadpacket.__name__ if isinstance(node.target, torch._ops.OpOverload) else ""
        if base.endswith("_") and not base.endswith("__") and node.args and isinstance(node.args[0], torch.fx.Node):
            env[node.args[0]] = value  # in-place: later readers of the mutated tensor see the result
    model_name = name or type(module).__name__
    if b.failures:
        raise UnsupportedOperator(report(model_name, b.failures), tuple(b.failures))
    assert isinstance(result, T)
    out = OpNode(b.names.make("output"), "output", "output", "", (result.name,), (result.shape,), result.shape)
    nodes = _live(b.nodes + [out])
    graph = OpGraph(nodes, dtype_bytes=dtype_bytes, name=model_name)
    values = {n.name: b.values[n.name] for n in nodes if n.name in b.values}
    graph.capture = Capture(gm, weights, constants, user_input, values)  # type: ignore[attr-defined]
    return graph


def _live(nodes: list[OpNode]) -> list[OpNode]:
    """The nodes the output depends on (and the input), in order."""
    keep = {nodes[-1].name}
    for n in reversed(nodes):
        if n.name in keep:
            keep.update(n.inputs)
    return [n for n in nodes if n.name in keep or n.kind == "input"]
