"""Killed runs leave nothing behind; the rendezvous listens on loopback only.

Each test starts a real run as a subprocess (its own session, so a failing
test can still end it), waits until the interesting children exist, signals
the parent and then checks with ``/proc``: no process of the run alive 5 s
later, no ``iopopt-ilp-*`` folder left, finished results intact.

A long ILP solve is stood in for by a fake ``cbc`` on ``PATH``
(``solver.backend=COIN_CMD`` runs whatever ``cbc`` PuLP finds there), which
sleeps instead of solving: the real CBC finishes the small test models too
quickly to be caught mid-solve.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from iopopt._lifecycle import descendants, remove_stale_temp_dirs

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

BIN = Path(sys.executable).parent


def _fake_cbc(tmp_path: Path) -> Path:
    fake = tmp_path / "bin"
    fake.mkdir()
    cbc = fake / "cbc"
    cbc.write_text("#!/bin/sh\nexec sleep 60\n")
    cbc.chmod(0o755)
    return fake


def _env(tmp_path: Path, fake_bin: Path | None = None) -> dict:
    env = dict(os.environ)
    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    env["TMPDIR"] = str(tmp)
    if fake_bin is not None:
        env["PATH"] = f"{fake_bin}{os.pathsep}{env['PATH']}"
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def _start(cmd: list[str], env: dict, tmp_path: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=open(tmp_path / "out.txt", "w"),
                            stderr=open(tmp_path / "err.txt", "w"), start_new_session=True)


def _wait_until(cond, timeout_s: float, proc: subprocess.Popen | None = None, tmp_path: Path | None = None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            err = (tmp_path / "err.txt").read_text()[-2000:] if tmp_path else ""
            pytest.fail(f"the run ended early (status {proc.returncode}): {err}")
        time.sleep(0.1)
    pytest.fail("timed out waiting for the run to get going")


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _alive(pids) -> list[int]:
    """Those of ``pids`` still running (zombies do not count)."""
    out = []
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_bytes()
        except OSError:
            continue
        if stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3] != b"Z":
            out.append(pid)
    return out


def _ilp_dirs(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "tmp").glob("iopopt-ilp-*"))


def _gone_within(pids, seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _alive(pids)


def _finish(proc: subprocess.Popen, pids) -> None:
    """Whatever happened, end the run's session and its children (a failing test leaves nothing)."""
    for pid in [proc.pid, *pids]:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=10)


def _signal_and_check(proc, sig, tmp_path, expect_status):
    """Send ``sig`` to the parent; the run's processes must be gone within 5 s. Returns the parent's stderr."""
    tree = descendants(proc.pid)
    assert tree, "the run has no children to check"
    t0 = time.monotonic()
    os.kill(proc.pid, sig)
    try:
        status = proc.wait(timeout=15)
        left = _gone_within(tree, max(0.0, 5.0 - (time.monotonic() - t0)))
        assert not left, f"alive 5 s after {sig.name}: {[(p, _comm(p)) for p in left]}"
    finally:
        _finish(proc, tree)
    if expect_status is not None:
        assert status == expect_status, (tmp_path / "err.txt").read_text()[-2000:]
    return (tmp_path / "err.txt").read_text()


_SLOW = pytest.mark.slow  # each variant costs a few CPU-seconds of process start-up: the default suite keeps one


@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=_SLOW),
                                 pytest.param(signal.SIGKILL, marks=_SLOW)], ids=lambda s: s.name)
def test_killed_ilp_solve_ends_cbc_and_removes_its_files(tmp_path, sig):
    env = _env(tmp_path, _fake_cbc(tmp_path))
    proc = _start([str(BIN / "iopopt"), "model=tiny_chain", "solver=ilp", "solver.backend=COIN_CMD",
                   f"hydra.run.dir={tmp_path / 'run'}"], env, tmp_path)
    _wait_until(lambda: any(_comm(p) == "sleep" for p in descendants(proc.pid)), 60, proc, tmp_path)
    assert _ilp_dirs(tmp_path), "the solve's temporary folder should exist while it runs"
    expected = {signal.SIGTERM: 143, signal.SIGINT: 130, signal.SIGKILL: -signal.SIGKILL}[sig]
    err = _signal_and_check(proc, sig, tmp_path, expected)
    if sig == signal.SIGKILL:
        # nothing of the parent ran: the next solve's clean-up removes the folder the dead process left
        import tempfile

        stale = _ilp_dirs(tmp_path)
        assert stale
        try:
            tempfile.tempdir = str(tmp_path / "tmp")
            removed = remove_stale_temp_dirs(("iopopt-ilp-",))
        finally:
            tempfile.tempdir = None
        assert sorted(removed) == stale and not _ilp_dirs(tmp_path)
    else:
        assert not _ilp_dirs(tmp_path), "temporary files left"
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert "Traceback" not in err and lines[-1].startswith(f"iopopt: interrupted by {sig.name}"), err


