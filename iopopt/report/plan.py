"""A plan, layer by layer, from its result record: the table of ``iopopt show`` and what the diagrams draw.

Everything here reads a record's ``per_op`` (written with ``save_per_op``):
the layers in execution order, each one's kind and strategy, the messages
and bytes on each of its input edges, and its compute and communication
time. Two extension points let a new strategy family be shown without
touching the drawing code:

- :data:`STRATEGY_STYLES` / :func:`register_strategy_style`: the colour,
  short label and meaning of each strategy (strategies of an unknown family
  get a stable fallback colour and their own name);
- :data:`SPAN_RULES`: functions that find groups of consecutive layers a
  reader should see as one unit (IOP pairs, fused spatial stacks), each
  returning :class:`Span` objects that tables and diagrams mark.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "StrategyStyle",
    "STRATEGY_STYLES",
    "register_strategy_style",
    "strategy_style",
    "Span",
    "SPAN_RULES",
    "iop_pairs",
    "fused_stacks",
    "spans",
    "nbytes_text",
    "plan_rows",
    "plan_table",
]


@dataclass(frozen=True)
class StrategyStyle:
    """How a strategy is drawn: fill colour, a short cell label, and its meaning (for legends)."""

    color: str
    short: str
    meaning: str


STRATEGY_STYLES: dict[str, StrategyStyle] = {
    "host": StrategyStyle("#c7c7c7", "H", "host: the whole op on the host"),
    "replicate": StrategyStyle("#9edae5", "R", "replicate: the whole op on every device"),
    "oc": StrategyStyle("#1f77b4", "oc", "oc: output channels split"),
    "ic": StrategyStyle("#ff7f0e", "ic", "ic: input channels split, partial sums out"),
    "rows": StrategyStyle("#2ca02c", "rw", "rows: feature-map rows split (halo rows exchanged)"),
    "channel": StrategyStyle("#aec7e8", "ch", "channel: channel-wise op on channel shards"),
    "partial": StrategyStyle("#ffbb78", "P", "partial: elementwise on partial sums"),
}
_FALLBACK = ("#8c564b", "#e377c2", "#bcbd22", "#17becf", "#7f7f7f", "#c49c94")


def register_strategy_style(name: str, color: str, short: str, meaning: str) -> None:
    """Give a strategy (e.g. a new family's ``rows_fused``) its colour, cell label and legend text."""
    STRATEGY_STYLES[name] = StrategyStyle(color, short, meaning)


def strategy_style(name: str) -> StrategyStyle:
    """The style of ``name``: registered ones, placements ``dev j``, ``*_fused`` marks, else a stable fallback."""
    name = str(name)
    if name in STRATEGY_STYLES:
        return STRATEGY_STYLES[name]
    if name.startswith("dev"):  # placement on device j (dev1, dev 1, dev_1)
        j = "".join(ch for ch in name if ch.isdigit())
        return StrategyStyle("#c5b0d5", f"D{j}", "dev j: the whole op on device j")
    if name.startswith("rows_fused") and name[len("rows_fused") :].isdigit():  # rows_fused<d>: d ops to the end
        return StrategyStyle("#98df8a", "rw+", "rows_fused: fused stack member (rows, halos recomputed, no message)")
    if name.endswith("_fused"):  # a fused stack member of a base strategy: its colour, lighter label
        base = strategy_style(name[: -len("_fused")])
        return StrategyStyle(base.color, base.short + "+", f"{name}: fused stack member (halos recomputed)")
    return StrategyStyle(_FALLBACK[sum(map(ord, name)) % len(_FALLBACK)], name[:3], name)


@dataclass(frozen=True)
class Span:
    """Consecutive layers ``first..last`` (indices into ``per_op``) a reader should see as one unit."""

    kind: str
    first: int
    last: int
    label: str
    members: tuple[int, ...] = ()


def _producer(per_op: Sequence[Mapping], i: int, index: Mapping[str, int]) -> int | None:
    """The index of layer ``i``'s single producer (the previous layer for records without edges)."""
    op = per_op[i]
    inputs = op.get("inputs")
    if inputs is None:
        return i - 1 if i > 0 else None
    if len(inputs) != 1:
        return None
    return index.get(inputs[0]["src"])


def iop_pairs(per_op: Sequence[Mapping]) -> list[Span]:
    """IOP pairs: a layer in ``oc`` feeding, through channel-wise layers in ``channel`` only, a layer in ``ic``."""
    index = {op["node"]: i for i, op in enumerate(per_op)}
    out = []
    for i, op in enumerate(per_op):
        if op.get("strategy") != "ic":
            continue
        j = _producer(per_op, i, index)
        between = []
        while j is not None and per_op[j].get("strategy") == "channel":
            between.append(j)
            j = _producer(per_op, j, index)
        if j is not None and per_op[j].get("strategy") == "oc":
            out.append(Span("IOP pair", j, i, f"pair {len(out) + 1}", (j, *reversed(between), i)))
    return out


def fused_stacks(per_op: Sequence[Mapping]) -> list[Span]:
    """Fused spatial stacks: consecutive ``*_fused`` layers and the layer that ends the stack.

    A ``rows_fused<d>`` layer starts a stack that ends d layers later.
    """
    out = []
    i = 0
    while i < len(per_op):
        s = str(per_op[i].get("strategy", ""))
        if s.startswith("rows_fused") and s[len("rows_fused") :].isdigit():
            last = min(i + int(s[len("rows_fused") :]), len(per_op) - 1)
            out.append(Span("fused stack", i, last, f"fused {len(out) + 1}", tuple(range(i, last + 1))))
            i = last + 1
        elif s.endswith("_fused"):
            j = i
            while j + 1 < len(per_op) and str(per_op[j + 1].get("strategy", "")).endswith("_fused"):
                j += 1
            last = min(j + 1, len(per_op) - 1)
            out.append(Span("fused stack", i, last, f"fused {len(out) + 1}", tuple(range(i, last + 1))))
            i = last + 1
        else:
            i += 1
    return out


#: Functions finding the spans tables and diagrams mark; append one for a new family of grouped layers.
SPAN_RULES: list[Callable[[Sequence[Mapping]], list[Span]]] = [iop_pairs, fused_stacks]


def spans(per_op: Sequence[Mapping]) -> list[Span]:
    """Every span the rules find, in layer order."""
    return sorted((s for rule in SPAN_RULES for s in rule(per_op)), key=lambda s: (s.first, s.last))


def nbytes_text(n: float | None) -> str:
    """``1.2 MB``, ``640 kB``, ``96 B``, ``0``."""
    if not n:
        return "0"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} B"


