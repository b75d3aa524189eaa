"""Seeded synthetic CNNs (:mod:`iopopt.frontend.synthetic`), kept importable as ``iopopt.synthetic``."""

from .frontend.synthetic import KINDS, SyntheticCNN, random_cnn

__all__ = ["KINDS", "SyntheticCNN", "random_cnn"]
