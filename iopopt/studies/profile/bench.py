"""Micro-benchmarks of this machine: a conv set (solo and with ranks at once), per-op overhead, gloo ping-pong."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "CONV_SET",
    "PING_SIZES",
    "bench_convs",
    "op_overhead",
    "fit_network",
    "aggregate",
]


#: (label, C_in, C_out, kernel, stride, padding, H_in) at batch 1: FLOPs = 2·C_out·H_out·W_out·C_in·k².
CONV_SET = (
    ("stem 3->64 k7 s2 @112", 3, 64, 7, 2, 3, 112),
    ("alexnet conv2 64->192 k5 @27", 64, 192, 5, 1, 2, 27),
    ("resnet 64->64 k3 @56", 64, 64, 3, 1, 1, 56),
    ("resnet 128->128 k3 @28", 128, 128, 3, 1, 1, 28),
    ("resnet 256->256 k3 @14", 256, 256, 3, 1, 1, 14),
    ("resnet 512->512 k3 @7", 512, 512, 3, 1, 1, 7),
    ("bottleneck 256->64 k1 @56", 256, 64, 1, 1, 0, 56),
    ("small 16->32 k3 @32", 16, 32, 3, 1, 1, 32),
)
PING_SIZES = (4, 64, 1024, 16384, 65536, 262144, 1 << 20, 4 << 20)


def _median_time(fn, repeats: int, warmup: int = 2, min_time_s: float = 0.0) -> float:
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_time_s:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if len(times) > 1000:
            break
    return statistics.median(times)


def _conv_flops(cin: int, cout: int, k: int, s: int, p: int, h: int) -> int:
    """FLOPs of one square conv of :data:`CONV_SET` at batch 1 (2·MACs, as :mod:`iopopt.graph` counts)."""
    ho = (h + 2 * p - k) // s + 1
    return 2 * cout * ho * ho * cin * k * k


def bench_convs(repeats: int = 5, convs=CONV_SET) -> list[dict]:
    """Median time and FLOP/s of every conv of ``convs`` (float32, current thread count)."""
    gen = torch.Generator().manual_seed(0)
    rows = []
    with torch.inference_mode():
        for label, cin, cout, k, s, p, h in convs:
            x = torch.randn(1, cin, h, h, generator=gen)
            w = torch.randn(cout, cin, k, k, generator=gen)
            b = torch.randn(cout, generator=gen)
            flops = _conv_flops(cin, cout, k, s, p, h)
            t = _median_time(lambda: F.conv2d(x, w, b, s, p), repeats)
            rows.append({"op": label, "flops": flops, "time_s": t, "flops_per_s": flops / t})
    return rows


def aggregate(rows: Sequence[dict]) -> float:
    """Σ FLOPs / Σ time: the throughput of running the whole set once."""
    return sum(r["flops"] for r in rows) / sum(r["time_s"] for r in rows)


def op_overhead(repeats: int = 200) -> dict:
    """Median time of tiny operators run through :func:`iopopt.kernels.compute` (seconds)."""
    from ...exec import kernels
    from ...frontend.capture import trace
    from ...model.layouts import full_region

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 1, 1)
            self.bn = torch.nn.BatchNorm2d(1)
            self.relu = torch.nn.ReLU()
            self.pool = torch.nn.MaxPool2d(1)

        def forward(self, x):
            y = self.pool(self.relu(self.bn(self.conv(x))))
            return y + x

    module = Tiny().eval()
    g = trace(module, (1, 1, 2, 2))
    x = torch.zeros(1, 1, 2, 2)
    out = {}
    with torch.inference_mode():
        for op in g:
            if op.kind in ("input", "output"):
                continue
            shard = kernels.weight_shard(op, "host", 0, None, module, host=0)
            n_in = len(op.inputs)
            region = full_region(op.out_shape)
            args = ([x] * n_in, [full_region(s) for s in op.in_shapes], region, shard)
            out[op.kind] = _median_time(lambda: kernels.compute(op, "host", 0, *args), repeats, warmup=20)
    out["median"] = statistics.median(out.values())
    return out


# -- ranks ----------------------------------------------------------------------------------------


#: The conv each rank runs between two messages in the loaded-exchange benchmark (~1 ms at 1 thread).
_LOADED_CONV = (32, 48, 96)
_LOADED_BYTES = 12288
#: Rounds of the ring exchange; its figure is the median of the rounds' means. One round's mean moves by a factor
#: of up to 5 between rounds seconds apart on a shared virtual machine (0.26-1.54 ms seen on 2026-12-03).
EXCHANGE_ROUNDS = 5


def _throughput_loop(seconds: float, convs=CONV_SET) -> float:
    """Run the conv set over and over for ``seconds`` of wall time; FLOPs per wall second."""
    gen = torch.Generator().manual_seed(4)
    cases = []
    for _, cin, cout, k, s, p, h in convs:
        cases.append((torch.randn(1, cin, h, h, generator=gen), torch.randn(cout, cin, k, k, generator=gen), s, p,
                      _conv_flops(cin, cout, k, s, p, h)))
    flops = 0
    start = time.perf_counter()
    with torch.inference_mode():
        while time.perf_counter() - start < seconds:
            for x, w, s, p, f in cases:
                F.conv2d(x, w, None, s, p)
                flops += f
    return flops / (time.perf_counter() - start)


def _ring_exchange(rank: int, n: int, iters: int, compute: bool) -> float:
    """Ranks < n: (conv, then send to rank+1 and receive from rank-1) ``iters`` times; mean exchange seconds."""
    import torch.distributed as dist

    c, h, w_ = _LOADED_CONV
    x = torch.randn(1, c, h, w_)
    w = torch.randn(c, c, 3, 3)
    send = torch.randn(_LOADED_BYTES // 4)
    times = []
    with torch.inference_mode():
        for i in range(iters + 5):
            if compute:
                F.conv2d(x, w, None, 1, 1)
            t = time.perf_counter()
            recv = torch.empty(_LOADED_BYTES // 4)
            a = dist.isend(send, (rank + 1) % n, tag=i)
            b = dist.irecv(recv, (rank - 1) % n, tag=i)
            a.wait()
            b.wait()
            if i >= 5:
                times.append(time.perf_counter() - t)
    return statistics.mean(times)


def _rank_bench(rank: int, world: int, sizes, reps: int, conv_seconds: float, exchange_iters: int, where):
    """Ping-pong between ranks 0 and 1; then, for n = 2 and n = world ranks at once: conv throughput
    (wall-clock FLOP/s over ``conv_seconds``) and the time of a ring exchange of 12 KiB messages, with and
    without a ~1 ms conv on every rank between two exchanges: the median over ``EXCHANGE_ROUNDS`` rounds of
    the mean over ``exchange_iters`` exchanges (each round's mean kept too). Idle ranks wait at the barriers."""
    import torch.distributed as dist

    result = {"rank": rank, "throughput": {}, "exchange_loaded": {}, "exchange_idle": {}, "exchange_loaded_rounds": {},
              "exchange_idle_rounds": {}}
    pair = dist.new_group([0, 1]) if world > 2 else None  # collective: every rank creates it
    dist.barrier()
    if rank < 2 and world >= 2:
        where.text = "ping-pong"
        peer = 1 - rank
        pp = {}
        for size in sizes:
            n = max(size // 4, 1)
            buf = torch.zeros(n)
            times = []
            count = reps if size < (1 << 20) else max(reps // 2, 5)
            for i in range(count + 3):
                # a barrier between round trips: without it the two ranks drift in and out of phase and
                # about half the round trips hit a gloo handshake that costs milliseconds (see network_yaml)
                dist.barrier(group=pair)
                t = time.perf_counter()
                if rank == 0:
                    dist.isend(buf, peer, tag=1).wait()
                    dist.irecv(buf, peer, tag=2).wait()
                else:
                    dist.irecv(buf, peer, tag=1).wait()
                    dist.isend(buf, peer, tag=2).wait()
                if i >= 3:
                    times.append(time.perf_counter() - t)
            pp[n * 4] = statistics.median(times) / 2
        result["pingpong"] = pp
    for n in sorted({min(2, world), world}):
        dist.barrier()
        where.text = f"conv throughput with {n} ranks at once"
        if rank < n:
            result["throughput"][n] = _throughput_loop(conv_seconds)
        for compute, key in ((False, "exchange_idle"), (True, "exchange_loaded")):
            dist.barrier()
            where.text = f"ring exchange with {n} ranks (compute={compute})"
            if rank < n and n >= 2:
                rounds = [_ring_exchange(rank, n, exchange_iters, compute) for _ in range(EXCHANGE_ROUNDS)]
                result[key][n] = statistics.median(rounds)
                result[f"{key}_rounds"][n] = rounds
    dist.barrier()
    return result


def fit_network(pingpong: dict[int, float]) -> tuple[float, float, list[dict]]:
    """Fit one-way time = α + b/B (least squares on relative error); returns (α, B, per-size rows)."""
    import numpy as np

    sizes = np.array(sorted(pingpong), dtype=float)
    t = np.array([pingpong[int(s)] for s in sizes])
    # minimise Σ ((α + β·s − t) / t)²: a weighted linear least squares
    a = np.stack([np.ones_like(sizes), sizes], 1) / t[:, None]
    (alpha, beta), *_ = np.linalg.lstsq(a, np.ones_like(t), rcond=None)
    if alpha <= 0:  # fall back to the smallest message's time
        alpha = float(t[0])
    if beta <= 0:
        beta = float((t[-1] - alpha) / sizes[-1]) if t[-1] > alpha else 1e-12
    rows = []
    for s, ti in zip(sizes, t):
        pred = alpha + beta * s
        rows.append({"bytes": int(s), "one_way_s": float(ti), "fit_s": float(pred), "rel_err": float(pred / ti - 1)})
    return float(alpha), float(1.0 / beta), rows
