"""Physically meaningful ranges of the device and network figures.

A figure outside its range is almost surely a typo or a unit slip
(``bandwidth_bytes_per_s=1e-310``, ``flops_per_s=inf``), and would otherwise
surface far away as an opaque solver failure or a latency printed with 300
digits. The bounds are deliberately generous: from a 1 B/s radio link to a
10 TB/s interconnect, from a 1 kFLOP/s microcontroller to an exaflop machine.
"""

from __future__ import annotations

import math

__all__ = ["PHYSICAL_RANGES", "range_error"]

#: field name → (lowest, highest, unit); both bounds inclusive.
PHYSICAL_RANGES: dict[str, tuple[float, float, str]] = {
    "flops_per_s": (1e3, 1e18, "FLOP/s"),
    "kind_flops_per_s": (1e3, 1e18, "FLOP/s"),
    "memory_bandwidth_bytes_per_s": (1e3, 1e15, "bytes/s"),
    "kind_bytes_per_s": (1e3, 1e15, "bytes/s"),
    "dram_bytes_per_s": (1e3, 1e15, "bytes/s"),
    "cache_bytes": (1.0, 1e15, "bytes"),
    "weight_bytes_per_s": (1e3, 1e15, "bytes/s"),
    "spill_weight_bytes": (1.0, 1e15, "bytes"),
    "bandwidth_bytes_per_s": (1.0, 1e13, "bytes/s"),
    "device_bandwidths": (1.0, 1e13, "bytes/s"),
    "latency_s": (0.0, 3600.0, "s"),
    "message_overhead_s": (0.0, 3600.0, "s"),
    "op_overhead_s": (0.0, 3600.0, "s"),
    "memory_bytes": (1.0, 1e18, "bytes"),
    "active_power_w": (0.0, 1e6, "W"),
    "idle_power_w": (0.0, 1e6, "W"),
    "tx_power_w": (0.0, 1e6, "W"),
    "rx_power_w": (0.0, 1e6, "W"),
}


def range_error(field: str, value: object, where: str | None = None) -> str | None:
    """``"WHERE=VALUE is outside the physically meaningful range [LO, HI] UNIT"``, or None when in range.

    ``field`` is the figure's name (a key of :data:`PHYSICAL_RANGES`; unknown
    names are not checked); ``where`` how the message names it (default: ``field``).
    ``memory_bytes`` may be infinite (no limit). Non-numbers are left to the
    caller's own type check.
    """
    if field not in PHYSICAL_RANGES or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if field == "memory_bytes" and value == math.inf:
        return None
    lo, hi, unit = PHYSICAL_RANGES[field]
    if lo <= value <= hi:
        return None
    return f"{where or field}={value!r} is outside the physically meaningful range [{lo:g}, {hi:g}] {unit}"
