"""Reports of a sweep: ``summary.csv``, ``summary.md`` and plots, from the result records only (no torch)."""

from .build import build_report, written_line
from .cli import main
from .load import load_records
from .markdown import markdown_table, summary_markdown, text_table, text_tables
from .paper import paper_counts, paper_latency_table, paper_notes, paper_table
from .plan import plan_rows, plan_table, register_strategy_style, spans
from .stats import gap_breakdown, gap_stats, solver_stats, summary_frame

__all__ = [
    "build_report",
    "gap_breakdown",
    "gap_stats",
    "load_records",
    "main",
    "markdown_table",
    "paper_counts",
    "paper_latency_table",
    "paper_notes",
    "paper_table",
    "plan_rows",
    "plan_table",
    "register_strategy_style",
    "spans",
    "solver_stats",
    "summary_frame",
    "summary_markdown",
    "text_table",
    "text_tables",
    "written_line",
]
