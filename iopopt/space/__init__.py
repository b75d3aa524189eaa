"""Decision spaces: the IOP pairs and base plans the greedy searches, and the plan families."""

from .pairs import BASES, PAIR_STRATEGIES, Pair, apply_pairs, base_plan, candidate_pairs, conflicts
from .plans import PLAN_KINDS, all_host, all_oc, alternating, build_plan, coedge, draw_plan, random_plan

__all__ = [
    "BASES",
    "PAIR_STRATEGIES",
    "PLAN_KINDS",
    "Pair",
    "all_host",
    "all_oc",
    "alternating",
    "apply_pairs",
    "base_plan",
    "build_plan",
    "candidate_pairs",
    "coedge",
    "conflicts",
    "draw_plan",
    "random_plan",
]
