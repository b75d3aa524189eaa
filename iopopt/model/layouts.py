"""Tensor layouts, regions and the strategies each operator kind may use.

A *region* is the part of a tensor one device holds: a set of channel
intervals (dim 1) and, for 4-D tensors, one row interval (dim 2). A
*distribution* (:class:`Dist`) gives the layout kind and each device's region.

Every (node, strategy) has one fixed output distribution and one fixed
required distribution per input; both depend only on the graph and the
cluster, never on other nodes' strategies. That is what makes the total cost
a sum of node terms and edge terms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from .graph import OpKind, OpNode

__all__ = [
    "Strategy",
    "Layout",
    "Region",
    "Dist",
    "STRATEGIES",
    "strategies_for",
    "check_strategy",
    "edge_feasible",
    "halo_rows",
    "full_region",
    "InapplicableStrategy",
    "placement",
    "placement_name",
    "output_layout",
    "input_layout",
    "subset",
    "base_strategy",
    "fused_name",
    "fused_depth",
]


class Strategy(StrEnum):
    """How one operator is computed across the devices (the values are what plans, YAML and JSON hold)."""

    HOST = "host"
    REPLICATE = "replicate"
    OC = "oc"
    IC = "ic"
    ROWS = "rows"
    CHANNEL = "channel"
    PARTIAL = "partial"

    def __repr__(self) -> str:
        return repr(self.value)


class Layout(StrEnum):
    """Which device holds which part of a tensor (DESIGN §3)."""

    HOST = "H"
    REPLICATED = "R"
    DEVICE = "D"
    CHANNELS = "C"
    ROWS = "S"
    PARTIAL = "P"

    def __repr__(self) -> str:
        return repr(self.value)


#: Every strategy and the layout it produces (H host, R replicated,
#: C channel-sharded, S row-sharded, P partial sum).
STRATEGIES: dict[Strategy, Layout] = {
    Strategy.HOST: Layout.HOST,
    Strategy.REPLICATE: Layout.REPLICATED,
    Strategy.OC: Layout.CHANNELS,
    Strategy.IC: Layout.PARTIAL,
    Strategy.ROWS: Layout.ROWS,
    Strategy.CHANNEL: Layout.CHANNELS,
    Strategy.PARTIAL: Layout.PARTIAL,
}


class InapplicableStrategy(ValueError):
    """A plan names a strategy that the node's op kind cannot use."""


#: Channel intervals ``((lo, hi), ...)`` of one device's region, in increasing order.
Intervals = tuple[tuple[int, int], ...]
#: Per-device channel intervals of a channel split (an empty tuple: the device holds none).
ChannelBlocks = tuple[Intervals, ...]


@dataclass(frozen=True)
class Region:
    """Channel intervals ``ch`` (dim 1) and row interval ``rows`` (dim 2, None for 2-D tensors)."""

    ch: Intervals
    rows: tuple[int, int] | None = None

    @property
    def n_ch(self) -> int:
        if len(self.ch) == 1:
            return self.ch[0][1] - self.ch[0][0]
        return sum(b - a for a, b in self.ch)

    @property
    def n_rows(self) -> int:
        return 1 if self.rows is None else self.rows[1] - self.rows[0]

    def elems(self, shape: tuple[int, ...]) -> int:
        """Number of elements of this region of a tensor of ``shape``."""
        if len(shape) == 4:
            return shape[0] * self.n_ch * self.n_rows * shape[3]
        return shape[0] * self.n_ch * math.prod(shape[2:])

    def is_empty(self) -> bool:
        return self.n_ch == 0 or self.n_rows == 0

    def intersect(self, other: Region) -> Region | None:
        ch = _intersect_intervals(self.ch, other.ch)
        if not ch:
            return None
        rows = None
        if self.rows is not None and other.rows is not None:
            lo, hi = max(self.rows[0], other.rows[0]), min(self.rows[1], other.rows[1])
            if lo >= hi:
                return None
            rows = (lo, hi)
        else:
            rows = self.rows if self.rows is not None else other.rows
        return Region(ch, rows)

    def contains(self, other: Region) -> bool:
        inter = self.intersect(other)
        return inter is not None and inter == other

    def channel_indices(self) -> list[int]:
        return [c for a, b in self.ch for c in range(a, b)]

    def __str__(self) -> str:
        ch = ",".join(f"{a}:{b}" for a, b in self.ch)
        return f"[ch {ch}" + (f"; rows {self.rows[0]}:{self.rows[1]}]" if self.rows is not None else "]")


