"""Plan families (:mod:`iopopt.space.plans`), kept importable as ``iopopt.plans``."""

from .space.plans import PLAN_KINDS, all_host, all_oc, alternating, build_plan, coedge, draw_plan, random_plan

__all__ = ["all_host", "all_oc", "coedge", "alternating", "random_plan", "draw_plan", "PLAN_KINDS", "build_plan"]
