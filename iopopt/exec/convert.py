"""The model copy verification runs: converted to the dtype it computes in, in eval mode, the caller's untouched."""

from __future__ import annotations

import copy
from collections import OrderedDict
from functools import cache

import torch
from torch import nn

__all__ = ["converted_copy"]


def converted_copy(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A copy of ``module`` in eval mode, its floating-point parameters and buffers in ``dtype``.

    What ``copy.deepcopy(module).to(dtype).eval()`` gives, without its double
    work: every module is copied, every buffer copied once (converted on the
    way), every parameter converted once -- and a parameter already in
    ``dtype`` is not copied at all: the copy's parameter shares its storage,
    read only (verification runs the model in eval mode under ``no_grad`` and
    only ever reads or slices weights). Buffers are always copied, since some
    modules update buffers in their forward. The caller's module is not
    touched.
    """
    memo: dict[int, object] = {}
    for t in module.parameters():
        if id(t) not in memo:
            c = t.detach()
            if c.is_floating_point() and c.dtype != dtype:
                c = c.to(dtype)
            memo[id(t)] = nn.Parameter(c, requires_grad=t.requires_grad)
    for t in module.buffers():
        if id(t) not in memo:
            c = t.detach()
            memo[id(t)] = c.to(dtype, copy=True) if c.is_floating_point() else c.clone()
    return _copy_module(module, memo).eval()


#: Attribute values a deep copy returns as they are.
_ATOMS = (int, float, bool, str, type(None), torch.dtype, torch.device)


@cache
def _plain_module(cls: type) -> bool:
    """Whether ``cls`` copies as plain ``nn.Module`` does: all its state in ``__dict__``, given to ``__setstate__``."""
    return (
        getattr(cls, "__deepcopy__", None) is None
        and cls.__reduce_ex__ is object.__reduce_ex__
        and cls.__reduce__ is object.__reduce__
        and cls.__getstate__ is nn.Module.__getstate__
        and not any("__slots__" in vars(c) for c in cls.__mro__)
    )


def _copy_module(m: nn.Module, memo: dict[int, object]) -> nn.Module:
    """``copy.deepcopy(m, memo)`` for a module tree, without its per-object overhead where that is safe.

    A module of a class that copies and pickles as plain ``nn.Module`` does
    gets a new object whose attributes are those of ``m`` deep-copied --
    immutable values (and tuples of them) kept as they are, empty containers
    new, submodules copied the same way, parameters and buffers taken from
    ``memo``; any other module goes through ``copy.deepcopy`` (with the same memo).
    """
    if id(m) in memo:
        return memo[id(m)]  # type: ignore[return-value]
    cls = type(m)
    if not _plain_module(cls):
        return copy.deepcopy(m, memo)
    new = cls.__new__(cls)
    memo[id(m)] = new
    state = {}
    for name, value in m.__dict__.items():
        if name == "_modules":
            state[name] = type(value)((n, None if c is None else _copy_module(c, memo)) for n, c in value.items())
        elif name in ("_parameters", "_buffers"):
            state[name] = type(value)((n, None if t is None else memo[id(t)]) for n, t in value.items())
        elif isinstance(value, _ATOMS) or (type(value) is tuple and all(isinstance(v, _ATOMS) for v in value)):
            state[name] = value
        elif type(value) in (dict, OrderedDict, set, list) and not value:
            state[name] = type(value)()
        else:
            state[name] = copy.deepcopy(value, memo)
    state.pop("_compiled_call_impl", None)  # as nn.Module.__getstate__ drops it
    new.__setstate__(state)  # as copy.deepcopy does (a class may fill in defaults there)
    return new
