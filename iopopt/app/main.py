"""The Hydra application: ``iopopt`` and ``python -m iopopt``.

One job = one solver on one instance (``study: single``), or a study job
over many (``study: grid``, ``gap``, ``fidelity``; one record per solve in
``instances.jsonl``). Every job writes ``result.json`` into its Hydra output
directory; a job whose solver or verification raises is recorded with
``termination: error`` and the sweep goes on. Configuration mistakes (model
inputs of the wrong shape included) exit with status 2 and one line on
stderr; a single run that fails or ends with no plan exits with status 1.
``iopopt show RESULT`` prints a plan layer by layer, ``iopopt profile``
measures this machine, ``iopopt --version`` prints iopopt's version.

Examples
--------
``iopopt model=resnet18 cluster=rpi4_x4 network=wifi_50mbps solver=greedy_iop verify=true``

``iopopt -m experiment=paper``
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import sys
import threading

import hydra
from omegaconf import DictConfig

from .._interrupts import APP_INTERRUPTED
from ..solvers.registry import CONF_DIR
from .configs import ConfigError
from .context import JobContext
from .jobs import config_error_record, run
from .overrides import check_overrides
from .plugins import register_entry_point_solvers

__all__ = ["main", "version_line"]


#: ``iopopt NAME [...]``: the module whose ``main(argv)`` runs it (imported once interrupts are handled).
_SUBCOMMANDS = {
    "profile": "..studies.profile",  # measure this machine
    "opfit": "..studies.opfit",  # per-op prediction vs measurement
    "show": "..report.show",  # the plan of a result.json, layer by layer
}


def _subcommand(name: str, argv: list[str]) -> int:
    import importlib

    register_entry_point_solvers()  # solvers of other packages become options of the solver group
    return importlib.import_module(_SUBCOMMANDS[name], __package__).main(argv)


#: Studies whose record is a measurement summary, not one plan: completed without a latency is a success.
_PLANLESS_STUDIES = ("fidelity", "paper_measured")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _task(cfg: DictConfig) -> float:
    """The Hydra task function: one job."""
    ctx = JobContext.from_hydra()
    try:
        rec = run(cfg, ctx)
    except ConfigError as exc:
        if ctx.multirun:  # one bad value fails its own job, as an error record; the sweep goes on
            config_error_record(cfg, ctx, exc)
            return math.nan
        print(f"iopopt: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:  # a full disk, a read-only folder: one line, not a traceback
        from .outdirs import write_error_line

        print(f"iopopt: {write_error_line(exc)}", file=sys.stderr)
        sys.exit(1)
    no_plan = rec["latency_s"] is None and rec.get("study") not in _PLANLESS_STUDIES
    if not ctx.multirun and (rec["termination"] == "error" or no_plan):
        sys.exit(1)  # a failed run, or one that ends with no plan, is a failed command; in a sweep the others go on
    # the metric a sweeper (e.g. Optuna) would minimise; NaN marks a job without a plan
    return rec["latency_s"] if rec["latency_s"] is not None else math.nan


def version_line() -> str:
    """``iopopt 0.2.0 (hydra-core 1.3.8, torch 2.13.0, Python 3.11.7)`` without importing torch."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from .._version import __version__

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    return (f"iopopt {__version__} (hydra-core {installed('hydra-core')}, torch {installed('torch')}, "
            f"Python {platform.python_version()})")


def _hydra_args(argv: list[str]):
    """``argv`` read by Hydra's own parser, or None when it does not parse (a bad option, or --version: Hydra
    reports it when it parses the same line)."""
    from hydra._internal.utils import get_args_parser

    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            return get_args_parser().parse_args(argv)
    except SystemExit:
        return None


def _command_line_overrides(args) -> list[str] | None:
    """The overrides of a command line read by :func:`_hydra_args`, or None when there are none ours to check
    (a line that does not parse, another config via ``--config-name``/``--config-path``/``--config-dir``, a
    rerun, shell completion)."""
    if args is None:
        return None
    if args.config_name or args.config_path or args.config_dir or args.experimental_rerun or args.shell_completion:
        return None
    return list(args.overrides)


