"""Rules for joins: elementwise binary ops with broadcasting, channel ``cat``, ``chunk``/``split``/``slice``.

Elementwise ops (DESIGN §2): two tensors of one shape and layout are an
``add`` (same-shape adds keep their own kind, which alone may add partial
sums) or an ``eltwise`` node; a tensor and a smaller tensor that broadcasts
against it (a squeeze-excitation gate (N, C, 1, 1)) are an ``eltwise`` node
whose small operand follows the big one's layout; a tensor and a parameter
(ConvNeXt's layer scale (C, 1, 1)) or a Python scalar are a one-input
``eltwise`` node, the parameter a weight of the node.

Channel ranges: ``chunk``/``split`` give :class:`~iopopt.frontend.values.Chunk`
values; a ``getitem`` that uses one (or a ``slice``/``narrow`` along the
channels) becomes a ``split`` node holding channels ``[start, stop)``.
"""

from __future__ import annotations

import math

from .classify import plain, rule, tensor, weight
from .values import Chunk, Opaque, Reject, T, Weight

__all__ = ["getitem", "take"]


def _canonical_weight(t: T, w: Weight) -> tuple[int, ...]:
    """The weight's broadcast shape against ``t`` in ``t``'s canonical axes, batch axis dropped.

    Only per-channel (or per-feature) and scalar-like weights are supported:
    the result is ``(C', 1, 1)`` for (N, C, H, W) and ``(C',)`` for (N, F), C' in {1, C}.
    """
    rank = len(t.shape)
    if len(w.shape) > rank:
        raise Reject(f"a {len(w.shape)}-D parameter operand broadcast against a {rank}-D tensor")
    padded = (1,) * (rank - len(w.shape)) + tuple(w.shape)
    canon = [1] * rank
    for i, size in enumerate(padded):
        canon[t.perm[i]] = size
    if canon[0] != 1 or any(s != 1 for s in canon[2:]) or canon[1] not in (1, t.shape[1]):
        raise Reject(f"a parameter operand of shape {tuple(w.shape)}; only one value per channel or a scalar")
    return (canon[1],) + (1,) * (rank - 2)


@rule("add", "sub", "mul", "div")
def _binary(b, node, a):
    op = node.target.overloadpacket.__name__.rstrip("_")
    x, y = a["self"], a["other"]
    if a.get("alpha", 1) != 1:
        raise Reject(f"{op} with alpha={a['alpha']}")
    if a.get("rounding_mode") is not None:
        raise Reject(f"division with rounding_mode={a['rounding_mode']!r}")
    for v in (x, y):
        if isinstance(v, Opaque):
            tensor(v, "operand")
    if isinstance(x, T) and isinstance(y, T):
        return _two_tensors(b, node, op, x, y)
    first = isinstance(x, T)
    t, other = (x, y) if first else (y, x)
    if not isinstance(t, T):
        raise Reject(f"{op} without an activation operand")
    mine = ("in", 0)
    params = {"op": op, "big": 0}
    if isinstance(other, bool) or not isinstance(other, (int, float, Weight)):
        raise Reject(f"{op} with a {type(other).__name__} operand")
    if isinstance(other, Weight):
        w = weight(other, "operand")
        canon = _canonical_weight(t, w)
        theirs: tuple = ("w",)
        params["weight_broadcast"] = canon[0] == 1
        kw = {"tensors": {"operand": w}, "weight_shape": canon}
    else:
        theirs = ("s", float(other))
        kw = {}
    params["operands"] = (mine, theirs) if first else (theirs, mine)
    return b.emit(node, "eltwise", [t], t.shape, perm=t.perm, flops=math.prod(t.shape), params=params,
                  hint=op, **kw)


