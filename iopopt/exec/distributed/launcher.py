"""Process management of local runs: spawn k ranks, rendezvous on loopback, collect results or end them all."""

from __future__ import annotations

import contextlib
import os
import pickle
import queue as queue_mod
import socket
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch

from .types import DistributedError, _Where

__all__ = ["launch", "find_free_port"]


def find_free_port(addr: str = "127.0.0.1") -> int:
    """A TCP port free on ``addr`` right now (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((addr, 0))
        return s.getsockname()[1]


def _port_free(addr: str, port: int) -> str | None:
    """None when ``port`` can be bound on ``addr``, else the OS error text."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((addr, port))
        except OSError as exc:
            return str(exc)
    return None


def _loopback_ifname() -> str | None:
    try:
        names = [n for _, n in socket.if_nameindex()]
    except OSError:  # pragma: no cover
        return None
    for cand in ("lo", "lo0"):
        if cand in names:
            return cand
    return None


def _is_loopback(addr: str) -> bool:
    return addr in ("localhost", "::1") or addr.startswith("127.")


def _resolve_ifname(ifname: str | None, addr: str) -> str | None:
    """``auto``: the loopback interface when ``addr`` is a loopback address, else None (gloo picks)."""
    if ifname == "auto":
        return _loopback_ifname() if _is_loopback(addr) else None
    return ifname


def _listen_socket(addr: str, port: int) -> int:
    """A socket bound to ``addr:port`` only (not every interface); its file descriptor, now owned by the caller."""
    infos = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM)
    family, _, _, _, sockaddr = sorted(infos, key=lambda i: i[0] != socket.AF_INET)[0]  # IPv4 first
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(sockaddr)
    except OSError:
        s.close()
        raise
    return s.detach()


def _store(rank: int, world: int, addr: str, port: int, timeout_s: float):
    """The rendezvous store: rank 0 serves it, the others connect; both give up after ``timeout_s``.

    Rank 0 on a loopback address listens on that address only (torch's own
    TCPStore server would listen on every interface). A client whose server
    accepts but never answers would wait for ever inside torch: it connects
    in a helper thread that is abandoned at the deadline.
    """
    import threading

    import torch.distributed as dist

    timeout = timedelta(seconds=timeout_s)
    if rank == 0:
        fd = _listen_socket(addr, port) if _is_loopback(addr) else None
        return dist.TCPStore(addr, port, world, True, timeout, wait_for_workers=True, multi_tenant=False,
                             master_listen_fd=fd)
    box: dict[str, Any] = {}

    def connect() -> None:
        try:
            box["store"] = dist.TCPStore(addr, port, world, False, timeout)
        except BaseException as exc:  # handed to the waiting thread
            box["error"] = exc

    t = threading.Thread(target=connect, name="iopopt-rendezvous", daemon=True)
    t.start()
    t.join(timeout_s + 0.5)  # torch's own connect timeout, then a margin for its last retry
    if "error" in box:
        raise box["error"]
    if "store" not in box:
        raise RuntimeError(f"timed out: no answer from a rendezvous server at {addr}:{port}")
    return box["store"]


def _init_group(rank: int, world: int, addr: str, port: int, timeout_s: float, ifname: str | None, where: _Where):
    import torch.distributed as dist

    if ifname:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", ifname)
    where.text = f"rendezvous at {addr}:{port}"
    try:
        store = _store(rank, world, addr, port, timeout_s)
        dist.init_process_group("gloo", store=store, rank=rank, world_size=world, timeout=timedelta(seconds=timeout_s))
    except Exception as exc:
        msg = str(exc)
        if "EADDRINUSE" in msg or "address already in use" in msg.lower():
            raise RuntimeError(f"master_port {port} on {addr} is in use: {msg.splitlines()[0]}") from exc
        if "timed out" in msg.lower() or "timeout" in msg.lower():
            raise RuntimeError(
                f"rendezvous at {addr}:{port} did not complete within timeout_s={timeout_s:g} s: {msg.splitlines()[0]}"
            ) from exc
        raise


