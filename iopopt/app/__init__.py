"""The Hydra application (``iopopt``, ``python -m iopopt``): the only layer that sees ``DictConfig``."""

from .main import main

__all__ = ["main"]
