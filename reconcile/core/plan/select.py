"""Which guests and hosts a run is about: `--target NAME` and `--target tag:TAG`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, TypeVar

from reconcile.core.desired import Guest, Host, Manifest
from reconcile.core.errors import ReconcileError


class _Tagged(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def tags(self) -> tuple[str, ...]: ...


T = TypeVar("T", bound=_Tagged)


def _matching(items: Mapping[str, T], target: str) -> list[T]:
    if target.startswith("tag:"):
        tag = target.removeprefix("tag:")
        return [i for i in items.values() if tag in i.tags]
    return [items[target]] if target in items else []


def select(manifest: Manifest, targets: Sequence[str]) -> tuple[list[Guest], list[Host]]:
    """The targeted guests and hosts in name order (all when no target).

    A target that matches neither a guest nor a host is an error, not an empty run.
    """
    if not targets:
        return list(manifest.guests.values()), list(manifest.hosts.values())
    guests: dict[str, Guest] = {}
    hosts: dict[str, Host] = {}
    for target in targets:
        found_guests = _matching(manifest.guests, target)
        found_hosts = _matching(manifest.hosts, target)
        if not found_guests and not found_hosts:
            known = ", ".join(sorted([*manifest.guests, *manifest.hosts])) or "none"
            raise ReconcileError(
                f"--target {target} matches no guest or host",
                hint=f"guests and hosts in the manifest: {known}",
            )
        guests.update((g.name, g) for g in found_guests)
        hosts.update((h.name, h) for h in found_hosts)
    return [guests[n] for n in sorted(guests)], [hosts[n] for n in sorted(hosts)]