def _worker(rank: int, world: int, addr: str, port: int, threads, ifname, timeout_s, fn, payload: bytes, q,
            rank_setup: Callable[[int], None] | None = None) -> None:
    """Spawned process: init the process group, run ``fn(rank, world, *args, where)``, report on ``q``."""
    where = _Where()
    from ..._lifecycle import watch_parent

    watch_parent()  # a rank ends on its own when the launching process is killed
    try:
        if rank_setup is not None:  # e.g. the testbed: join this rank's cgroup and network namespace first
            where.text = "rank setup"
            rank_setup(rank)
            where.text = "start"
        if threads:
            torch.set_num_threads(int(threads))
            with contextlib.suppress(RuntimeError):  # already set
                torch.set_num_interop_threads(1)
        args = pickle.loads(payload)
        if addr is not None:
            _init_group(rank, world, addr, port, timeout_s, ifname, where)
        result = fn(rank, world, *args, where)
        where.text = "shutting down"
        if addr is not None:
            import torch.distributed as dist

            dist.barrier()
            dist.destroy_process_group()
        q.put(("ok", rank, time.time(), pickle.dumps(result)))
        q.close()
        q.join_thread()
    except BaseException as exc:  # report, flush, and leave at once (peers are killed by the parent)
        try:
            q.put(("error", rank, time.time(), where.text, f"{type(exc).__name__}: {exc}", traceback.format_exc()))
            q.close()
            q.join_thread()
        finally:
            os._exit(1)


def _kill_all(procs, grace_s: float) -> list[int]:
    """Terminate, then kill, every live process; returns the pids still alive afterwards."""
    procs = [p for p in procs if p.pid is not None]  # started ones
    deadline = time.monotonic() + grace_s
    for p in procs:
        if p.is_alive():
            p.join(timeout=max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=2.0)
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join(timeout=5.0)
    return [p.pid for p in procs if p.is_alive()]


def _timeout_hint(message: str, timeout_s: float) -> str:
    low = message.lower()
    if ("timed out" in low or "timeout" in low) and "timeout_s" not in message:
        return f" (a peer did not answer within timeout_s={timeout_s:g} s)"
    return ""


def launch(
    fn: Callable,
    k: int,
    args: tuple = (),
    *,
    threads: int | None = 1,
    timeout_s: float = 60.0,
    run_timeout_s: float | None = None,
    master_addr: str = "127.0.0.1",
    master_port: int | None = None,
    ifname: str | None = "auto",
    init_group: bool = True,
    rank_setup: Callable[[int], None] | None = None,
) -> list:
    """Run ``fn(rank, k, *args, where)`` in ``k`` spawned processes; their return values by rank.

    ``fn`` must be an importable top-level function; ``args`` are pickled
    once (by value: every process gets its own copy of every tensor). With
    ``init_group`` each process joins a gloo process group first (rendezvous
    at ``master_addr:master_port``, a free port when None). Any failure ends
    every process and raises one :class:`DistributedError`. ``rank_setup``
    (picklable) runs first in each process with its rank, before anything
    else (the testbed places the rank in its cgroup and namespace).
    """
    import multiprocessing as mp

    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"launch: k must be a positive integer, got {k!r}")
    ifname = _resolve_ifname(ifname, master_addr)
    payload = pickle.dumps(tuple(args), protocol=pickle.HIGHEST_PROTOCOL)
    auto_port = master_port is None
    attempts = 3 if auto_port and init_group else 1
    for attempt in range(attempts):
        port = find_free_port(master_addr) if auto_port else int(master_port)
        if init_group and not auto_port:
            busy = _port_free(master_addr, port)
            if busy is not None:
                raise DistributedError(
                    f"master_port {port} on {master_addr} is in use ({busy}); choose another master_port "
                    "or leave it unset to pick a free one",
                    setting="master_port",
                )
        try:
            return _launch_once(fn, k, payload, threads, timeout_s, run_timeout_s,
                                master_addr if init_group else None, port, ifname, mp, rank_setup)
        except DistributedError as exc:
            if auto_port and attempt + 1 < attempts and exc.setting == "master_port":
                continue  # lost a race for the free port: try another one
            raise
    raise AssertionError("unreachable")  # pragma: no cover


