"""The problem model: operator graphs, devices and clusters, networks, layouts, problems and plans.

This layer imports nothing else of iopopt (and not torch): every other stage
builds on it.
"""

from .cluster import SPLIT_POLICIES, Cluster, Device, split_counts
from .graph import (
    CHANNELWISE_KINDS,
    GROUPED_KINDS,
    HEAVY_KINDS,
    JOIN_KINDS,
    MIXING_KINDS,
    WEIGHTED_KINDS,
    WINDOWED_KINDS,
    OpGraph,
    OpKind,
    OpNode,
)
from .layouts import (
    STRATEGIES,
    Dist,
    InapplicableStrategy,
    Layout,
    Region,
    Strategy,
    base_strategy,
    check_strategy,
    edge_feasible,
    full_region,
    halo_rows,
    input_layout,
    output_layout,
    placement,
    placement_name,
    strategies_for,
    subset,
)
from .network import NETWORKS, Message, NetworkModel, SharedNetwork, SwitchedNetwork, make_network
from .problem import InvalidPlan, Plan, Problem

__all__ = [
    "CHANNELWISE_KINDS",
    "GROUPED_KINDS",
    "HEAVY_KINDS",
    "JOIN_KINDS",
    "MIXING_KINDS",
    "NETWORKS",
    "SPLIT_POLICIES",
    "STRATEGIES",
    "WEIGHTED_KINDS",
    "WINDOWED_KINDS",
    "Cluster",
    "Device",
    "Dist",
    "InapplicableStrategy",
    "InvalidPlan",
    "Layout",
    "Message",
    "NetworkModel",
    "OpGraph",
    "OpKind",
    "OpNode",
    "Plan",
    "Problem",
    "Region",
    "SharedNetwork",
    "Strategy",
    "SwitchedNetwork",
    "check_strategy",
    "edge_feasible",
    "full_region",
    "halo_rows",
    "input_layout",
    "make_network",
    "output_layout",
    "placement",
    "placement_name",
    "split_counts",
    "strategies_for",
    "subset",
    "base_strategy",
]
