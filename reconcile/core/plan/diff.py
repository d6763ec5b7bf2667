"""The lab's diff: every guest and host of the manifest against what was observed.

Pure. Built from each machine kind's own diff (core/guests/diff.py, core/hosts/baremetal.py);
the plan is made from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from reconcile.core.guests.diff import (
    ChangeKind,
    GuestChange,
    RootChange,
    ViewChange,
    diff_copy,
    diff_guest,
    diff_moved,
    diff_orphan,
    diff_roots,
    diff_views,
)
from reconcile.core.guests.disk import DiskIntent
from reconcile.core.guests.identity import domain_name
from reconcile.core.guests.intent import GuestIntent
from reconcile.core.guests.observed import (
    DiskFileFacts,
    GcRootFacts,
    HypervisorObservation,
    ObservedDomain,
    ViewState,
)
from reconcile.core.guests.shares import View
from reconcile.core.hosts.baremetal import HostChange


@dataclass(frozen=True)
class Diff:
    lab: str
    changes: tuple[GuestChange, ...]
    unmanaged: tuple[tuple[str, str], ...]  # (hypervisor, domain) not ours: listed, never touched
    hosts: tuple[HostChange, ...] = ()
    views: tuple[ViewChange, ...] = ()
    roots: tuple[RootChange, ...] = ()

    def has_changes(self) -> bool:
        return (
            any(c.kind.is_change() for c in self.changes)
            or any(h.kind.is_change() for h in self.hosts)
            or bool(self.views)
            or bool(self.roots)
        )

    def conflicts(self) -> dict[str, str]:
        """What cannot converge, with why: a plan with any is not clean (exit 1)."""
        return {c.name: c.note for c in self.changes if c.kind is ChangeKind.CONFLICT}


def diff_lab(
    lab: str,
    intents: Iterable[GuestIntent | DiskIntent],
    observations: Mapping[str, HypervisorObservation],
    *,
    prune: bool,
    overlays: Mapping[str, DiskFileFacts | str | None] | None = None,
    scope: frozenset[str] | None = None,
    views: Mapping[View, ViewState] | None = None,
    roots: Mapping[str, Mapping[str, GcRootFacts]] | None = None,
    machines: Mapping[str, MachineFacts | None] | None = None,
) -> Diff:
    """The whole lab's diff. `scope` limits orphans to targeted names (None: all); `views`
    is each read-only view as observed, `roots` each guest's GC root links by name (None:
    not observed), `overlays` each disk guest's overlay by name (None: no file, a text:
    unreadable; a guest without an entry is unknown). `views` and `roots` are this
    machine's: `machines` has the same of each remote hypervisor (None: not observed, so
    nothing of them is repaired)."""
    intents = list(intents)
    overlays = overlays or {}
    changes = [
        diff_guest(i, observations[i.guest.hypervisor], lab, overlays.get(i.name, "not observed"))
        for i in intents
    ]
    wanted = {(c.hypervisor, c.domain) for c in changes}
    home = {c.domain: c for c in changes}  # where each guest's domain must be
    unmanaged: list[tuple[str, str]] = []
    for hypervisor, observation in sorted(observations.items()):
        for name, domain in sorted((observation.domains or {}).items()):
            mark = domain.config.mark
            if mark is None or mark.lab != lab:
                if (hypervisor, name) not in wanted:
                    unmanaged.append((hypervisor, name))
                continue
            if (hypervisor, name) in wanted or (scope is not None and mark.name not in scope):
                continue
            if name != domain_name(lab, mark.name):
                changes.append(diff_copy(domain, hypervisor, lab))
            elif name in home:  # the manifest moved this guest to another hypervisor
                changes.append(_moved(domain, hypervisor, home[name], changes))
            else:
                changes.append(diff_orphan(domain, hypervisor, prune=prune, protected=mark.protect))
        unmanaged.extend(
            (hypervisor, name) for name in observation.others if (hypervisor, name) not in wanted
        )
    unmanaged.sort()
    changes.sort(key=lambda c: c.name)
    machines = machines or {}
    here = [i for i in intents if i.guest.hypervisor not in machines]
    local = [c for c in changes if c.hypervisor not in machines]
    view_changes = list(diff_views(here, views, changes) if views is not None else ())
    root_changes = list(diff_roots(local, observations, roots) if roots is not None else ())
    for hypervisor, facts in sorted(machines.items()):
        if facts is None:
            continue
        theirs = [i for i in intents if i.guest.hypervisor == hypervisor]
        view_changes += diff_views(theirs, facts.views, changes, hypervisor)
        on = [c for c in changes if c.hypervisor == hypervisor]
        root_changes += diff_roots(on, observations, facts.roots)
    root_changes.sort(key=lambda r: (r.guest, r.hypervisor))
    return Diff(
        lab, tuple(changes), tuple(unmanaged), views=tuple(view_changes), roots=tuple(root_changes)
    )


@dataclass(frozen=True)
class MachineFacts:
    """A remote hypervisor's own read-only views and GC root links, as observed there."""

    views: Mapping[View, ViewState]
    roots: Mapping[str, Mapping[str, GcRootFacts]]
    kernel_copies: tuple[str, ...] = ()  # the names in its `placed-kernels/`


def _moved(
    domain: ObservedDomain, hypervisor: str, new: GuestChange, changes: list[GuestChange]
) -> GuestChange:
    """The old copy of a moved guest. It goes before the new one is made, so that exactly one
    runs; kept when the new place is unknown or a conflict (the guest would be nowhere), and
    when protected, in which case the new copy is not made either (it would be a second)."""
    mark = domain.config.mark
    assert mark is not None
    if mark.protect:
        index = next(
            i
            for i, c in enumerate(changes)
            if (c.hypervisor, c.domain) == (new.hypervisor, new.domain)
        )
        changes[index] = replace(
            changes[index],
            kind=ChangeKind.CONFLICT,
            intent=None,
            redefine=False,
            note=f"its protected copy on hypervisor '{hypervisor}' is still there: undefine "
            "it by hand to move the guest, or set its hypervisor back",
        )
    blocked = new.kind in (ChangeKind.UNKNOWN, ChangeKind.CONFLICT)
    kept_while = f"'{new.hypervisor}' is {new.kind.value}" if blocked else ""
    return diff_moved(
        domain, hypervisor, new.hypervisor, protected=mark.protect, kept_while=kept_while
    )