@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGKILL, marks=_SLOW)], ids=lambda s: s.name)
def test_killed_joblib_sweep_ends_its_workers(tmp_path, sig):
    env = _env(tmp_path, _fake_cbc(tmp_path))
    sweep = tmp_path / "sweep"
    proc = _start([str(BIN / "iopopt"), "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                   "model=tiny_chain", "solver=ilp", "solver.backend=COIN_CMD,PULP_CBC_CMD",
                   "hydra.callbacks.report.plots=false", f"hydra.sweep.dir={sweep}"], env, tmp_path)
    # job 1 (the real CBC) finishes; job 0's worker sits in its fake CBC
    _wait_until(lambda: (sweep / "1" / "result.json").exists()
                and any(_comm(p) == "sleep" for p in descendants(proc.pid)), 90, proc, tmp_path)
    before = (sweep / "1" / "result.json").read_text()
    err = _signal_and_check(proc, sig, tmp_path, 143 if sig == signal.SIGTERM else -signal.SIGKILL)
    assert (sweep / "1" / "result.json").read_text() == before
    assert json.loads(before)["termination"] == "optimal"
    if sig == signal.SIGTERM:
        assert not _ilp_dirs(tmp_path), "temporary files left"
        assert "Traceback" not in err and "interrupted by SIGTERM" in err, err
    else:  # the worker removed its own folder before leaving
        assert not _ilp_dirs(tmp_path), "the worker should have removed its temporary folder"


def _listening(pids) -> list[tuple[str, int]]:
    """(local address, port) of every listening TCP socket held by ``pids``."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
        except OSError:
            continue
    out = []
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] != "0A" or f[9] not in inodes:  # 0A: LISTEN
                continue
            hexaddr, port = f[1].split(":")
            out.append((_addr(hexaddr, v6), int(port, 16)))
    return out


def _addr(hexaddr: str, v6: bool) -> str:
    import ipaddress

    raw = bytes.fromhex(hexaddr)
    # /proc prints each 32-bit word in host (little-endian) order
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(raw if v6 else raw[:4]))


def _is_loopback(addr: str) -> bool:
    import ipaddress

    ip = ipaddress.ip_address(addr)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGKILL, marks=_SLOW)], ids=lambda s: s.name)
@pytest.mark.parametrize("master_addr", [None, pytest.param("127.0.0.1", marks=_SLOW)], ids=["default", "MASTER_ADDR"])
def test_distributed_run_listens_on_loopback_only_and_ends_its_ranks(tmp_path, sig, master_addr):
    env = _env(tmp_path)
    if master_addr:
        env["MASTER_ADDR"] = master_addr
    proc = _start([sys.executable, "-m", "iopopt.distributed", "--model", "tiny_chain", "--plan", "alternating",
                   "--ranks", "2", "--repeats", "100000"], env, tmp_path)

    def ranks_running():
        tree = descendants(proc.pid)
        # both ranks up and exchanging: every rank holds gloo's sockets and rank 0 the store's
        return tree if len(_listening(tree)) >= 3 and "running 2 ranks" in (tmp_path / "out.txt").read_text() else None

    tree = _wait_until(ranks_running, 90, proc, tmp_path)
    time.sleep(0.5)
    tree = descendants(proc.pid)
    sockets = _listening([proc.pid, *tree])
    try:
        assert sockets and all(_is_loopback(a) for a, _ in sockets), sockets
    except AssertionError:
        _finish(proc, tree)
        raise
    err = _signal_and_check(proc, sig, tmp_path, 143 if sig == signal.SIGTERM else -signal.SIGKILL)
    if sig == signal.SIGTERM:
        assert "Traceback" not in err and "interrupted by SIGTERM" in err, err


def _silent_server():
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(8)  # accepts (the kernel does) but never answers
    return s


def test_rank_pointed_at_a_silent_port_gives_up_at_its_timeout(tmp_path):
    server = _silent_server()
    env = _env(tmp_path)
    env.update(RANK="1", WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(server.getsockname()[1]))
    try:
        out = subprocess.run([sys.executable, "-c", _TIMED_CLI, "--model", "tiny_chain", "--plan", "alternating",
                              "--ranks", "2", "--timeout", "2"], env=env, cwd=tmp_path, capture_output=True,
                             text=True, timeout=120)
    finally:
        server.close()
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert out.returncode == 1, out.stderr
    assert len(lines) == 2 and "Traceback" not in out.stderr, out.stderr
    assert "rendezvous" in lines[0] and "timeout_s=2" in lines[0], lines[0]
    waited = float(lines[1].split()[1])
    assert 1.9 <= waited <= 2.0 + 2.0, lines  # its --timeout, and a margin for a loaded machine


# the CLI, with the time from the first line printed (the settings) to its end on stderr's last line
_TIMED_CLI = """
import sys, time, builtins
from iopopt.app.distributed import main
start = []
_print = builtins.print
def timed(*a, **k):
    if k.get('file') is None:
        start.append(time.monotonic())
    _print(*a, **k)
