"""Where an operator came from: its module (matched by ``isinstance``), its source line, its node name.

The exported graph records, for every operator, the stack of modules it ran
in (``nn_module_stack``, outermost first) and the Python stack that called it
(``stack_trace``). The innermost module is resolved with ``get_submodule``
and matched by ``isinstance``, so a library's subclass of ``BatchNorm2d`` or a
user's subclass of ``Conv2d`` counts as what it derives from. The source line
is the innermost frame outside torch itself (frames of model libraries such
as torchvision are kept).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

__all__ = ["LEAF_MODULES", "Failure", "module_of", "source_of", "Names", "report"]

#: Modules whose forward is one operator: a node inside one of these is named after it
#: (``layer1.0.conv1`` → ``layer1_0_conv1``, as torch.fx names module calls).
LEAF_MODULES: tuple[type[nn.Module], ...] = (
    nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm,
    nn.ReLU, nn.ReLU6, nn.Sigmoid, nn.Tanh, nn.GELU, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.LeakyReLU,
    nn.Mish, nn.ELU, nn.Hardtanh, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
    nn.modules.dropout._DropoutNd, nn.Flatten, nn.Upsample, nn.Identity,
)

_TORCH_DIR = str(Path(torch.__file__).parent) + os.sep
_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<fn>\S+)')


def module_of(root: nn.Module, node) -> tuple[str, nn.Module | None]:
    """The innermost module ``node`` ran in: (qualified path, module); ("", root) for the root."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "", root
    path = list(stack.values())[-1][0]
    try:
        return path, root.get_submodule(path)
    except AttributeError:
        return path, None


def source_of(node) -> str:
    """``file:line: code`` of the innermost frame outside torch's own package ("" when unknown)."""
    trace = node.meta.get("stack_trace") or ""
    lines = trace.splitlines()
    found = ""
    for i, ln in enumerate(lines):
        m = _FRAME.search(ln)
        if m is None or m["file"].startswith(_TORCH_DIR):
            continue
        code = lines[i + 1].strip() if i + 1 < len(lines) and not _FRAME.search(lines[i + 1]) else ""
        found = f"{_short(m['file'])}:{m['line']}" + (f": {code}" if code else "")
    return found


def _short(path: str) -> str:
    marker = f"site-packages{os.sep}"
    if marker in path:
        return path.split(marker, 1)[1]
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive
        return path


class Names:
    """Unique node names in torch.fx's style: a module call is named after its path, a function after itself."""

    def __init__(self):
        self.taken: set[str] = set()

    def make(self, candidate: str) -> str:
        base = re.sub(r"\W", "_", candidate) or "op"
        if base[0].isdigit():
            base = "_" + base
        name, i = base, 0
        while name in self.taken:
            i += 1
            name = f"{base}_{i}"
        self.taken.add(name)
        return name


@dataclass(frozen=True)
class Failure:
    """One operator :func:`iopopt.trace` cannot represent."""

    op: str
    node: str
    reason: str
    module: str
    module_type: str
    source: str

    @property
    def where(self) -> str:
        return f"{self.node} in {self.module or '<root>'} ({self.module_type})"


def report(model: str, failures: list[Failure]) -> str:
    """Every failure of one model, grouped by operator (in order of first appearance).

    Within an operator, nodes with the same reason and source line share one
    entry (a model's twelve identical blocks give one entry of twelve nodes),
    which still names each node and its module.
    """
    groups: dict[str, dict[tuple[str, str], list[Failure]]] = {}
    for f in failures:
        groups.setdefault(f.op, {}).setdefault((f.reason, f.source), []).append(f)
    kinds = len(groups)
    out = [
        f"{model}: {len(failures)} operator(s) iopopt cannot partition, {kinds} kind(s) "
        "(every one is listed; see DESIGN §2 for the supported operators):"
    ]
    for op, entries in groups.items():
        n = sum(len(fs) for fs in entries.values())
        out.append(f"  {op} ({n} node{'s' if n > 1 else ''}):")
        for (reason, source), fs in entries.items():
            out.append(f"    - {reason}" + (f"\n      at {source}" if source else ""))
            out.append("      " + ("node " if len(fs) == 1 else f"{len(fs)} nodes: ") + "; ".join(f.where for f in fs))
    return "\n".join(out)