def _ms(s: float | None) -> str:
    return "" if s is None else f"{s * 1e3:.3f}"


def plan_rows(record: Mapping) -> list[dict]:
    """One dict per layer: ``#``, ``layer``, ``kind``, ``strategy``, ``pair``, ``inputs``, ``messages``,
    ``bytes``, ``comm ms``, ``compute ms`` (from ``per_op``; the strategies alone when it is missing)."""
    per_op = record.get("per_op")
    if not per_op:
        strategies = (record.get("strategies") or {}).items()
        return [{"#": i, "layer": node, "strategy": s} for i, (node, s) in enumerate(strategies)]
    marks: dict[int, str] = {}
    for sp in spans(per_op):
        for m in sp.members or range(sp.first, sp.last + 1):
            role = "A" if m == sp.first else "B" if m == sp.last else "·"
            marks[m] = f"{sp.label} {role}" if sp.kind == "IOP pair" else sp.label
    rows = []
    for i, op in enumerate(per_op):
        edges = []
        for e in op.get("inputs") or ():
            edges.append(f"{e['src']} ({e['messages']} msg, {nbytes_text(e['bytes'])})" if e["messages"] else e["src"])
        rows.append({
            "#": i,
            "layer": op["node"],
            "kind": op.get("kind", ""),
            "strategy": op.get("strategy", ""),
            "pair": marks.get(i, ""),
            "inputs": ", ".join(edges),
            "messages": op.get("messages", 0),
            "bytes": nbytes_text(op.get("bytes_sent")),
            "comm ms": _ms(op.get("comm_s")),
            "compute ms": _ms(op.get("compute_s")),
        })
    return rows


def _align(rows: list[dict], right: frozenset) -> list[str]:
    cols = list(rows[0])
    cells = [cols] + [[str(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    out = []
    for n, row in enumerate(cells):
        parts = [v.rjust(w) if c in right else v.ljust(w) for v, w, c in zip(row, widths, cols)]
        out.append("  ".join(parts).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def _header(record: Mapping) -> str:
    what = f"{record.get('model')} on {record.get('cluster')} / {record.get('network')} — {record.get('solver')}"
    lat = record.get("latency_s")
    if lat is None:
        return f"{what}: no plan ({record.get('termination')})"
    out = (f"{what} ({record.get('termination')}): {lat * 1e3:.3f} ms = compute {record['compute_s'] * 1e3:.3f} "
           f"+ communication {record['comm_s'] * 1e3:.3f} ms; {record.get('messages')} messages, "
           f"{nbytes_text(record.get('bytes_sent'))} sent")
    peaks = record.get("per_device") or []
    if peaks:
        top = max(peaks, key=lambda d: d["peak_bytes"])
        out += f"; peak memory {nbytes_text(top['peak_bytes'])} ({top['name']})"
    return out


def plan_table(record: Mapping) -> str:
    """The plan of a record as text: a header line, one row per layer, the IOP pairs and the strategies used."""
    lines = [_header(record)]
    rows = plan_rows(record)
    if not rows:
        return lines[0] + "\n"
    lines += _align(rows, frozenset({"#", "messages", "bytes", "comm ms", "compute ms"}))
    per_op = record.get("per_op")
    if per_op:
        found = spans(per_op)
        for kind in dict.fromkeys(s.kind for s in found):
            mine = [s for s in found if s.kind == kind]
            lines.append(f"{kind}s ({len(mine)}): " + "; ".join(
                f"{per_op[s.first]['node']} ({per_op[s.first]['strategy']}) → {per_op[s.last]['node']} "
                f"({per_op[s.last]['strategy']})" for s in mine))
        if not any(s.kind == "IOP pair" for s in found):
            lines.append("IOP pairs: none")
    else:
        lines.append("(no per-layer breakdown in this record: it was written with save_per_op=false)")
    used = dict.fromkeys(str(r.get("strategy")) for r in rows)
    lines.append("strategies: " + "; ".join(strategy_style(s).meaning for s in used))
    return "\n".join(lines) + "\n"
