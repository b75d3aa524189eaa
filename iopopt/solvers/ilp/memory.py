"""Memory rows of the ILP: per-device capacities (or a memory budget), and the peak for ``objective: peak_memory``.

Memory (:func:`iopopt.cost.memory_profile`) is linear in the model's
variables: device d needs ``W_d + held_d(p) ≤ cap_d`` at every step p, where
``W_d`` sums its weight shards and ``held_d(p)`` the stored outputs still
awaited at p, the buffers staged for p's inputs and p's own output. ``cap_d``
is the device's capacity, or ``memory_budget_bytes`` when that is smaller.
For the peak-memory objective one more variable ``M`` (MiB) bounds every
device at every step, ``W_d + held_d(p) ≤ M``, and the objective is ``M``.
"""

from __future__ import annotations

import math

from ...compile.terms import terms as cost_terms
from .model import Model, affine, linear

__all__ = ["MIB", "add_memory_rows", "infeasible_report"]

#: Memory rows are written in MiB to keep coefficients moderate.
MIB = float(1 << 20)


def add_memory_rows(pulp, model: Model, memory: str, budget: float | None = None, peak: bool = False) -> None:
    """Capacity rows per (step, device), each device's lower bound on its peak bytes, and the peak rows.

    Devices whose limit (capacity, or ``budget`` when smaller) is infinite get
    no capacity rows; with ``memory: off`` there are none. With ``peak``, the
    variable ``model.peak`` bounds every device at every step.
    """
    problem, prob, x, y, domains = model.problem, model.prob, model.x, model.y, model.domains
    g, t = problem.graph, cost_terms(problem)
    order = g.order
    k = problem.k
    model.caps = [
        min(dev.memory_bytes, budget) if budget is not None else dev.memory_bytes for dev in problem.cluster.devices
    ]
    model.min_need = [0.0] * k
    capped = [d for d in range(k) if math.isfinite(model.caps[d])] if memory != "off" else []
    if not capped and not peak:
        return
    last = {n: g.last_use(n) for n in order}
    in_edges = {n: [(src, n, i) for i, src in enumerate(g[n].inputs)] for n in order}
    # per-device byte tuples, looked up once
    weight = {n: {s: t.node(n, s).weight_bytes for s in domains[n]} for n in order}
    out = {n: {s: t.node(n, s).out_bytes for s in domains[n]} for n in order}
    stage = {e: {sq: t.edge(*e, *sq).staging_bytes for sq in ye} for e, ye in y.items()}
    if peak:
        model.peak = prob.add_variable("peak_mib", lowBound=0)

    for d in range(k):
        cap = model.caps[d]
        rows_for_cap = d in capped
        w_min = sum(min(b[d] for b in weight[n].values()) for n in order)
        w_max = sum(max(b[d] for b in weight[n].values()) for n in order)
        w_var = None
        live: list[str] = []
        need = w_min
        for p, n in enumerate(order):
            sources = [(out[u], x[u]) for u in live] + [(stage[e], y[e]) for e in in_edges[n]] + [(out[n], x[n])]
            lo = sum(min(b[d] for b in table.values()) for table, _ in sources)
            hi = sum(max(b[d] for b in table.values()) for table, _ in sources)
            need = max(need, w_min + lo)
            cap_row = rows_for_cap and (memory == "on" or w_max + hi > cap)
            if cap_row or peak:
                if w_var is None:
                    w_var = prob.add_variable(f"w_{d}", lowBound=0)
                    row = [(b[d] / MIB, x[v][s]) for v in order for s, b in weight[v].items()]
                    row.append((-1.0, linear(w_var)))
                    prob += affine(pulp, row) == 0, f"w_{d}"
                held = [(1.0, linear(w_var))]
                held += [(b[d] / MIB, exprs[key]) for table, exprs in sources for key, b in table.items()]
                if cap_row:
                    prob += affine(pulp, held) <= cap / MIB, f"mem_{p}_{d}"
                    model.memory_rows += 1
                if peak:
                    prob += affine(pulp, held + [(-1.0, linear(model.peak))]) <= 0, f"peak_{p}_{d}"
            if last[n] > p:
                live.append(n)
            live = [u for u in live if last[u] > p]
        model.min_need[d] = need
        if rows_for_cap and need > cap:
            model.hopeless = True


def infeasible_report(problem, model: Model, budget: float | None = None) -> dict:
    """Why no plan fits memory: the devices that cannot, and each device's lower bound on its peak.

    ``binding`` names the constraint: ``memory_budget_bytes`` when the budget
    is what the binding devices' limits are, else ``memory`` (their capacities).
    """
    devs = problem.cluster.devices
    caps = model.caps or [dev.memory_bytes for dev in devs]
    over = [d for d in range(problem.k) if model.min_need[d] > caps[d]]
    lines = {
        devs[d].name: f"needs at least {model.min_need[d]:.0f} B, limit {caps[d]:.0f} B"
        for d in range(problem.k)
        if math.isfinite(caps[d])
    }
    if over:
        names = [devs[d].name for d in over]
        reason = (
            f"device(s) {', '.join(names)} cannot hold even their smallest possible share "
            "of weights and activations"
        )
        binding_devices = over
    else:
        finite = [d for d in range(problem.k) if math.isfinite(caps[d])]
        finite.sort(key=lambda d: -model.min_need[d] / caps[d])
        binding_devices = finite[:2]
        names = [devs[d].name for d in binding_devices]
        reason = (
            "no plan fits all memory limits at once (each device alone could fit); "
            f"tightest: {', '.join(names)}"
        )
    by_budget = budget is not None and all(budget < devs[d].memory_bytes for d in binding_devices)
    if by_budget:
        reason = f"memory_budget_bytes={budget:.0f}: {reason}"
    return {
        "reason": reason,
        "binding": ["memory_budget_bytes" if by_budget else "memory"],
        "binding_devices": names,
        "memory_lower_bounds": lines,
    }
