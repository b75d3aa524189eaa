"""The cost model: latency, traffic, messages, memory and energy of a plan (DESIGN §4)."""

from .energy import DeviceEnergy, energy, energy_profile, power_increments
from .evaluate import CostReport, DeviceMemory, OpCost, evaluate, evaluate_program, latency
from .memory import memory_profile

__all__ = [
    "CostReport",
    "DeviceEnergy",
    "DeviceMemory",
    "OpCost",
    "energy",
    "energy_profile",
    "evaluate",
    "evaluate_program",
    "latency",
    "memory_profile",
    "power_increments",
]
