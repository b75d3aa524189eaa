"""Devices, clusters and how work is split among them.

A :class:`Device` is a roofline (DESIGN §2): the compute time of its share
of an operator v is

    T_comp(v, d) = max(FLOPs_vd / rate_d(kind v), bytes_vd / membw_d(kind v)) + op_overhead_d

with ``rate_d(kind)`` the device's per-kind rate (``kind_flops_per_s``) or,
for a kind it does not list, its peak dense conv rate ``flops_per_s``; and
``membw_d(kind)`` the bandwidth torch reaches on that kind
(``kind_bytes_per_s``), else the device's memory bandwidth (no bandwidth term
when it has neither). The kind is the operator's pricing kind
(:func:`pricing_kind`): a pointwise (1x1) conv is priced as ``pwconv``, whose
rate and bandwidth default to the conv's. A device with a working-set
bandwidth (``cache_bytes`` and ``dram_bytes_per_s``, both or neither) moves the
bytes of a share larger than ``cache_bytes`` at no more than
``dram_bytes_per_s`` (the share's data no longer fits in the caches). With
``spill_weight_bytes`` as well, a share whose input was written by an operator
holding more than ``spill_weight_bytes`` of weights moves its bytes at no more
than ``dram_bytes_per_s`` too, whatever its own size: that input has left the
caches before it is read (on the CPUs profiled so far a conv's output is read
back at DRAM speed, as after a cache-flushing copy; a batchnorm's or an
elementwise operator's at cache speed). A device
given only ``flops_per_s`` prices every operator as FLOPs / ``flops_per_s`` +
overhead.

A device with a weight pass (``weight_bytes_per_s``) also prices what a *row*
share of an operator with weights loses against its fraction of the whole
layer: a CPU conv call goes through all of its weights once (presumably
reordering them for its kernel), whatever the number of output rows it computes. The whole
layer's time, to which the rates are fitted, holds that pass once; a share of
a fraction f of the rows, priced at f of the layer's FLOPs, would hold f of it,
so it pays the rest on its FLOP term::

    FLOPs_vd / rate_d(kind v) + (1 - f) · weight_bytes_v / weight_bytes_per_s_d

(measured on the machine this was built on: a quarter of the rows of a
512->512 3x3 conv at 28x28 took 1.16-1.42x a quarter of the whole layer in four
runs, a quarter of its output channels 0.98x; see ``iopopt profile``'s row
shares).

A device may also carry power figures for energy (DESIGN §4):
``active_power_w`` (computing), ``idle_power_w``, ``tx_power_w`` and
``rx_power_w`` (its network interface busy sending / receiving), each the
whole device's draw in that state. Give all four or none; without them a
plan's energy is unknown (None), never zero.

Per-kind bandwidths are there because one bandwidth cannot describe what
torch does on a CPU: a conv with few FLOPs per byte (1x1, few input
channels, or few output pixels for its weights) runs far below the peak rate,
as if memory-bound at a few GB/s, while elementwise kernels stream tens of
GB/s through the caches. The weights count: on the machine this was built on,
a one-row share of a 512->512 3x3 conv at 7x7 takes as long as the whole
layer (every call handles every weight), and the share's bytes -- all its
weights -- say so.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .graph import OpKind
from .ranges import range_error

__all__ = [
    "Device",
    "Cluster",
    "KindRates",
    "split_counts",
    "SPLIT_POLICIES",
    "RATE_KINDS",
    "POWER_FIELDS",
    "rate_kinds",
    "pricing_kind",
    "PRICING_KINDS",
    "OPTIONAL_FIGURES",
    "DEVICE_KEYS",
]

SPLIT_POLICIES = ("proportional", "equal")
#: A device's optional roofline figures (bytes/s, and the cache size in bytes): None where not modelled.
OPTIONAL_FIGURES = ("memory_bandwidth_bytes_per_s", "cache_bytes", "dram_bytes_per_s", "weight_bytes_per_s",
                    "spill_weight_bytes")
#: A device's power figures, watts: computing, idle, sending, receiving (all four or none).
POWER_FIELDS = ("active_power_w", "idle_power_w", "tx_power_w", "rx_power_w")
#: The keys of a device in a config or a profile: the figures a :class:`Device` is built from.
DEVICE_KEYS = ("name", "flops_per_s", "memory_bytes", "op_overhead_s", "kind_flops_per_s", "kind_bytes_per_s",
               *OPTIONAL_FIGURES, *POWER_FIELDS)


#: Pricing kinds that are not op kinds: ``pwconv``, a conv with a 1x1 kernel (see :func:`pricing_kind`).
PRICING_KINDS = ("pwconv",)


def rate_kinds() -> tuple[str, ...]:
    """The op kinds a device may give a rate of its own in ``kind_flops_per_s``.

    Every :class:`~iopopt.model.graph.OpKind` that computes something, but
    ``conv`` (whose rate is ``flops_per_s``), and the pricing kinds
    :data:`PRICING_KINDS`: a kind added to ``OpKind`` is a valid key at once.
    """
    ops = tuple(k.value for k in OpKind if k not in (OpKind.INPUT, OpKind.OUTPUT, OpKind.CONV))
    return ops + PRICING_KINDS


def pricing_kind(kind: str, params: Mapping[str, Any] | None = None) -> str:
    """The kind an operator is priced as: ``pwconv`` for a conv with a 1x1 kernel, else its op kind.

    torch runs a pointwise conv as one matrix product over the pixels, at a
    rate of its own (far from the 3x3 conv's on a CPU), so a device may price
    it apart; a device that does not uses its conv figures for it.

    >>> pricing_kind("conv", {"kernel": (1, 1)}), pricing_kind("conv", {"kernel": (3, 3)}), pricing_kind("bn")
    ('pwconv', 'conv', 'bn')
    """
    if kind == OpKind.CONV.value and params is not None and tuple(params.get("kernel") or ()) == (1, 1):
        return "pwconv"
    return str(kind)


#: The valid keys of ``kind_flops_per_s`` (see :func:`rate_kinds`).
RATE_KINDS = rate_kinds()
_PRICED_KINDS = frozenset(RATE_KINDS) | {OpKind.CONV.value}


def _positive(owner: str, field_name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{owner}: {field_name} must be a positive finite number, got {value!r}")


def _kind_map(owner: str, name: str, value: object, valid: tuple[str, ...], unit: str) -> KindRates:
    """``value`` checked as a mapping op kind -> positive number, as an immutable :class:`KindRates`."""
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{owner}: {name} must be a mapping op kind -> {unit}, got {value!r}")
    for kind, rate in value.items():
        if kind not in valid:
            hint = " (the conv rate is flops_per_s)" if kind == OpKind.CONV.value else ""
            raise ValueError(f"{owner}: unknown op kind {kind!r} in {name}{hint}; valid kinds: {', '.join(valid)}")
        _positive(owner, f"{name}[{kind!r}]", rate)
    return value if isinstance(value, KindRates) else KindRates(value)


def _check_working_set(owner: str, cache: object, dram: object) -> None:
    """``cache_bytes`` and ``dram_bytes_per_s`` both None or both positive finite numbers."""
    if (cache is None) != (dram is None):
        given, missing = ("cache_bytes", "dram_bytes_per_s") if dram is None else ("dram_bytes_per_s", "cache_bytes")
        raise ValueError(f"{owner}: the working-set bandwidth needs cache_bytes and dram_bytes_per_s; "
                         f"{given} given but not {missing}")
    if cache is not None:
        _positive(owner, "cache_bytes", cache)
        _positive(owner, "dram_bytes_per_s", dram)


def _check_power(owner: str, figures: Mapping[str, object]) -> None:
    """Each power figure None or a finite number >= 0, and all four given or none."""
    for name, value in figures.items():
        if value is None:
            continue
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or value < 0:  # type: ignore[operator]  # a number by now
            raise ValueError(f"{owner}: {name} must be a finite number >= 0 (watts), got {value!r}")
    given = [n for n, v in figures.items() if v is not None]
    if given and len(given) != len(figures):
        missing = [n for n, v in figures.items() if v is None]
        raise ValueError(
            f"{owner}: power figures come as a set; {', '.join(given)} given but not {', '.join(missing)}"
        )


class KindRates(Mapping[str, float]):
    """An immutable, hashable mapping op kind → FLOP/s (a device's ``kind_flops_per_s``)."""

    def __init__(self, rates: Mapping[str, float] | None = None):
        self._rates = {str(k): v for k, v in (rates or {}).items()}

    def __getitem__(self, kind: str) -> float:
        return self._rates[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(self._rates)

    def __len__(self) -> int:
        return len(self._rates)

    def __hash__(self) -> int:
        return hash(frozenset(self._rates.items()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self.items()) == dict(other.items())

    def __repr__(self) -> str:
        return f"KindRates({self._rates!r})"


@dataclass(frozen=True)
class Device:
    """One device of a cluster: a roofline (see the module docstring).

    Parameters
    ----------
    name : str
        Unique name within its cluster.
    flops_per_s : float
        Peak dense conv rate, FLOP/s; also the rate of every op kind not in
        ``kind_flops_per_s``, and the device's weight in proportional splits.
    memory_bytes : float
        Memory available for weights and activations, bytes.
    op_overhead_s : float
        Fixed cost of running one operator (kernel launch, framework), seconds.
    kind_flops_per_s : mapping of str to float
        Rates of other op kinds, FLOP/s as the graph counts FLOPs (e.g.
        ``{"linear": 1e10, "maxpool": 3e8, "act": 2e10}``); keys are
        :data:`RATE_KINDS`.
    memory_bandwidth_bytes_per_s : float or None
        Bytes per second the device reads and writes (inputs, output,
        weights); None: not modelled.
    kind_bytes_per_s : mapping of str to float
        Bandwidth torch reaches on particular op kinds, bytes/s (keys: ``conv``
        and :data:`RATE_KINDS`); other kinds use ``memory_bandwidth_bytes_per_s``
        (``pwconv``: the conv's first).
    cache_bytes, dram_bytes_per_s : float or None
        The working-set bandwidth: a share moving more than ``cache_bytes``
        bytes moves them at most at ``dram_bytes_per_s`` (both or neither;
        None: every share at its kind's bandwidth, whatever its size).
    weight_bytes_per_s : float or None
        The weight pass: bytes/s at which one call of an operator goes
        through its weights, whatever the rows it computes (see the module
        docstring); None: a row share costs its fraction of the layer.
    spill_weight_bytes : float or None
        An operator whose input was written by one holding more than this
        many bytes of weights reads it from DRAM: its share moves its bytes
        at most at ``dram_bytes_per_s`` (needs the working-set bandwidth).
        None: only a share's own size decides.
    active_power_w, idle_power_w, tx_power_w, rx_power_w : float or None
        The device's draw, watts, while computing, idle, sending and
        receiving (finite, >= 0; all four or none). None: energy is unknown.
    """

    name: str
    flops_per_s: float
    memory_bytes: float = float("inf")
    op_overhead_s: float = 0.0
    kind_flops_per_s: Mapping[str, float] = field(default_factory=KindRates)
    memory_bandwidth_bytes_per_s: float | None = None
    kind_bytes_per_s: Mapping[str, float] = field(default_factory=KindRates)
    cache_bytes: float | None = None
    dram_bytes_per_s: float | None = None
    weight_bytes_per_s: float | None = None
    spill_weight_bytes: float | None = None
    active_power_w: float | None = None
    idle_power_w: float | None = None
    tx_power_w: float | None = None
    rx_power_w: float | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Device: name must be a non-empty string, got {self.name!r}")
        owner = f"Device {self.name!r}"
        _positive(owner, "flops_per_s", self.flops_per_s)
        if not (isinstance(self.memory_bytes, (int, float)) and self.memory_bytes > 0):
            raise ValueError(f"{owner}: memory_bytes must be positive, got {self.memory_bytes!r}")
        if not (isinstance(self.op_overhead_s, (int, float)) and self.op_overhead_s >= 0):
            raise ValueError(f"{owner}: op_overhead_s must be >= 0, got {self.op_overhead_s!r}")
        object.__setattr__(self, "kind_flops_per_s", _kind_map(owner, "kind_flops_per_s", self.kind_flops_per_s,
                                                              rate_kinds(), "FLOP/s"))
        object.__setattr__(self, "kind_bytes_per_s", _kind_map(owner, "kind_bytes_per_s", self.kind_bytes_per_s,
                                                              (OpKind.CONV.value, *rate_kinds()), "bytes/s"))
        if self.memory_bandwidth_bytes_per_s is not None:
            _positive(owner, "memory_bandwidth_bytes_per_s", self.memory_bandwidth_bytes_per_s)
        _check_working_set(owner, self.cache_bytes, self.dram_bytes_per_s)
        if self.weight_bytes_per_s is not None:
            _positive(owner, "weight_bytes_per_s", self.weight_bytes_per_s)
        if self.spill_weight_bytes is not None:
            _positive(owner, "spill_weight_bytes", self.spill_weight_bytes)
            if self.dram_bytes_per_s is None:
                raise ValueError(f"{owner}: spill_weight_bytes needs the working-set bandwidth (cache_bytes and "
                                 f"dram_bytes_per_s); spill_weight_bytes given without them")
        _check_power(owner, {f: getattr(self, f) for f in POWER_FIELDS})
        for name in ("flops_per_s", "memory_bytes", "op_overhead_s", *OPTIONAL_FIGURES, *POWER_FIELDS):
            if (bad := range_error(name, getattr(self, name))) is not None:
                raise ValueError(f"{owner}: {bad}")
        for name in ("kind_flops_per_s", "kind_bytes_per_s"):
            for kind, rate in getattr(self, name).items():
                if (bad := range_error(name, rate, f"{name}[{kind!r}]")) is not None:
                    raise ValueError(f"{owner}: {bad}")

    @property
    def has_power(self) -> bool:
        """True when the device has its power figures (then all four are set)."""
        return self.idle_power_w is not None

    @property
    def is_roofline(self) -> bool:
        """True when the device has per-kind rates or a bandwidth (more than one FLOP/s figure)."""
        return (bool(self.kind_flops_per_s or self.kind_bytes_per_s) or self.memory_bandwidth_bytes_per_s is not None
                or self.dram_bytes_per_s is not None or self.weight_bytes_per_s is not None
                or self.spill_weight_bytes is not None)

    def bandwidth(self, kind: str, nbytes: float = 0.0) -> float | None:
        """Bytes/s of kind ``kind`` for a share moving ``nbytes``: its own bandwidth, else (``pwconv``) the conv's,
        else the memory bandwidth (None: bytes are free); capped at ``dram_bytes_per_s`` beyond ``cache_bytes``."""
        got = self.kind_bytes_per_s.get(kind)
        if got is None and kind in PRICING_KINDS:
            got = self.kind_bytes_per_s.get(OpKind.CONV.value)
        if got is None:
            got = self.memory_bandwidth_bytes_per_s
        if self.dram_bytes_per_s is not None and self.cache_bytes is not None and nbytes > self.cache_bytes:
            return self.dram_bytes_per_s if got is None else min(got, self.dram_bytes_per_s)
        return got

    def rate(self, kind: str) -> float:
        """FLOP/s of kind ``kind``: its own rate, else ``flops_per_s`` (also for ``pwconv``)."""
        got = self.kind_flops_per_s.get(kind)
        if got is not None:
            return got
        if kind not in _PRICED_KINDS and kind not in rate_kinds():
            raise ValueError(
                f"Device {self.name!r}: no rate for op kind {kind!r}; valid kinds: conv, {', '.join(rate_kinds())}"
            )
        return self.flops_per_s

    def compute_s(self, kind: str, flops: float, nbytes: float = 0.0, weight_bytes: float = 0.0,
                  row_fraction: float = 1.0, producer_weight_bytes: float = 0.0) -> float:
        """Seconds this device takes for its share of one operator of ``kind``.

        ``flops`` FLOPs and ``nbytes`` bytes read and written (inputs, output
        and weights of its share): ``max(flops / rate(kind), nbytes /
        bandwidth(kind, nbytes)) + op_overhead_s``, the bandwidth term only
        when the device has a bandwidth for that kind; ``kind`` is the
        operator's :func:`pricing_kind`. A share of ``row_fraction`` < 1 of
        the output rows that holds ``weight_bytes`` of weights adds
        ``(1 - row_fraction) * weight_bytes / weight_bytes_per_s`` to its
        FLOP term when the device has a weight pass (module docstring).
        ``producer_weight_bytes``: the most weight bytes held by an operator
        that wrote one of its inputs, computed whole; beyond
        ``spill_weight_bytes`` the share's bytes move at most at
        ``dram_bytes_per_s``. The one function that prices compute: the cost terms, and through them
        every solver, report and timeline, call it.

        >>> Device("d", 1e9, op_overhead_s=1e-6).compute_s("conv", 2e6)
        0.002001
        >>> Device("d", 1e9, kind_flops_per_s={"linear": 1e8},
        ...        memory_bandwidth_bytes_per_s=1e9).compute_s("linear", 1e6, 4e6)
        0.01
        >>> Device("d", 1e9, weight_bytes_per_s=1e9).compute_s("conv", 1e6, 0.0, 4e6, row_fraction=0.25)
        0.004
        >>> cold = Device("d", 1e9, memory_bandwidth_bytes_per_s=1e10, cache_bytes=1e6, dram_bytes_per_s=1e9,
        ...               spill_weight_bytes=1e6)
        >>> cold.compute_s("act", 0.0, 1e5), cold.compute_s("act", 0.0, 1e5, producer_weight_bytes=2e6)
        (1e-05, 0.0001)
        """
        work = flops / self.rate(kind)
        if self.weight_bytes_per_s is not None and row_fraction < 1.0:
            work += (1.0 - row_fraction) * weight_bytes / self.weight_bytes_per_s
        spilled = self.spill_weight_bytes is not None and producer_weight_bytes > self.spill_weight_bytes
        bw = self.bandwidth(kind, math.inf if spilled else nbytes)
        if bw is not None:
            work = max(work, nbytes / bw)
        return work + self.op_overhead_s


@dataclass(frozen=True)
class Cluster:
    """k devices; ``host`` holds the input image and must end holding the output.

    ``split`` chooses how channel and row splits share work:
    ``proportional`` (to ``flops_per_s``) or ``equal``. With ``subsets``,
    every split may also run on the m fastest devices only (``oc@2``, m = 2 ..
    k-1), so that adding a device never makes the optimum slower. With
    ``fused_depth`` D > 0, the solvers' space also holds fused spatial stacks
    of up to D + 1 ops (``rows_fused<d>``, DESIGN §3); 0 leaves them out.
    """

    devices: tuple[Device, ...]
    host: int = 0
    split: str = "proportional"
    name: str = ""
    subsets: bool = False
    fused_depth: int = 0

    def __post_init__(self):
        object.__setattr__(self, "devices", tuple(self.devices))
        if not self.devices:
            raise ValueError("Cluster: devices must not be empty")
        for d in self.devices:
            if not isinstance(d, Device):
                raise ValueError(f"Cluster: devices must be Device objects, got {d!r}")
        names = [d.name for d in self.devices]
        if len(set(names)) != len(names):
            raise ValueError(f"Cluster: device names must be unique, got {names}")
        if isinstance(self.host, bool) or not isinstance(self.host, int) or not 0 <= self.host < len(self.devices):
            raise ValueError(f"Cluster: host must be a device index in [0, {len(self.devices) - 1}], got {self.host!r}")
        if self.split not in SPLIT_POLICIES:
            raise ValueError(f"Cluster: split must be one of {SPLIT_POLICIES}, got {self.split!r}")
        if not isinstance(self.subsets, bool):
            raise ValueError(f"Cluster: subsets must be true or false, got {self.subsets!r}")
        if isinstance(self.fused_depth, bool) or not isinstance(self.fused_depth, int) or self.fused_depth < 0:
            raise ValueError(f"Cluster: fused_depth must be an integer >= 0, got {self.fused_depth!r}")

    @property
    def k(self) -> int:
        return len(self.devices)

    @property
    def total_flops_per_s(self) -> float:
        return sum(d.flops_per_s for d in self.devices)

    @property
    def has_power(self) -> bool:
        """True when every device has power figures (a plan's energy is then defined)."""
        return all(d.has_power for d in self.devices)

    def weights(self) -> tuple[float, ...]:
        """Share weights of the devices under the cluster's split policy."""
        if self.split == "equal":
            return (1.0,) * self.k
        return tuple(d.flops_per_s for d in self.devices)

    def fastest(self, m: int) -> tuple[int, ...]:
        """Indices of the ``m`` fastest devices (by ``flops_per_s``; ties: the lower index), in index order."""
        order = sorted(range(self.k), key=lambda d: (-self.devices[d].flops_per_s, d))
        return tuple(sorted(order[:m]))

    def counts(self, n: int, m: int | None = None) -> tuple[int, ...]:
        """Integer shares of ``n`` items (channels, rows) per device; with ``m``, over the m fastest only."""
        weights = self.weights()
        if m is not None and m < self.k:
            chosen = set(self.fastest(m))
            weights = tuple(w if d in chosen else 0.0 for d, w in enumerate(weights))
        return split_counts(n, weights)

    @classmethod
    def homogeneous(cls, k: int, flops_per_s: float, memory_bytes: float = float("inf"), **kw: Any) -> Cluster:
        """``k`` identical devices ``d0``, ``d1``, ...; ``op_overhead_s``, ``kind_flops_per_s``,
        ``kind_bytes_per_s``, the optional figures (:data:`OPTIONAL_FIGURES`) and the power figures
        (:data:`POWER_FIELDS`) go to every device, the others to the cluster."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"Cluster.homogeneous: k must be a positive integer, got {k!r}")
        keys = ("op_overhead_s", "kind_flops_per_s", "kind_bytes_per_s", *OPTIONAL_FIGURES, *POWER_FIELDS)
        roofline = {key: kw.pop(key) for key in keys if key in kw}
        devs = tuple(Device(f"d{i}", flops_per_s, memory_bytes, **roofline) for i in range(k))
        return cls(devs, **kw)


def split_counts(n: int, weights: Sequence[float]) -> tuple[int, ...]:
    """Split ``n`` items in proportion to ``weights`` by largest remainder.

    Ties in the remainder go to the lower device index. A device may get zero.

    >>> split_counts(10, [1, 1, 1])
    (4, 3, 3)
    >>> split_counts(2, [1, 1, 1, 1])
    (1, 1, 0, 0)
    """
    if n < 0:
        raise ValueError(f"split_counts: n must be >= 0, got {n}")
    total = float(sum(weights))
    if total <= 0:
        raise ValueError(f"split_counts: weights must have a positive sum, got {list(weights)}")
    quotas = [n * w / total for w in weights]
    counts = [int(math.floor(q + 1e-12)) for q in quotas]
    rest = n - sum(counts)
    order = sorted(range(len(weights)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in order[:rest]:
        counts[i] += 1
    return tuple(counts)