def full_region(shape: tuple[int, ...]) -> Region:
    return Region(((0, shape[1]),), (0, shape[2]) if len(shape) == 4 else None)


def _intersect_intervals(a: Intervals, b: Intervals) -> Intervals:
    if len(a) == 1 and len(b) == 1:  # the common case: one channel range each
        lo, hi = max(a[0][0], b[0][0]), min(a[0][1], b[0][1])
        return ((lo, hi),) if lo < hi else ()
    out = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


@dataclass(frozen=True)
class Dist:
    """A tensor's distribution: layout ``kind`` and each device's region (None: holds nothing).

    For ``P`` every holder has a full-size partial tensor and the value is the
    sum over holders.
    """

    kind: Layout
    parts: tuple[Region | None, ...]
    shape: tuple[int, ...]

    def __post_init__(self):
        if not isinstance(self.kind, Layout):
            object.__setattr__(self, "kind", Layout(self.kind))

    def nbytes(self, d: int, dtype_bytes: int) -> int:
        r = self.parts[d]
        return 0 if r is None else r.elems(self.shape) * dtype_bytes

    def holders(self) -> tuple[int, ...]:
        return tuple(d for d, r in enumerate(self.parts) if r is not None)

    def __str__(self) -> str:
        return f"{self.kind}(" + ", ".join(f"d{d}:{r}" for d, r in enumerate(self.parts) if r is not None) + ")"


S = Strategy
_CHANNELWISE_STRATEGIES = (S.HOST, S.REPLICATE, S.CHANNEL, S.ROWS)
_NO_ROWS = (S.HOST, S.REPLICATE, S.CHANNEL)

#: The layout a strategy needs for its inputs (``oc`` and ``replicate`` read whole inputs everywhere).
INPUT_LAYOUTS: dict[Strategy, Layout] = {
    S.HOST: Layout.HOST,
    S.REPLICATE: Layout.REPLICATED,
    S.OC: Layout.REPLICATED,
    S.IC: Layout.CHANNELS,
    S.ROWS: Layout.ROWS,
    S.CHANNEL: Layout.CHANNELS,
    S.PARTIAL: Layout.PARTIAL,
}


#: Prefix of a placement strategy's name: ``dev2`` runs the op whole on device 2 (DESIGN §3, Placement).
PLACEMENT_PREFIX = "dev"


def placement_name(device: int) -> str:
    """The name of the strategy running an op whole on ``device`` (e.g. ``dev2``)."""
    return f"{PLACEMENT_PREFIX}{device}"


def placement(strategy: str) -> int | None:
    """The device a placement strategy (``dev<j>``) runs its op on; None for every other strategy."""
    if strategy.startswith(PLACEMENT_PREFIX):
        tail = strategy[len(PLACEMENT_PREFIX) :]
        if tail.isdigit() and (tail == "0" or not tail.startswith("0")):
            return int(tail)
    return None


#: Prefix of a fused-stack strategy: ``rows_fused2`` computes its rows for a stack that ends 2 ops later.
FUSED_PREFIX = "rows_fused"


def fused_name(depth: int) -> str:
    """The strategy of an op whose fused spatial stack ends ``depth`` ops after it (DESIGN §3)."""
    return f"{FUSED_PREFIX}{depth}"


def fused_depth(strategy: str) -> int | None:
    """How many ops after this one its fused stack ends (``rows_fused2`` → 2); None for other strategies."""
    tail = strategy[len(FUSED_PREFIX) :] if strategy.startswith(FUSED_PREFIX) else ""
    return int(tail) if tail.isdigit() and not tail.startswith("0") else None


def subset(strategy: str) -> tuple[str, int | None]:
    """A split strategy on a device subset, ``oc@2`` (``oc`` over the 2 fastest devices): ``("oc", 2)``.

    A fused-stack op computes as ``rows`` does: ``("rows", None)``. Any other
    strategy: ``(strategy, None)`` (a split over every device, the host, a placement).
    """
    if fused_depth(strategy) is not None:
        return Strategy.ROWS.value, None
    base, sep, m = strategy.partition("@")
    if sep and m.isdigit() and not m.startswith("0"):
        return base, int(m)
    return strategy, None


