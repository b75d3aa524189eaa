"""Executors: run a compiled Program with torch, device by device, and check it.

``regions`` (a device's dense part of a tensor), ``kernels`` (one device's
share of one operator), ``assemble`` (the resharding assembler both executors
share, each with its own transport), ``simulated`` (k isolated stores in one process),
``convert`` (the model copy in the dtype verification computes in), ``verify``
(against the unsplit model and the cost model) and
``distributed`` (one process per device over torch.distributed).
"""
