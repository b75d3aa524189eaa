"""The cost model: latency, traffic, messages and memory of a plan (DESIGN §4)."""

from .evaluate import CostReport, DeviceMemory, OpCost, evaluate, evaluate_program, latency
from .memory import memory_profile

__all__ = ["CostReport", "DeviceMemory", "OpCost", "evaluate", "evaluate_program", "latency", "memory_profile"]
