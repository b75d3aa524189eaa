"""Fit a roofline device to operators timed in context.

A sample is one operator: its kind, FLOPs, the bytes it reads and writes (as
the cost terms count them) and its measured seconds. The model is the cost
model's own (:meth:`iopopt.model.cluster.Device.compute_s`)::

    t = max(FLOPs / rate(kind), bytes / bandwidth(kind)) + overhead

:func:`fit_roofline` chooses the overhead shared by every kind and, per kind,
the rate and bandwidth that minimise the sum of absolute log errors, each
weighed by the operator's time to the power :data:`WEIGHT_POWER` (so the
typical operator's relative error, not the largest operator's, is what is
fitted), by exhaustive search on log-spaced grids. With the bandwidth of a
copy larger than the caches (``dram_bytes_per_s``), the working-set
bandwidth is fitted too, with the overhead: the ``cache_bytes`` (from a grid of
sizes, :data:`CACHE_SIZES`) beyond which every kind's bytes move at most at the
copy's bandwidth, and, when the samples carry the weight bytes of the operator
that wrote their input (``producer_weight_bytes``), the ``spill_weight_bytes``
(from :data:`SPILL_SIZES`, or none) beyond which such an input is read at the
copy's bandwidth too (fitted near the overhead that fits best without it, then
the overhead again). Every machine has a cache of some size, so the term is always
kept then: left to choose "no working set", the fit did so on the few large
elementwise operators of some runs and priced VGG-16's 25 MB activations at
cache speed, 2-3x too fast. Where cache sizes fit the samples equally well (no
sample's working set lies between them; a larger size must lower the loss by
:data:`CACHE_GAIN`), the smallest is kept: beyond the
samples' evidence of cache, bytes are assumed to move at the DRAM's speed; of
spill sizes that fit exactly equally well, the largest (none first). Unlike the
cache size, a spill size needs no least gain: any fall in the loss takes it. A kind's rate is kept only
where it binds (the FLOP term is the larger for some sample), likewise its
bandwidth; the device's memory bandwidth is the fit of the tensor copies
(``cat``, and the copies the executors make for ``flatten`` and
``dropout``); the conv rate is the device's ``flops_per_s``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["COPY_KINDS", "CACHE_SIZES", "SPILL_SIZES", "fit_roofline", "fit_kind"]

#: Kinds that only copy tensors (the executors' kernels clone for flatten and dropout): the memory bandwidth.
COPY_KINDS = ("cat", "flatten", "dropout")
_RATES = np.exp(np.linspace(math.log(1e6), math.log(1e13), 211))
_BANDWIDTHS = np.exp(np.linspace(math.log(1e7), math.log(1e13), 181))
#: How samples are weighed in the fit: by their time to this power (see :func:`fit_kind`). Near 0, so the
#: typical operator is what is fitted; above 0, so a kind's large operators, which make its summed time,
#: count a little more than its many small ones.
WEIGHT_POWER = 0.25
#: Working sets (bytes) the fit tries as the size beyond which a share's bytes move at the DRAM bandwidth.
CACHE_SIZES = (1e6, 2e6, 4e6, 8e6, 16e6, 32e6, 64e6, 128e6)
#: The least relative fall in the fit's loss for which it takes a larger cache size: below it the sizes tie (two
#: runs took 64 MB over 16 MB for a fall of 0.007 %, all of it from the calibration's one operator in between, a
#: 50 MB linear layer measured 9 % faster than the copy, and priced VGG-16's 25 MB ReLUs at cache speed).
CACHE_GAIN = 1e-3
#: Weight bytes the fit tries as the size beyond which an operator's output is read back from DRAM.
SPILL_SIZES = (1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6, 5e6, 1e7, 2e7)
_OVERHEADS = np.concatenate([[0.0], np.exp(np.linspace(math.log(2e-7), math.log(5e-5), 40))])


def fit_kind(flops: np.ndarray, nbytes: np.ndarray, seconds: np.ndarray, overhead: float,
             weight_power: float = WEIGHT_POWER, floor: np.ndarray | None = None) -> tuple[float, float, float]:
    """``(loss, rate, bandwidth)`` minimising Σ w |log(max(F/rate, B/bw, floor) + overhead) - log t| on the grids.

    ``w = t ** weight_power`` (normalised): 0 weighs every operator alike, 1 weighs them by their time.
    ``floor``: per sample, the least seconds its bytes take whatever the kind's bandwidth (the working set's
    DRAM time; default none). Ties go to the largest rate and bandwidth (the least binding ones).
    """
    log_t = np.log(seconds)
    w = seconds ** weight_power
    w = w / w.sum()
    mem = nbytes[None, :] / _BANDWIDTHS[::-1, None]  # bandwidths high -> low
    if floor is not None:
        mem = np.maximum(mem, floor[None, :])
    best = (math.inf, math.inf, math.inf)
    for rate in _RATES[::-1]:  # rates high -> low: ties keep the higher
        pred = np.maximum(flops[None, :] / rate, mem) + overhead
        loss = (np.abs(np.log(pred) - log_t[None, :]) * w[None, :]).sum(1) * len(seconds)
        i = int(loss.argmin())
        if loss[i] < best[0] - 1e-12:
            best = (float(loss[i]), float(rate), float(_BANDWIDTHS[::-1][i]))
        if not flops.any():
            break  # no FLOPs: the rate does not matter
    return best


def _arrays(samples: Sequence[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return (np.array([s["flops"] for s in samples], float), np.array([s["bytes"] for s in samples], float),
            np.array([s["time_s"] for s in samples], float),
            np.array([s.get("producer_weight_bytes", 0.0) for s in samples], float))


def fit_roofline(samples: Sequence[dict], overheads: Sequence[float] | None = None,
                 dram_bytes_per_s: float | None = None) -> dict:
    """The roofline figures of a device from in-context samples (``kind``, ``flops``, ``bytes``, ``time_s``).

    ``kind`` is the operator's pricing kind (``pwconv`` for 1x1 convs). Returns
    ``flops_per_s``, ``kind_flops_per_s``, ``memory_bandwidth_bytes_per_s``,
    ``kind_bytes_per_s``, ``op_overhead_s``, ``cache_bytes``,
    ``dram_bytes_per_s`` and ``spill_weight_bytes`` (the keys of a device config; the
    last three None without ``dram_bytes_per_s``, the bandwidth of a copy beyond
    the caches; ``spill_weight_bytes`` None too when no sample has
    ``producer_weight_bytes`` or when no spill size fits them better than none),
    and ``kinds``: per
    kind the fitted rate and bandwidth, which of them bind, and the sample count.
    """
    by_kind: dict[str, list[dict]] = {}
    for s in samples:
        by_kind.setdefault(str(s["kind"]), []).append(s)
    if "conv" not in by_kind:
        raise ValueError("fit_roofline: no conv sample (the conv rate is the device's flops_per_s)")
    copies = [s for k in COPY_KINDS for s in by_kind.get(k, ())]
    groups = {k: v for k, v in by_kind.items() if k not in COPY_KINDS}
    if copies:
        groups["(copies)"] = copies
    arrays = {k: _arrays(v) for k, v in groups.items()}
    caches: tuple[float | None, ...] = (None,) if dram_bytes_per_s is None else CACHE_SIZES
    memo: dict[tuple[str, float, bytes], tuple[float, float, float]] = {}

    def search(overheads_: Sequence[float], pairs: Sequence[tuple[float | None, float | None]], best=None):
        """The least loss over ``overheads_`` x (cache, spill) ``pairs``; ties keep the earlier."""
        for o in overheads_:
            for size, spill_size in pairs:
                fits = {}
                for k, (f, b, t, p) in arrays.items():
                    floor = None
                    if size is not None:
                        spilled = b > size if spill_size is None else (b > size) | (p > spill_size)
                        floor = np.where(spilled, b / dram_bytes_per_s, 0.0)
                    key = (k, float(o), b"" if floor is None else floor.tobytes())
                    if key not in memo:  # many (cache, spill) pairs leave a kind's floors as they were
                        memo[key] = fit_kind(f, b, t, float(o), floor=floor)
                    fits[k] = memo[key]
                loss = sum(f[0] for f in fits.values())
                need = 1e-9  # a larger cache must earn its place: no sample may say the caches go that far
                if best is not None and size is not None and best[2] is not None and size > best[2]:
                    need = max(need, CACHE_GAIN * best[0])
                if best is None or loss < best[0] - need:
                    best = (loss, float(o), size, spill_size, fits)
        return best

    grid = overheads if overheads is not None else _OVERHEADS
    # the overhead and the cache size (small to large: ties keep the smaller, no sample says the caches go further)
    best = search(grid, [(size, None) for size in caches])
    if best[2] is not None and any("producer_weight_bytes" in s for s in samples):
        # then the spill size with the cache size, at that overhead and the two either side of it (large to small:
        # ties keep the larger, an input has left the caches only where samples say so), and the overhead again
        # with the pair found: the whole grid at once takes minutes
        i = list(grid).index(best[1])
        near = list(grid)[max(0, i - 2):i + 3]
        best = search(near, [(size, spill) for size in caches for spill in SPILL_SIZES[::-1]], best)
        best = search(grid, [(best[2], best[3])], best)
    loss, overhead, cache, spill, fits = best
    dram = None if cache is None else float(dram_bytes_per_s)  # type: ignore[arg-type]
    _, conv_rate, _ = fits["conv"]
    bandwidth = fits["(copies)"][2] if copies else max(f[2] for f in fits.values())
    out: dict = {"flops_per_s": conv_rate, "kind_flops_per_s": {}, "memory_bandwidth_bytes_per_s": bandwidth,
                 "kind_bytes_per_s": {}, "op_overhead_s": overhead, "cache_bytes": cache,
                 "dram_bytes_per_s": dram, "spill_weight_bytes": spill, "kinds": {}}
    for kind, (loss, rate, bw) in sorted(fits.items()):
        flops, nbytes, seconds, _ = arrays[kind]
        rate_binds = bool(np.any(flops / rate >= nbytes / bw)) and bool(flops.any())
        bw_binds = bool(np.any(nbytes / bw > flops / rate))
        out["kinds"][kind] = {"n": int(len(seconds)), "rate": rate, "bandwidth": bw, "rate_binds": rate_binds,
                              "bandwidth_binds": bw_binds, "loss": loss}
        if kind == "(copies)":
            continue
        if kind == "pwconv":  # both figures: left out, it would fall back to the conv's, not to the defaults below
            out["kind_flops_per_s"][kind], out["kind_bytes_per_s"][kind] = rate, bw
            continue
        # what the device would use for a figure left out: it must not bind where the fitted one does not
        if kind != "conv":
            if rate_binds:
                out["kind_flops_per_s"][kind] = rate
            elif np.any(flops / conv_rate > nbytes / bw):
                out["kind_flops_per_s"][kind] = float(np.max(flops * bw / nbytes))  # the least binding rate
        if bw_binds:
            if abs(bw / bandwidth - 1) > 0.05:
                out["kind_bytes_per_s"][kind] = bw
        elif np.any(nbytes / bandwidth > flops / rate):
            out["kind_bytes_per_s"][kind] = float(np.max(nbytes * rate / np.maximum(flops, 1e-300)))
    return out
