"""Channel splits of the op kinds whose channels are not simply their input's: grouped convs and channel ranges.

A grouped conv is split by whole groups (DESIGN §2): group g goes to the
device that holds most of its input channels under the input's canonical
split (ties: the lower device), so a grouped conv whose input is channel-split
already keeps almost every channel where it is. A ``split`` node (channels
``[start, stop)`` of its input) keeps each device's own channels of that range.
"""

from __future__ import annotations

from collections.abc import Collection

from ..model.graph import OpNode
from ..model.layouts import ChannelBlocks, Intervals

__all__ = ["merge", "group_blocks", "restrict"]


def merge(ivs: Collection[tuple[int, int]]) -> Intervals:
    """Sorted, merged intervals (empty ones dropped)."""
    out: list[list[int]] = []
    for a, b in sorted(ivs):
        if a == b:
            continue
        if out and out[-1][1] == a:
            out[-1][1] = b
        else:
            out.append([a, b])
    return tuple((a, b) for a, b in out)


def group_blocks(op: OpNode, in_blocks: ChannelBlocks) -> tuple[ChannelBlocks, ChannelBlocks]:
    """Per device, (input channels, output channels) of the groups a grouped conv gives it.

    ``in_blocks`` is the canonical channel split of the conv's input; each
    group goes to the device holding most of its input channels.
    """
    groups = op.params["groups"]
    cin, cout = op.in_shapes[0][1], op.out_shape[1]
    ig, og = cin // groups, cout // groups
    k = len(in_blocks)
    held = [[0] * k for _ in range(groups)]
    for d, ivs in enumerate(in_blocks):
        for a, b in ivs:
            for g in range(a // ig, (b - 1) // ig + 1):
                held[g][d] += min(b, (g + 1) * ig) - max(a, g * ig)
    ins: list[list[tuple[int, int]]] = [[] for _ in range(k)]
    outs: list[list[tuple[int, int]]] = [[] for _ in range(k)]
    for g in range(groups):
        d = max(range(k), key=lambda e: (held[g][e], -e))
        ins[d].append((g * ig, (g + 1) * ig))
        outs[d].append((g * og, (g + 1) * og))
    return tuple(merge(iv) for iv in ins), tuple(merge(iv) for iv in outs)


def restrict(blocks: ChannelBlocks, start: int, stop: int) -> ChannelBlocks:
    """Each device's channels of ``[start, stop)``, renumbered from 0."""
    out = []
    for ivs in blocks:
        cut = [(max(a, start) - start, min(b, stop) - start) for a, b in ivs if min(b, stop) > max(a, start)]
        out.append(merge(cut))
    return tuple(out)
