"""Rules for axis relabelling and reshaping: permute, transpose, view/reshape/flatten/squeeze.

A permute is not an operator: the walk keeps the tensor and records which
canonical axis each of the model's axes is (:class:`~iopopt.frontend.values.T`),
so ConvNeXt's ``permute → LayerNorm → Linear → GELU → Linear → permute``
becomes a layer norm over channels, two 1x1 convolutions and an activation.
Reshapes that iopopt can partition: flattening (N, C, H, W) to (N, C·H·W),
squeezing (N, C, 1, 1) to (N, C), and the channel shuffle ``view`` to
(N, g, C/g, H, W) → ``transpose(1, 2)`` → back to (N, C, H, W), which
becomes one ``shuffle`` node.
"""

from __future__ import annotations

from .classify import rule, tensor
from .values import Grouped, Reject

__all__: list[str] = []


@rule("permute")
def _permute(b, node, a):
    x = a["self"]
    dims = [d % len(a["dims"]) for d in a["dims"]]
    if isinstance(x, Grouped):
        if not x.swapped and dims == [0, 2, 1, 3, 4]:
            return Grouped(x.base, x.groups, True)
        raise Reject(f"permute {dims} of a grouped channel view; only the channel shuffle transpose(1, 2)")
    t = tensor(x)
    if len(t.shape) != 4:
        raise Reject(f"permute of a {len(t.shape)}-D tensor; only of (N, C, H, W) tensors")
    if t.perm[dims[0]] != 0:
        raise Reject(f"permute {dims} moves the batch axis")
    return t.with_perm(tuple(t.perm[d] for d in dims))


@rule("transpose")
def _transpose(b, node, a):
    x = a["self"]
    if isinstance(x, Grouped):
        if not x.swapped and {a["dim0"] % 5, a["dim1"] % 5} == {1, 2}:
            return Grouped(x.base, x.groups, True)
        raise Reject("transpose of a grouped channel view; only the channel shuffle transpose(1, 2)")
    t = tensor(x)
    if len(t.shape) != 4:
        raise Reject(f"transpose of a {len(t.shape)}-D tensor; only of (N, C, H, W) tensors")
    dims = list(range(4))
    i, j = a["dim0"] % 4, a["dim1"] % 4
    dims[i], dims[j] = dims[j], dims[i]
    if t.perm[dims[0]] != 0:
        raise Reject(f"transpose({i}, {j}) moves the batch axis")
    return t.with_perm(tuple(t.perm[d] for d in dims))


@rule("view", "reshape", "_unsafe_view", "flatten", "squeeze", "view_as", "reshape_as")
def _view(b, node, a):
    x = a.get("self", a.get("input"))
    target = tuple(b.out_actual(node))
    if isinstance(x, Grouped):
        if x.swapped and target == x.base.shape:
            base = x.base
            return b.emit(node, "shuffle", [base], base.shape, params={"groups": x.groups}, hint="shuffle")
        raise Reject(f"reshape of a grouped channel view to {target}; only the channel shuffle")
    t = tensor(x)
    if target == t.actual_shape:
        return t
    if not t.plain:
        raise Reject(f"reshape of a permuted view {t.actual_shape} to {target}")
    if len(t.shape) == 4:
        n, c, h, w = t.shape
        if target == (n, c * h * w):
            return b.emit(node, "flatten", [t], target, hint="flatten")
        if len(target) == 5 and target[0] == n and target[1] * target[2] == c and target[3:] == (h, w):
            return Grouped(t, target[1])
    raise Reject(
        f"reshape from {t.actual_shape} to {target}; only (N, C, H, W) → (N, C·H·W) and the channel shuffle"
    )