def base_strategy(strategy: str) -> str:
    """The strategy without its device subset (``oc@2`` → ``oc``); placements and plain names as they are."""
    return subset(strategy)[0]


def output_layout(strategy: str) -> Layout:
    """The layout ``strategy`` produces (``D`` for a placement)."""
    if placement(strategy) is not None:
        return Layout.DEVICE
    return STRATEGIES[Strategy(base_strategy(strategy))]


def input_layout(strategy: str) -> Layout:
    """The layout ``strategy`` needs for its inputs (``D`` for a placement)."""
    if placement(strategy) is not None:
        return Layout.DEVICE
    return INPUT_LAYOUTS[Strategy(base_strategy(strategy))]


def strategies_for(op: OpNode, k: int = 1, host: int = 0, subsets: bool = False) -> tuple[str, ...]:
    """The strategies ``op`` may use on ``k`` devices with host ``host``, in a fixed order.

    The split strategies first; with ``subsets``, each split again on the m
    fastest devices only (``oc@2``, m = 2 .. k-1; m = 1 is a placement); then
    one placement ``dev<j>`` per device j other than the host, wherever
    ``host`` is allowed (graph input and output stay on the host).
    """
    base = _base_strategies(op)
    if k <= 1 or op.kind in (OpKind.INPUT, OpKind.OUTPUT) or S.HOST not in base:
        return base
    out: tuple[str, ...] = base
    if subsets:
        out += tuple(f"{s}@{m}" for m in range(2, k) for s in base if s != S.HOST)
    return out + tuple(placement_name(j) for j in range(k) if j != host)


def _base_strategies(op: OpNode) -> tuple[Strategy, ...]:
    kind = op.kind
    four_d = len(op.out_shape) == 4
    if kind in (OpKind.INPUT, OpKind.OUTPUT):
        return (S.HOST,)
    if kind == OpKind.CONV:
        return (S.HOST, S.OC, S.IC, S.ROWS, S.REPLICATE)
    if kind == OpKind.GCONV:
        # by whole groups: ``oc`` from a replicated input, ``channel`` from the groups' own input channels
        return (S.HOST, S.OC, S.CHANNEL, S.ROWS, S.REPLICATE)
    if kind == OpKind.LINEAR:
        return (S.HOST, S.OC, S.IC, S.REPLICATE)
    if kind == OpKind.FLATTEN:
        return _NO_ROWS
    if kind == OpKind.ADD:
        return _NO_ROWS + ((S.ROWS,) if four_d else ()) + (S.PARTIAL,)
    if kind == OpKind.CAT:
        return _NO_ROWS + ((S.ROWS,) if four_d else ())
    if kind in (OpKind.LAYERNORM, OpKind.SHUFFLE):
        # every output channel needs every input channel of its position: never channel-split
        return (S.HOST, S.REPLICATE) + ((S.ROWS,) if four_d else ())
    # channel-wise kinds (activations, bn, pools, depthwise conv, dropout, global mean, upsample),
    # broadcasting elementwise ops (the small operand follows the big one) and channel splits
    if kind == OpKind.AVGPOOL and (
        op.params["ceil_mode"] or (op.params["padding"][0] and not op.params["count_include_pad"])
    ):
        # a row shard cannot tell its virtual padding rows from real ones in the divisor
        return _NO_ROWS
    return _CHANNELWISE_STRATEGIES if four_d else _NO_ROWS


def check_strategy(op: OpNode, strategy: str, k: int = 1, host: int = 0, subsets: bool = False) -> None:
    """Raise :class:`InapplicableStrategy` unless ``op`` may use ``strategy`` on ``k`` devices."""
    valid = strategies_for(op, k, host, subsets)
    if strategy not in valid:
        raise InapplicableStrategy(
            f"strategy {strategy!r} is not applicable to node {op.name!r} (kind {op.kind}); "
            f"valid: {[str(s) for s in valid]}"
        )


