"""Names and figures the report uses: reference solvers, the paper's reported ranges, table layout."""

from __future__ import annotations

REFERENCE = "ilp"
BASELINE = "coedge"
GREEDY = "greedy_iop"
#: The exact optimum of the greedy's decision space (base plan + disjoint IOP pairs).
PAIRS = "ilp_pairs"
#: A solver is "optimal" on an instance when its latency is within this relative tolerance of the reference's.
OPTIMAL_RTOL = 1e-9
#: The models the paper evaluates; the paper table lists only these.
PAPER_MODELS = ("alexnet", "vgg16", "resnet18")
#: Who reported the paper's figures; every place that shows them says so.
PAPER_SOURCE = "Liu et al. 2024 (paper's figures)"
#: The paper's reported reductions vs CoEdge (fractions): latency and peak memory, lowest and highest.
PAPER_LATENCY_RANGE = (0.0639, 0.1683)
PAPER_MEMORY_RANGE = (0.2122, 0.4998)
PAPER_LATENCY = "6.39–16.83%"
PAPER_MEMORY = "21.22–49.98%"
#: The reported figures of the paper, shown beside ours and labelled as the paper's.
PAPER_CLAIM = (
    f"{PAPER_SOURCE}: 6.39%–16.83% lower latency and 21.22%–49.98% lower peak memory vs CoEdge "
    "(their testbed, not our cost model)"
)
#: What a latency below the reference means (summary.md and the terminal).
BELOW_REF_NOTE = (
    "A reference is optimal only over its own decision space, so a solver whose plan lies outside that space "
    "can beat it: `ilp_pairs` searches the base plan plus disjoint IOP pairs, so `single` (everything on one "
    "device), `oc` or `ilp` plans are not in its space and may be faster. `ilp` searches every strategy of "
    "every node within each device's memory (fused stacks only with the cluster's `fused_depth`), so only a plan "
    "that exceeds a device's memory (`*`), or a `deepthings` plan when fused stacks are not in its space, should "
    "beat it."
)
#: Solvers whose plans split the layers across the devices (for the "single fastest" note).
COOPERATIVE = ("coedge", "deepthings", "oc", "greedy_iop", "ilp_pairs")
#: Terminal tables are kept at most this wide (wider ones are split by columns).
TEXT_WIDTH = 120
#: Solvers in this order first in tables; others follow alphabetically.
SOLVER_ORDER = (
    "single", "offload", "deepthings", "coedge", "oc", "best_uniform", "random", "greedy_iop", "ilp_pairs", "ilp",
    "dp", "brute",
)
#: The colour of each shipped solver in every plot (others get one from a small palette).
SOLVER_COLORS = {
    "single": "#7f7f7f",
    "offload": "#393b79",
    "deepthings": "#637939",
    "coedge": "#ff7f0e",
    "oc": "#2ca02c",
    "best_uniform": "#bcbd22",
    "random": "#17becf",
    "greedy_iop": "#d62728",
    "ilp_pairs": "#9467bd",
    "ilp": "#1f77b4",
    "dp": "#8c564b",
    "brute": "#e377c2",
}
_MAX_INSTANCE_ROWS = 60
_COLUMNS = (
    "instance", "model", "cluster", "network", "solver", "termination", "latency_s", "compute_s", "comm_s",
    "bytes_sent", "messages", "peak_memory_bytes", "energy_j", "lower_bound_s", "solver_time_s", "objective",
    "objective_name", "bound", "gap",
    "k", "split", "network_kind", "bandwidth_bytes_per_s", "n_nodes", "total_flops", "study", "verify_passed",
    "verify_max_abs_err", "error", "source", "over_memory",
)
