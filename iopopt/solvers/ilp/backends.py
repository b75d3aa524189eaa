"""PuLP backends of the ILP: construction, honest status and bound, quiet output."""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import warnings
from pathlib import Path

from ..base import SolverError
from .model import Model

__all__ = ["check_backend", "make_backend", "read_log", "limit_and_bound", "unscale", "quiet_stdout"]


def check_backend(pulp, name: str) -> None:
    available = pulp.listSolvers(onlyAvailable=True)
    if name not in available:
        known = "unknown to PuLP" if name not in pulp.listSolvers() else "not available here"
        raise SolverError(f"ilp: backend {name!r} is {known}; available: {available}")


class _SubprocessDyingWithParent:
    """``subprocess`` as PuLP's CBC driver sees it: every ``Popen`` child gets ``PR_SET_PDEATHSIG``.

    A CBC solve outlives a parent killed with SIGKILL otherwise (PuLP starts
    it with a plain ``Popen`` and offers no hook).
    """

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        return getattr(self._module, name)

    def Popen(self, *args, **kwargs):  # the name PuLP calls
        from ..._lifecycle import die_with_parent

        if os.name == "posix" and kwargs.get("preexec_fn") is None:
            kwargs["preexec_fn"] = die_with_parent
        return self._module.Popen(*args, **kwargs)


def _cbc_dies_with_parent(pulp) -> None:
    coin_api = getattr(getattr(pulp, "apis", None), "coin_api", None)
    sub = getattr(coin_api, "subprocess", None)
    if sub is not None and not isinstance(sub, _SubprocessDyingWithParent):
        coin_api.subprocess = _SubprocessDyingWithParent(sub)


def make_backend(pulp, s, tmp: Path, warm_start: bool = False, presolve: bool = True):
    """The PuLP solver of settings ``s`` (backend, limits, threads), its temporary files in ``tmp``;
    ``presolve=False`` turns HiGHS's presolve off."""
    _cbc_dies_with_parent(pulp)
    common = dict(msg=bool(s.msg), timeLimit=s.time_limit_s, gapRel=s.gap_rel, threads=s.threads)
    if s.backend in ("PULP_CBC_CMD", "COIN_CMD"):
        common["warmStart"] = warm_start  # the variables' initial values (Model.warm_start) as CBC's first incumbent
        common["msg"] = False  # the log goes to a file, parsed for the bound and printed when msg is set
        with warnings.catch_warnings():
            # PuLP 3.3 announces PULP_CBC_CMD's removal in 4.0; the bundled CBC is what we have today
            warnings.filterwarnings("ignore", message="PULP_CBC_CMD is deprecated", category=DeprecationWarning)
            solver = pulp.getSolver(s.backend, keepFiles=False, logPath=str(tmp / "backend.log"), **common)
    elif s.backend == "HiGHS":
        common.pop("msg")
        # memory rows are in MiB: one byte over a capacity is 1e-6 of a unit, within HiGHS's default tolerances
        options = {} if presolve else {"presolve": "off"}
        solver = _highs_class(pulp)(msg=bool(s.msg), gapAbs=0.0, warm_start=warm_start,
                                    mip_feasibility_tolerance=1e-9, primal_feasibility_tolerance=1e-9, **options,
                                    **common)
    else:
        try:
            solver = pulp.getSolver(s.backend, **common)
        except TypeError:  # a backend that takes fewer options
            solver = pulp.getSolver(s.backend, msg=bool(s.msg), timeLimit=s.time_limit_s)
    if hasattr(solver, "tmpDir"):
        solver.tmpDir = str(tmp)  # private temp files: parallel jobs never clash
    return solver


_HIGHS: dict = {}