def edge_feasible(s_src: str, s_dst: str) -> bool:
    """Whether a producer in ``s_src`` can feed a consumer in ``s_dst`` (by resharding or as is).

    Any layout can be resharded into any other except into a partial sum: a
    consumer in ``partial`` needs partial-sum inputs over the same devices
    (the same device subset). An op inside a fused stack (``rows_fused<d>``)
    feeds only the next op of its stack: ``rows_fused<d-1>``, or ``rows`` at its end.
    """
    depth = fused_depth(s_src)
    if depth is not None:
        return s_dst == (Strategy.ROWS.value if depth == 1 else fused_name(depth - 1))
    if input_layout(s_dst) != Layout.PARTIAL:
        return True
    # partial sums pass on as they are: the consumer must sum over the same devices
    return output_layout(s_src) == Layout.PARTIAL and subset(s_src)[1] == subset(s_dst)[1]


def halo_rows(op: OpNode, out_lo: int, out_hi: int) -> tuple[int, int, int, int]:
    """Input rows a device needs to compute output rows ``[out_lo, out_hi)`` of ``op``.

    Returns ``(lo, hi, pad_top, pad_bottom)``: the input rows ``[lo, hi)``
    clipped to the tensor, and how many virtual padding rows the clipped
    window lacks on top and bottom. Non-windowed ops need exactly their rows.
    """
    h_in = op.in_shapes[0][2]
    kind = op.kind
    if kind in (OpKind.ADAPTIVE_AVGPOOL, OpKind.ADAPTIVE_MAXPOOL):
        h_out = op.out_shape[2]
        lo = (out_lo * h_in) // h_out
        hi = -((-out_hi * h_in) // h_out)
        return lo, hi, 0, 0
    if kind == OpKind.UPSAMPLE:
        return _upsample_rows(op, out_lo, out_hi)
    if kind in (OpKind.CONV, OpKind.GCONV, OpKind.DWCONV, OpKind.MAXPOOL, OpKind.AVGPOOL):
        k, s, p, dl = (op.params[x][0] for x in ("kernel", "stride", "padding", "dilation"))
        lo = out_lo * s - p
        hi = (out_hi - 1) * s - p + dl * (k - 1) + 1
        # a window may lie wholly in the padding (e.g. a 1x1 conv with padding 2):
        # then no real row is needed and every row of it is virtual
        lo_c = min(max(lo, 0), h_in)
        hi_c = max(min(hi, h_in), lo_c)
        return lo_c, hi_c, max(0, min(hi, 0) - lo), max(0, hi - max(lo, h_in))
    return out_lo, out_hi, 0, 0


#: Rows of margin on each side of an upsample's row map: torch computes source indices in float32,
#: so the exact map may differ by one row from the same formula in float64 (bicubic reads 2 rows more).
_UPSAMPLE_MARGIN = 3


def _upsample_rows(op: OpNode, out_lo: int, out_hi: int) -> tuple[int, int, int, int]:
    """Input rows that output rows ``[out_lo, out_hi)`` of an upsample read: its own row map, with a margin.

    ``params``: ``mode`` (``nearest``, ``nearest-exact``, ``bilinear``, ``bicubic``),
    ``align_corners`` and ``scales`` (the (h, w) scale factors the model gave, or
    None when it gave an output size). The rows are a superset of those the
    kernel reads (see :data:`_UPSAMPLE_MARGIN`), so a device never lacks one.
    """
    h_in, h_out = op.in_shapes[0][2], op.out_shape[2]
    p = op.params
    scales = p.get("scales")
    if p.get("align_corners"):
        ratio = (h_in - 1) / (h_out - 1) if h_out > 1 else 0.0
        offset = 0.0
    else:
        ratio = 1.0 / scales[0] if scales else h_in / h_out
        offset = 0.0 if p["mode"] == "nearest" else 0.5

    def src(i: int) -> float:
        return (i + offset) * ratio - (offset if p["mode"] in ("bilinear", "bicubic") else 0.0)

    lo = math.floor(src(out_lo)) - _UPSAMPLE_MARGIN
    hi = math.floor(src(out_hi - 1)) + 1 + _UPSAMPLE_MARGIN
    lo = min(max(lo, 0), h_in)
    return lo, max(min(hi, h_in), lo), 0, 0
