"""Fused spatial stacks: a chain of row-split ops whose halos are recomputed instead of exchanged.

DESIGN §3 (DeepThings' fused tile partitioning, AOFL, EdgeLD). Every op of a
stack but its last is in ``rows_fused<d>``, where ``d`` counts the ops after
it up to the stack's end; the last op is in ``rows``. The end op's rows are
its canonical row split; walking the stack backwards, each op computes the
input rows its successor's window reads (:func:`~iopopt.model.layouts.halo_rows`),
so no message travels inside the stack and the first op receives the rows the
whole stack's receptive field needs. The depth in the name makes every
(node, strategy) fix its own output rows from the graph and the cluster alone,
so the total cost stays a sum of node and edge terms and the exact solvers
need nothing more than the edge rule of :func:`~iopopt.model.layouts.edge_feasible`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from .graph import OpGraph, OpNode
from .layouts import Strategy, edge_feasible, fused_depth, fused_name, halo_rows, strategies_for

__all__ = [
    "fusable",
    "fused_chain",
    "fused_strategies",
    "fused_rows",
    "stack_rows",
    "breaks_stack",
    "stacks",
    "fused_depth",
]

Rows = tuple[tuple[int, int] | None, ...]


def fusable(op: OpNode) -> bool:
    """Whether ``op`` may be part of a fused stack: one 4-D input and a ``rows`` strategy."""
    return len(op.inputs) == 1 and len(op.in_shapes[0]) == 4 and Strategy.ROWS in strategies_for(op)


def fused_chain(graph: OpGraph, name: str, depth: int) -> tuple[OpNode, ...] | None:
    """The ``depth`` ops after ``name`` in a stack starting there, or None when the graph does not allow one.

    ``name`` and every op before the last must be fusable with exactly one
    consumer (their output goes nowhere else); the ops after it must be fusable.
    """
    if depth < 1:
        return None
    chain = []
    cur = graph[name]
    for _ in range(depth):
        cons = graph.consumers(cur.name)
        if not fusable(cur) or len(cons) != 1:
            return None
        cur = graph[cons[0][0]]
        if not fusable(cur):
            return None
        chain.append(cur)
    return tuple(chain)


def fused_strategies(graph: OpGraph, name: str, max_depth: int) -> tuple[str, ...]:
    """``rows_fused1`` .. ``rows_fused<D>`` for ``name``, D the longest stack after it up to ``max_depth``."""
    out = []
    for d in range(1, max_depth + 1):
        if fused_chain(graph, name, d) is None:
            break
        out.append(fused_name(d))
    return tuple(out)


def fused_rows(graph: OpGraph, name: str, strategy: str, end_rows: Sequence[tuple[int, int] | None]) -> Rows:
    """Per-device output rows of ``name`` in ``strategy`` (``rows_fused<d>``), given its stack's end rows.

    ``end_rows`` is the row split of the stack's last op (None: the device
    holds none). A device whose rows come out empty (its windows read only
    padding) holds None.
    """
    depth = fused_depth(strategy)
    chain = None if depth is None else fused_chain(graph, name, depth)
    if chain is None:
        raise ValueError(f"strategy {strategy!r} does not fit node {name!r}: no fusable stack of that depth")
    rows: list[tuple[int, int] | None] = list(end_rows)
    for op in reversed(chain):
        for d, r in enumerate(rows):
            if r is not None:
                lo, hi, _, _ = halo_rows(op, r[0], r[1])
                rows[d] = (lo, hi) if hi > lo else None
    return tuple(rows)


def stacks(graph: OpGraph, plan: Mapping[str, str]) -> list[tuple[str, ...]]:
    """The fused stacks of ``plan`` (a mapping node → strategy), each as its op names, first to last."""
    out = []
    for op in graph:
        d = fused_depth(plan[op.name])
        if d is None:
            continue
        prev = op.inputs[0]
        if fused_depth(plan[prev]) == d + 1:
            continue  # inside a stack that starts earlier
        chain = fused_chain(graph, op.name, d)
        if chain is not None:
            out.append((op.name,) + tuple(c.name for c in chain))
    return out


def stack_rows(graph: OpGraph, name: str, strategy: str, canon_rows: Callable[[str], Rows]) -> Rows:
    """:func:`fused_rows` of ``name`` in ``strategy``, the stack's end rows from ``canon_rows(end node)``."""
    depth = fused_depth(strategy)
    chain = None if depth is None else fused_chain(graph, name, depth)
    end = canon_rows(chain[-1].name) if chain else ()
    return fused_rows(graph, name, strategy, end)


def breaks_stack(s_src: str, s_dst: str) -> bool:
    """True when a producer inside a fused stack (``s_src``) feeds a consumer that does not continue it."""
    return fused_depth(s_src) is not None and not edge_feasible(s_src, s_dst)