def _two_tensors(b, node, op: str, x: T, y: T):
    operands = (("in", 0), ("in", 1))
    if x.shape == y.shape and x.perm == y.perm:
        if op == "add":
            return b.emit(node, "add", [x, y], x.shape, perm=x.perm, flops=math.prod(x.shape))
        return b.emit(node, "eltwise", [x, y], x.shape, perm=x.perm, flops=math.prod(x.shape),
                      params={"op": op, "operands": operands, "big": 0}, hint=op)
    for v in (x, y):
        plain(v, (2, 4), "operand")
    out = tuple(b.out_actual(node))
    big = 0 if x.shape == out else 1 if y.shape == out else None
    if big is None:
        raise Reject(f"{op} of {x.shape} and {y.shape} broadcasts both operands")
    small = (y, x)[big].shape
    ok = len(small) == len(out) and small[0] == out[0] and all(s in (1, o) for s, o in zip(small[1:], out[1:]))
    if not ok:
        raise Reject(f"{op} of {x.shape} and {y.shape}: the smaller operand must keep the batch axis and "
                     "have each other axis full or 1")
    return b.emit(node, "eltwise", [x, y], out, flops=math.prod(out),
                  params={"op": op, "operands": operands, "big": big}, hint=op)


@rule("cat", "concat", "concatenate")
def _cat(b, node, a):
    ts = [plain(v, (2, 4), "operand") for v in a["tensors"]]
    rank = len(ts[0].shape)
    if any(len(t.shape) != rank for t in ts) or a["dim"] % rank != 1:
        raise Reject(f"concat along dim {a['dim']}; only along the channels (dim 1)")
    return b.emit(node, "cat", ts, tuple(b.out_actual(node)))


def take(b, node, chunk: Chunk) -> T:
    """The node of ``chunk``'s channels (the base itself when it covers them all)."""
    base = chunk.base
    if chunk.start == 0 and chunk.stop == base.shape[1]:
        return base
    out = (base.shape[0], chunk.stop - chunk.start) + base.shape[2:]
    return b.emit(node, "split", [base], out, params={"start": chunk.start, "stop": chunk.stop}, hint="split")


@rule("chunk", "split", "split_with_sizes", "unsafe_split", "unsafe_split_with_sizes", "unsafe_chunk")
def _chunks(b, node, a):
    x = plain(a["self"], (2, 4))
    if a["dim"] % len(x.shape) != 1:
        raise Reject(f"split along dim {a['dim']}; only along the channels (dim 1)")
    out, start = [], 0
    for v in node.meta["val"]:
        out.append(Chunk(x, start, start + v.shape[1]))
        start += v.shape[1]
    return out


def _range(t: T, dim: int, start, stop):
    size = t.actual_shape[dim]
    start = 0 if start is None else start + size if start < 0 else start
    stop = size if stop is None else stop + size if stop < 0 else min(stop, size)
    return max(0, min(start, size)), max(stop, start)


@rule("slice", "narrow")
def _slice(b, node, a):
    t = tensor(a["self"])
    dim = a["dim"] % len(t.shape)
    if "length" in a:
        start, stop = _range(t, dim, a["start"], a["start"] + a["length"])
    else:
        if (a.get("step") or 1) != 1:
            raise Reject(f"a strided slice (step {a['step']})")
        start, stop = _range(t, dim, a["start"], a["end"])
    if start == 0 and stop == t.actual_shape[dim]:
        return t
    t = plain(t, (2, 4))
    if dim != 1:
        raise Reject(f"a slice along dim {dim}; only channel ranges (dim 1)")
    return take(b, node, Chunk(t, start, stop))


def getitem(b, node, seq, index: int):
    """``seq[index]`` of a multi-output operator (a channel chunk becomes a ``split`` node)."""
    if isinstance(seq, (Opaque, T)):
        return b.opaque_value(node)  # an element of a rejected operator's output: already reported
    v = seq[index]
    if isinstance(v, Chunk):
        return take(b, node, v)
    if isinstance(v, Opaque) and v.shape is None:
        if not node.users:  # export keeps unused outputs of multi-output ops (max-pool indices)
            return v
        raise Reject(f"uses output {index} (indices or batch statistics) of a multi-output operator")
    return v
