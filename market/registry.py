"""Named plug-ins: mechanisms, bid strategies and agent populations, looked up by name.

Built-ins and third-party packages register through entry-point groups
(`gpumarket.mechanisms`, `gpumarket.strategies`, `gpumarket.populations`,
`gpumarket.tenant_policies`); code can also
`register` directly (tests, notebooks). Nothing is imported until a name is asked for.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from typing import Any

GROUPS = ("mechanisms", "strategies", "populations", "tenant_policies")

_registered: dict[str, dict[str, Any]] = {group: {} for group in GROUPS}


_SINGULAR = {"mechanisms": "mechanism", "strategies": "strategy", "populations": "population",
             "tenant_policies": "tenant policy"}


class UnknownName(ValueError):
    """A scenario or command named a plug-in that no package provides."""


def _check_group(group: str) -> None:
    if group not in GROUPS:
        raise ValueError(f"registry group: expected one of {', '.join(GROUPS)}, got {group!r}")


def register(group: str, name: str, obj: Any) -> None:
    """Make `obj` available as `name` in `group`, taking precedence over entry points."""
    _check_group(group)
    _registered[group][name] = obj


@cache
def _entry_points(group: str) -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=f"gpumarket.{group}")}


def names(group: str) -> list[str]:
    """Every name known in `group`, sorted."""
    _check_group(group)
    return sorted(set(_registered[group]) | set(_entry_points(group)))


def load(group: str, name: str) -> Any:
    """The object registered as `name` in `group`; UnknownName lists the known names."""
    _check_group(group)
    if name in _registered[group]:
        return _registered[group][name]
    point = _entry_points(group).get(name)
    if point is None:
        known = ", ".join(names(group)) or "none"
        raise UnknownName(f"unknown {_SINGULAR[group]} {name!r}; known: {known}")
    return point.load()