#: Process ids of the ranks of the latest :func:`launch` (tests check none survives).
last_pids: list[int] = []


def _launch_once(fn, k, payload, threads, timeout_s, run_timeout_s, addr, port, ifname, mp, rank_setup=None) -> list:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [
        ctx.Process(
            target=_worker,
            args=(r, k, addr, port, threads, ifname, timeout_s, fn, payload, q),
            kwargs={"rank_setup": rank_setup},
            name=f"iopopt-rank{r}",
            daemon=True,
        )
        for r in range(k)
    ]
    results: dict[int, Any] = {}
    errors: list[tuple] = []
    deadline = None if run_timeout_s is None else time.monotonic() + run_timeout_s
    ok = False
    try:
        last_pids.clear()
        for p in procs:
            p.start()
            last_pids.append(p.pid)
        while len(results) < k and not errors:
            try:
                msg = q.get(timeout=0.2)
            except queue_mod.Empty:
                dead = [r for r, p in enumerate(procs) if r not in results and not p.is_alive()]
                if dead:
                    try:  # its report may still be in flight
                        msg = q.get(timeout=1.0)
                    except queue_mod.Empty:
                        r = dead[0]
                        raise DistributedError(
                            f"rank {r} exited with code {procs[r].exitcode} without reporting a result "
                            "(crashed or killed)",
                            rank=r,
                        ) from None
                elif deadline is not None and time.monotonic() > deadline:
                    missing = [r for r in range(k) if r not in results]
                    raise DistributedError(
                        f"the run did not finish within run_timeout_s={run_timeout_s:g} s "
                        f"(ranks {missing} still running)",
                        setting="run_timeout_s",
                    ) from None
                else:
                    continue
            if msg[0] == "ok":
                results[msg[1]] = msg[3]
            else:
                errors.append(msg)
        if errors:
            # collect for a moment: the root cause is the earliest failure (peers fail after it)
            end = time.monotonic() + 0.5
            while time.monotonic() < end:
                try:
                    msg = q.get(timeout=0.1)
                except queue_mod.Empty:
                    continue
                if msg[0] == "error":
                    errors.append(msg)
            _, r, _, where, text, tb = min(errors, key=lambda m: m[2])
            reported = {m[1] for m in errors} | set(results)
            crashed = [d for d, p in enumerate(procs) if d not in reported and not p.is_alive() and p.exitcode]
            if crashed:  # a rank that died silently is the cause of its peers' connection errors
                c = crashed[0]
                raise DistributedError(
                    f"rank {c} exited with code {procs[c].exitcode} without reporting a result (crashed or "
                    f"killed); then rank {r} failed at {where}: {text.splitlines()[0] if text else ''}",
                    rank=c,
                    remote_traceback=tb,
                )
            setting = "master_port" if "master_port" in text else ("timeout_s" if "timed out" in text.lower() else None)
            raise DistributedError(
                f"rank {r} failed at {where}: {text}{_timeout_hint(text, timeout_s)}",
                rank=r,
                setting=setting,
                remote_traceback=tb,
            )
        ok = True
    finally:
        alive = _kill_all(procs, grace_s=10.0 if ok else 0.0)
        q.close()
        if ok:
            q.join_thread()
        else:
            q.cancel_join_thread()
        if alive:
            raise DistributedError(f"could not end rank processes {alive}")
    return [pickle.loads(results[r]) for r in range(k)]