def main(cfg: DictConfig | None = None) -> float | None:
    """Entry point of the ``iopopt`` console script and ``python -m iopopt``.

    Checks the command-line overrides first (an unknown group option or key
    exits with status 2 and one line naming it and the valid choices), then
    runs the Hydra application. ``main(cfg)`` runs one job on a composed
    config and returns its ``latency_s`` (NaN without a plan), like the Hydra
    task function does for a sweeper.
    """
    if cfg is not None:
        register_entry_point_solvers()  # solvers of other packages become options of the solver group
        return _task(cfg)
    if len(sys.argv) > 1 and sys.argv[1] in _SUBCOMMANDS:  # `iopopt profile|opfit|show [...]`
        sys.exit(interruptible(f"iopopt {sys.argv[1]}", _subcommand, sys.argv[1], sys.argv[2:]))
    return interruptible("iopopt", _cli)  # an interrupt while the overrides are checked is one line too


def _cli() -> float | None:
    register_entry_point_solvers()  # solvers of other packages become options of the solver group
    if "--version" in sys.argv[1:]:  # iopopt's version, not Hydra's
        print(version_line())
        sys.exit(0)
    if os.getcwd() not in sys.path and "" not in sys.path:
        # `python -m iopopt` imports from the current directory; the console script should too
        # (model=custom model.target=my_pkg.nets.build with my_pkg in the current directory)
        sys.path.insert(0, os.getcwd())
    args = _hydra_args(sys.argv[1:])
    modes = _hydra_modes(args)
    if len(modes) > 1:  # Hydra would raise a ValueError with a traceback
        hint = "; to see a sweep's composed config, drop -m: iopopt experiment=paper --cfg job" \
            if "-m/--multirun" in modes else ""
        print(f"iopopt: {' and '.join(modes)} cannot be given together (Hydra runs one mode: "
              f"{', '.join(_HYDRA_MODES)}){hint}", file=sys.stderr)
        sys.exit(2)
    overrides = _command_line_overrides(args)
    if overrides:
        try:
            check_overrides(overrides, CONF_DIR)
        except ConfigError as exc:
            print(f"iopopt: configuration error: {exc}", file=sys.stderr)
            sys.exit(2)
    from .._lifecycle import watch_joblib_workers

    watch_joblib_workers()  # a sweep's joblib workers end when this process dies, even by SIGKILL
    return _task()


#: Hydra's run modes; a command line may ask for one of them.
_HYDRA_MODES = ("-r/--run", "-m/--multirun", "-c/--cfg", "-i/--info", "-sc/--shell-completion")


def _hydra_modes(parsed) -> list[str]:
    """The Hydra run modes a command line read by :func:`_hydra_args` asks for (abbreviations, ``-cjob``,
    ``--cfg=job`` alike); none when the line does not parse (Hydra then reports it).

    >>> modes = lambda argv: _hydra_modes(_hydra_args(argv))
    >>> modes(["-m", "experiment=paper", "--cfg", "hydra"]), modes(["--cfg=job", "model=vgg16"])
    (['-m/--multirun', '-c/--cfg'], ['-c/--cfg'])
    >>> modes(["-r", "--multi", "model=-m"]), modes(["-cjob", "-i"])
    (['-r/--run', '-m/--multirun'], ['-c/--cfg', '-i/--info'])
    """
    if parsed is None:
        return []
    asked = (parsed.run, parsed.multirun, bool(parsed.cfg), parsed.info is not None,
             bool(parsed.shell_completion))
    return [name for name, on in zip(_HYDRA_MODES, asked) if on]


def interruptible(prog: str, fn, *args):
    """``fn(*args)``; SIGINT or SIGTERM end it with one line, no child process and no temporary file left.

    Exit status 130 after SIGINT, 143 after SIGTERM (128 + the signal), as a
    shell reports a process killed by them. Results already written stay.
    """
    import signal

    from .._lifecycle import Terminated, end_descendants, remove_stale_temp_dirs, terminate_as_exception

    previous = signal.getsignal(signal.SIGTERM)
    terminate_as_exception()
    try:
        return fn(*args)
    except (KeyboardInterrupt, Terminated) as exc:
        name, status = ("SIGINT", 130) if isinstance(exc, KeyboardInterrupt) else ("SIGTERM", 143)
        left = end_descendants()
        remove_stale_temp_dirs()
        tail = f"; processes {left} did not end" if left else ""
        print(APP_INTERRUPTED.format(prog=prog, name=name) + tail, file=sys.stderr)
        sys.exit(status)
    finally:
        if previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)  # a caller's own handler (main() run in-process, tests)
