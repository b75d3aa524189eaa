"""``cluster=profiled`` and ``network=profiled``: configs read from an ``iopopt profile`` directory.

A cluster or network config with a ``profile`` key (``latest``, or a
profile directory or one of its files) stands for the ``cluster.yaml`` /
``network.yaml`` that profile wrote; its other keys override what the file
says (``name``, ``host``, ``split`` of a cluster), and ``count: N`` makes a
cluster of N devices like the profiled one (N machines like this one; ranks
that share this machine's cores are measured by ``iopopt profile --devices N``).
"""

from __future__ import annotations

from typing import Any

from .configs import ConfigError

__all__ = ["PROFILED_KEYS", "from_profile"]

#: Keys of a config that reads a profile (beyond the keys it overrides).
PROFILED_KEYS = frozenset({"profile", "count"})


def from_profile(group: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """The ``group`` config (``cluster`` or ``network``) that ``cfg['profile']`` names, with ``cfg``'s keys over it."""
    from omegaconf import OmegaConf

    from ..studies.profile.presets import resolve_profile

    cfg = dict(cfg)
    value = cfg.pop("profile")
    count = cfg.pop("count", None) if group == "cluster" else None
    try:
        where = resolve_profile(value)
    except FileNotFoundError as exc:
        raise ConfigError(f"{group}.profile {exc}") from None
    path = where / f"{group}.yaml"
    if not path.is_file():
        raise ConfigError(f"{group}.profile {str(value)!r}: {path} is missing; run `iopopt profile` again")
    tree = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    assert isinstance(tree, dict)
    if count is not None:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigError(f"cluster.count must be a positive integer (devices like the profiled one), "
                              f"got {count!r}")
        first = dict(tree["devices"][0])
        base = str(first.get("name") or "d")
        tree["devices"] = [dict(first, name=f"{base}_{i}") for i in range(count)]
    tree.update({k: v for k, v in cfg.items() if v is not None})
    return tree
