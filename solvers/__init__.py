"""Solver plugins: one module per solver family, each configured by ``conf/solver/NAME.yaml``."""
