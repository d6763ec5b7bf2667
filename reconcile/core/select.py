"""Which guests a run is about: `--target NAME` and `--target tag:TAG`."""

from __future__ import annotations

from collections.abc import Sequence

from reconcile.core.desired import Guest, Manifest
from reconcile.core.errors import ReconcileError


def select_guests(manifest: Manifest, targets: Sequence[str]) -> list[Guest]:
    """The targeted guests in name order (all when no target); an unknown target is an error."""
    if not targets:
        return list(manifest.guests.values())
    chosen: dict[str, Guest] = {}
    for target in targets:
        if target.startswith("tag:"):
            tag = target.removeprefix("tag:")
            found = [g for g in manifest.guests.values() if tag in g.tags]
        else:
            found = [manifest.guests[target]] if target in manifest.guests else []
        if not found:
            known = ", ".join(sorted(manifest.guests)) or "none"
            raise ReconcileError(
                f"--target {target} matches no guest", hint=f"guests in the manifest: {known}"
            )
        chosen.update((g.name, g) for g in found)
    return [chosen[name] for name in sorted(chosen)]
