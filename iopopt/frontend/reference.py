"""A traced graph against its module: the tensors its nodes name, the unsplit value of every node."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["lookup", "reference_values"]


def lookup(module: nn.Module, fqn: str) -> Tensor:
    """The parameter or buffer ``fqn`` (e.g. ``features.1.0.layer_scale``) of ``module``, detached."""
    path, _, attr = fqn.rpartition(".")
    try:
        owner = module.get_submodule(path) if path else module
        t = getattr(owner, attr)
    except AttributeError:
        raise RuntimeError(f"the module has no parameter or buffer {fqn!r}") from None
    if not isinstance(t, Tensor):
        raise RuntimeError(f"{fqn!r} of the module is a {type(t).__name__}, not a tensor")
    return t.detach()


def reference_values(graph, module: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """Node name → the unsplit model's output of that node, in the node's canonical (N, C, H, W) layout.

    Runs the exported graph :func:`iopopt.trace` captured, with ``module``'s
    own parameters and buffers (so in ``module``'s dtype) and input ``x``.
    Empty for a graph that was not traced (built by hand).
    """
    cap = getattr(graph, "capture", None)
    if cap is None:
        return {}
    wanted: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
    for name, (node, perm) in cap.values.items():
        wanted.setdefault(node, []).append((name, perm))
    args = []
    for node in cap.graph_module.graph.nodes:
        if node.op != "placeholder":
            continue
        if node.name == cap.user_input:
            args.append(x)
        elif node.name in cap.weights:
            args.append(lookup(module, cap.weights[node.name]))
        else:
            args.append(cap.constants[node.name])
    out: dict[str, Tensor] = {}

    class _Record(torch.fx.Interpreter):
        def run_node(self, n):
            val = super().run_node(n)
            for name, perm in wanted.get(n.name, ()):
                inverse = sorted(range(len(perm)), key=perm.__getitem__)
                out[name] = val.detach().permute(inverse).clone()  # later in-place ops must not change it
            return val

    with torch.no_grad():
        _Record(cap.graph_module).run(*args)
    return out