builtins.print = timed
sys.argv[0] = 'python -m iopopt.distributed'
status = main(sys.argv[1:])
_print(f"waited {time.monotonic() - start[-1]:.2f}", file=sys.stderr)
sys.exit(status)
"""


def test_busy_master_port_is_one_line(tmp_path):
    import socket

    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    env = _env(tmp_path)
    env.update(RANK="0", WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(busy.getsockname()[1]))
    try:
        out = subprocess.run([sys.executable, "-m", "iopopt.distributed", "--model", "tiny_chain", "--plan",
                              "alternating", "--ranks", "2", "--timeout", "5"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
    finally:
        busy.close()
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert out.returncode == 1 and len(lines) == 1, out.stderr
    assert f"master_port {env['MASTER_PORT']}" in lines[0] and "in use" in lines[0], lines


def _loky_workers(pids) -> list[int]:
    out = []
    for pid in pids:
        with contextlib.suppress(OSError):
            if b"popen_loky_posix" in Path(f"/proc/{pid}/cmdline").read_bytes():
                out.append(pid)
    return out


def test_sigkilled_sweep_ends_a_worker_that_never_got_a_job(tmp_path):
    """loky starts ``n_jobs`` workers at once; one job leaves one of two idle. After a SIGKILL of the sweep
    both end on their own within 5 s (an idle worker used to wait for loky's 300 s idle timeout)."""
    env = _env(tmp_path, _fake_cbc(tmp_path))
    proc = _start([str(BIN / "iopopt"), "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                   "model=tiny_chain", "solver=ilp", "solver.backend=COIN_CMD", "hydra.callbacks.report.plots=false",
                   f"hydra.sweep.dir={tmp_path / 'sweep'}"], env, tmp_path)

    def one_busy_one_idle():
        tree = descendants(proc.pid)
        workers = _loky_workers(tree)
        busy = [w for w in workers if any(_comm(p) == "sleep" for p in descendants(w))]
        return tree if len(workers) == 2 and len(busy) == 1 else None

    _wait_until(one_busy_one_idle, 90, proc, tmp_path)
    time.sleep(1.0)  # the idle worker is past its start-up
    _signal_and_check(proc, signal.SIGKILL, tmp_path, -signal.SIGKILL)


#: a progress line of ``iopopt profile`` ("iopopt profile: 2/10 stage (...), 22 s")
_PROGRESS = re.compile(r"iopopt profile: \d+/\d+ stage")


def test_interrupted_profile_is_one_line(tmp_path):
    """``iopopt profile`` (like ``opfit`` and ``show``) ends on SIGINT while measuring with one line (after its
    progress lines) and status 130."""
    out = tmp_path / "profile"
    proc = _start([str(BIN / "iopopt"), "profile", "--no-network", "--out", str(out)], _env(tmp_path), tmp_path)
    try:
        # measuring: its first stage has begun, so every import is done (0.5 s after torch loaded, on a slow
        # machine, the signal once landed inside numpy's import, which left numpy half-initialised)
        _wait_until(lambda: _PROGRESS.search((tmp_path / "err.txt").read_text()), 120, proc, tmp_path)
        assert proc.poll() is None, "the profile ended before the signal"
        os.kill(proc.pid, signal.SIGINT)
        status = proc.wait(timeout=30)
    finally:
        _finish(proc, [])
    err = (tmp_path / "err.txt").read_text()
    lines = [ln for ln in err.splitlines() if ln.strip() and not _PROGRESS.search(ln)]
    assert status == 130 and "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("iopopt profile: interrupted by SIGINT"), lines
    assert not out.exists() or not list(out.glob(".*.tmp*")), "a partial file left"