def _highs_class(pulp):
    """PuLP's in-process ``HiGHS`` with the model passed in bulk (arrays, not a call per column and row)
    and the variables' initial values as a first incumbent (``warm_start``), as CBC gets them."""
    if "cls" in _HIGHS:
        return _HIGHS["cls"]
    import highspy
    import numpy as np

    class BulkHiGHS(pulp.HiGHS):
        def __init__(self, *args, warm_start: bool = False, **kwargs):
            super().__init__(*args, **kwargs)
            self.warm_start = warm_start

        def buildSolverModel(self, lp):
            h, inf = lp.solverModel, highspy.kHighsInf
            columns = lp.variables()
            for i, var in enumerate(columns):
                var.index = i
            sign = -1.0 if lp.sense == pulp.LpMaximize else 1.0
            cost = np.zeros(len(columns))
            for var, coef in lp.objective.items():
                cost[var.index] = sign * coef
            lower = np.array([-inf if v.lowBound is None else v.lowBound for v in columns], dtype=float)
            upper = np.array([inf if v.upBound is None else v.upBound for v in columns], dtype=float)
            h.addCols(len(columns), cost, lower, upper, 0, np.zeros(0, np.int32), np.zeros(0, np.int32),
                      np.zeros(0))
            ints = np.array([v.index for v in columns if v.cat == pulp.LpInteger], dtype=np.int32)
            if len(ints) and self.mip:
                h.changeColsIntegrality(len(ints), ints, np.full(len(ints), 1, dtype=np.uint8))  # kInteger
            starts, index, value, row_lo, row_hi = [], [], [], [], []
            for i, row in enumerate(lp._constraints.values()):
                row.index = i
                starts.append(len(index))
                for var, coef in row.items():
                    if coef != 0:
                        index.append(var.index)
                        value.append(coef)
                lo, hi = row.getLb(), row.getUb()
                row_lo.append(-inf if lo is None else lo)
                row_hi.append(inf if hi is None else hi)
            if starts:
                h.addRows(len(starts), np.array(row_lo, dtype=float), np.array(row_hi, dtype=float), len(index),
                          np.array(starts, dtype=np.int32), np.array(index, dtype=np.int32),
                          np.array(value, dtype=float))
            if self.warm_start and len(ints):
                # the integer variables' start values; HiGHS completes the continuous ones itself
                start = np.array([columns[i].varValue or 0.0 for i in ints], dtype=float)
                h.setSolution(len(ints), ints, start)

        def callSolver(self, lp):
            # in a thread of highspy's, waited for in short steps: Ctrl-C and SIGTERM (raised in this, the main
            # thread) cancel the solve through HiGHS's interrupt callbacks and end it within moments, as they
            # end a CBC subprocess (a plain `run` would hold them until the solve ends)
            h = lp.solverModel
            h.HandleUserInterrupt = True
            h.startSolve()
            try:
                while not h.wait(0.1)[0]:
                    pass
            except BaseException:
                h.cancelSolve()
                h.wait()
                raise

    _HIGHS["cls"] = BulkHiGHS
    return BulkHiGHS


def read_log(tmp: Path) -> str:
    path = tmp / "backend.log"
    return path.read_text(errors="replace") if path.exists() else ""


_FLOAT = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"


def limit_and_bound(pulp, prob, backend: str, log: str) -> tuple[bool | None, float | None]:
    """(stopped by a limit? None when unknown, best bound in objective units or None)."""
    if backend == "HiGHS":
        import highspy

        h = prob.solverModel
        status = h.getModelStatus()
        stopped = status in (
            highspy.HighsModelStatus.kTimeLimit,
            highspy.HighsModelStatus.kIterationLimit,
            highspy.HighsModelStatus.kInterrupt,
        )
        bound = h.getInfo().mip_dual_bound
        return stopped, (bound if math.isfinite(bound) else None)
    if backend in ("PULP_CBC_CMD", "COIN_CMD") and log:
        result = re.search(r"^Result - (.*)$", log, re.M)
        stopped = bool(result and result.group(1).startswith("Stopped"))
        m = re.search(r"^Lower bound:\s*" + _FLOAT, log, re.M)
        bound = float(m.group(1)) if m else None
        if bound is None and result and result.group(1).startswith("Optimal"):
            m = re.search(r"^Objective value:\s*" + _FLOAT, log, re.M)
            bound = float(m.group(1)) if m else None
        return stopped, bound
    return None, None


def unscale(bound: float | None, model: Model) -> float | None:
    """A backend's bound (objective units, without the constant) in seconds."""
    if bound is None:
        return None
    return (bound + model.offset) / model.scale


@contextlib.contextmanager
def quiet_stdout(quiet: bool):
    """Silence the process's stdout (file descriptor 1) while ``quiet``.

    highspy prints its banner from C++ whatever ``msg`` says; a sweep of many
    solves would otherwise log it once per job.
    """
    if not quiet:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
