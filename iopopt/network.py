"""Network models (:mod:`iopopt.model.network`), kept importable as ``iopopt.network``."""

from .model.network import NETWORKS, Message, NetworkModel, SharedNetwork, SwitchedNetwork, make_network

__all__ = ["Message", "NetworkModel", "SharedNetwork", "SwitchedNetwork", "NETWORKS", "make_network"]
