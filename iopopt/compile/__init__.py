"""Plan → Program: reshardings, the per-problem cost terms solvers read, and the compiled Program."""

from .program import Program, Step, compile_plan
from .reshard import Resharding, Transfer, blocks, reshard
from .terms import CostTerms, NodeTerm, terms

__all__ = [
    "CostTerms",
    "NodeTerm",
    "Program",
    "Resharding",
    "Step",
    "Transfer",
    "blocks",
    "compile_plan",
    "reshard",
    "terms",
]
