"""Guests' generations (Miniguest's rollbacks): the last N systems each guest was defined
with, with dates, each kept by a GC root of the lab; and the pins `reconcile rollback`
sets, which the plan honours in place of the manifest's system.

`<state_dir>/generations/<guest>.json` is the list, oldest first; `<guest>/<number>` links
to each toplevel and is registered in gcroots/auto. A generation past the lab's
`generations` count is released: its root goes, the store path is left for a garbage
collection someone else runs.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from reconcile.adapters import files, nix
from reconcile.core.errors import ReconcileError
from reconcile.core.layout import StateLayout

RECORD_MAX = 1 << 20


@dataclass(frozen=True)
class Generation:
    number: int
    toplevel: str
    since: float  # when a definition first booted it


def _record(layout: StateLayout, guest: str) -> Path:
    return layout.generations / f"{guest}.json"


def read(layout: StateLayout, guest: str) -> list[Generation]:
    """A guest's generations, oldest first ([] when none was recorded)."""
    try:
        data = json.loads(files.read_regular(_record(layout, guest), RECORD_MAX))
        return [Generation(int(g["number"]), str(g["toplevel"]), float(g["since"])) for g in data]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ReconcileError(
            f"unreadable generations of guest '{guest}' ({_record(layout, guest)}): {exc}",
            hint="remove the file to start its generations afresh",
        ) from None


def record(layout: StateLayout, guest: str, toplevel: str, keep: int) -> None:
    """`toplevel` is what the guest is defined with now: a new generation unless it is the
    newest one already; then only the newest `keep` keep their roots."""
    generations = read(layout, guest)
    if not generations or generations[-1].toplevel != toplevel:
        number = generations[-1].number + 1 if generations else 1
        generations.append(Generation(number, toplevel, time.time()))
    kept, released = generations[-keep:], generations[:-keep]
    roots = layout.generations / guest
    roots.mkdir(parents=True, exist_ok=True)
    for generation in kept:
        link = roots / str(generation.number)
        if not link.is_symlink() or str(link.readlink()) != generation.toplevel:
            nix.add_gc_root(link, generation.toplevel)
    for generation in released:
        nix.remove_gc_root(roots / str(generation.number))
    document = [{"number": g.number, "toplevel": g.toplevel, "since": g.since} for g in kept]
    files.write_atomic(_record(layout, guest), json.dumps(document, indent=1) + "\n")


def forget(layout: StateLayout, guest: str) -> None:
    """A guest pruned from the lab: its generations and their roots go with it."""
    roots = layout.generations / guest
    for generation in read(layout, guest):
        nix.remove_gc_root(roots / str(generation.number))
    shutil.rmtree(roots, ignore_errors=True)
    _record(layout, guest).unlink(missing_ok=True)
    unpin(layout, guest)


# --- pins -------------------------------------------------------------------------------


def pins(layout: StateLayout) -> dict[str, str]:
    """guest -> the toplevel `reconcile rollback` pinned it to."""
    try:
        data = json.loads(files.read_regular(layout.pins, RECORD_MAX))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ReconcileError(
            f"unreadable pins ({layout.pins}): {exc}",
            hint="remove the file: every guest then follows the manifest again",
        ) from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ReconcileError(f"{layout.pins}: not a map of guest to system")
    return {str(k): v for k, v in data.items()}


def _write_pins(layout: StateLayout, found: dict[str, str]) -> None:
    if found:
        files.write_atomic(layout.pins, json.dumps(found, indent=1, sort_keys=True) + "\n")
    else:
        layout.pins.unlink(missing_ok=True)


def pin(layout: StateLayout, guest: str, toplevel: str) -> None:
    _write_pins(layout, {**pins(layout), guest: toplevel})


def unpin(layout: StateLayout, guest: str) -> bool:
    """Whether the guest was pinned."""
    found = pins(layout)
    was = found.pop(guest, None) is not None
    _write_pins(layout, found)
    return was
