"""Desired against observed: one `GuestChange` per guest, with the reason field by field.

Pure. Three states stay apart: absent (create), present but different (update), and
unknown (the probe failed: never create, destroy or restart). A domain without our mark is
never ours, whatever its name; identity is name *and* mark, so a domain carrying a copy of
a guest's mark under another name is a conflict too, and nothing of that guest is touched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING

from reconcile.core.desired import GuestState, RestartPolicy
from reconcile.core.guests.disk import DiskIntent
from reconcile.core.guests.disk_xml import facts_of
from reconcile.core.guests.domain_xml import DomainFacts
from reconcile.core.guests.gcroots import RootProblem, closures_in_use, root_problems
from reconcile.core.guests.identity import domain_name
from reconcile.core.guests.imageless import kernel_identity
from reconcile.core.guests.intent import GuestIntent
from reconcile.core.guests.observed import (
    DiskFileFacts,
    DomainState,
    GcRootFacts,
    HypervisorObservation,
    ObservedDomain,
    ViewState,
)
from reconcile.core.guests.shares import View
from reconcile.core.units import format_size

if TYPE_CHECKING:  # a plan with nothing to change loads no closure diffs
    from reconcile.core.closures import ClosureDiff


class ChangeKind(StrEnum):
    CREATE = "create"
    START = "start"
    WAIT = "wait"  # running as desired, but this boot was never confirmed ready
    REDEFINE = "redefine"
    RESTART = "restart"
    RECREATE = "recreate"  # a disk guest's overlay is made anew: what was on it is lost
    RESIZE = "resize"  # a disk guest's overlay grows, the guest keeps running
    STOP = "stop"
    DESTROY = "destroy"
    NOOP = "no-op"
    KEEP = "keep"  # in the lab but not in the manifest, and not pruned
    UNKNOWN = "unknown"
    CONFLICT = "conflict"

    def is_change(self) -> bool:
        """Whether applying it changes the world."""
        return self in _CHANGES

    @property
    def symbol(self) -> str:
        return _SYMBOLS[self]


_CHANGES = frozenset(
    {
        ChangeKind.CREATE,
        ChangeKind.START,
        ChangeKind.WAIT,
        ChangeKind.REDEFINE,
        ChangeKind.RESTART,
        ChangeKind.RECREATE,
        ChangeKind.RESIZE,
        ChangeKind.STOP,
        ChangeKind.DESTROY,
    }
)
_SYMBOLS = {
    ChangeKind.CREATE: "+",
    ChangeKind.START: "~",
    ChangeKind.WAIT: "~",
    ChangeKind.REDEFINE: "~",
    ChangeKind.RESTART: "-/+",
    ChangeKind.RECREATE: "-/+",
    ChangeKind.RESIZE: "~",
    ChangeKind.STOP: "~",
    ChangeKind.DESTROY: "-",
    ChangeKind.NOOP: " ",
    ChangeKind.KEEP: "!",
    ChangeKind.UNKNOWN: "?",
    ChangeKind.CONFLICT: "!",
}


@dataclass(frozen=True)
class FieldChange:
    field: str
    before: str
    after: str


@dataclass(frozen=True)
class GuestChange:
    name: str
    domain: str
    hypervisor: str
    kind: ChangeKind
    reasons: tuple[FieldChange, ...] = ()
    note: str = ""
    intent: GuestIntent | DiskIntent | None = None
    redefine: bool = False  # the persistent definition must be written
    running: bool = False  # observed running (so a restart or stop shuts it down)
    observed_state: DomainState | None = None  # the domain's, when one was observed
    moved_to: str = ""  # a copy left on its old hypervisor: where the guest lives now
    closure: ClosureDiff | None = None  # what its system change is (filled in by the plan)
    kconfig: tuple[tuple[str, str, str], ...] = ()  # a kernel change: (option, before, after)
    mode: str = "imageless"  # the guest's mode (an orphan's, from its mark)
    resize_to: int = 0  # a disk guest's overlay grows to this many bytes
    address: str = ""  # where a disk guest is reached (observed), "" when not known


AnyIntent = GuestIntent | DiskIntent


def _field_changes(intent: AnyIntent, facts: DomainFacts) -> tuple[FieldChange, ...]:
    if isinstance(intent, DiskIntent):
        return _disk_field_changes(intent, facts)
    mark = facts.mark
    assert mark is not None
    want = intent.definition
    want_shares = {s.tag: s.source for s in want.shares}
    have_shares = dict(facts.shares)
    pairs = [
        ("system", mark.toplevel, want.toplevel),
        ("kernel", mark.kernel, kernel_identity(want.kernel)),
        ("memory", f"{facts.memory_mib} MiB", f"{want.memory_mib} MiB"),
        ("vcpus", str(facts.vcpus), str(want.vcpus)),
        # the init= path follows the system: name the system, not the command line too
        ("cmdline", facts.cmdline.replace(mark.toplevel, want.toplevel), want.cmdline),
        ("shares", _shares(have_shares), _shares(want_shares)),
    ]
    changes = tuple(FieldChange(f, b, a) for f, b, a in pairs if b != a)
    if not changes and mark.spec_hash != intent.spec_hash:
        changes = (FieldChange("definition", mark.spec_hash[:12], intent.spec_hash[:12]),)
    return changes


def _disk_field_changes(intent: DiskIntent, facts: DomainFacts) -> tuple[FieldChange, ...]:
    """A disk guest's definition against libvirt's. The system is not among them (what
    runs is switched over SSH), nor is the image unless the guest is recreated by it."""
    mark = facts.mark
    assert mark is not None
    want = facts_of(intent)
    have_format = facts.disks[0].backing_format if facts.disks else ""
    pairs = [
        # another format is another image: the overlay is made anew whatever `update` says
        ("format", have_format, str(intent.definition.base_format)),
        ("memory", f"{facts.memory_mib} MiB", f"{want.memory_mib} MiB"),
        ("vcpus", str(facts.vcpus), str(want.vcpus)),
        ("network", _network(facts), _network(want)),
        ("disks", _disks(facts), _disks(want)),
        ("shares", _shares(dict(facts.shares)), _shares(dict(want.shares))),
    ]
    if intent.recreates:
        pairs.append(("image", mark.image, intent.image))
    changes = tuple(FieldChange(f, b, a) for f, b, a in pairs if b != a)
    if not changes and mark.spec_hash != intent.spec_hash:
        changes = (FieldChange("definition", mark.spec_hash[:12], intent.spec_hash[:12]),)
    return changes


def _network(facts: DomainFacts) -> str:
    nics = [f"{n.network or '?'} {n.mac}" for n in facts.nics]
    return ", ".join([*nics, " ".join(facts.qemu_args)]) if facts.qemu_args else ", ".join(nics)


def _disks(facts: DomainFacts) -> str:
    return ", ".join(f"{d.target}={d.source}" for d in facts.disks)  # (format: its own field)


def definition_matches(intent: AnyIntent, facts: DomainFacts) -> bool:
    """Whether a definition is the intent's: our mark's hash and every field compared (a
    hand edit such as `virsh setmaxmem --config` keeps the mark but changes the field)."""
    mark = facts.mark
    return (
        mark is not None
        and mark.spec_hash == intent.spec_hash
        and not _field_changes(intent, facts)
    )


# A transient domain (`virsh undefine` of a running one) runs on, but vanishes when it
# stops or the hypervisor restarts: it is defined again with the same spec, which libvirt
# accepts for a running transient domain and which makes it persistent without a restart.
TRANSIENT = FieldChange("persistence", "transient", "persistent")
TRANSIENT_NOTE = (
    "transient: it would vanish at its next stop or the hypervisor's next restart; "
    "defined again, without a restart"
)


def _shares(shares: Mapping[str, str]) -> str:
    return ", ".join(f"{tag}={source}" for tag, source in sorted(shares.items()))


def diff_guest(
    intent: AnyIntent,
    observation: HypervisorObservation,
    lab: str,
    overlay: DiskFileFacts | str | None = "not observed",
) -> GuestChange:
    """`overlay` is a disk guest's overlay as observed: None when there is no file, a
    text when it could not be read (unknown: nothing of the guest is touched)."""
    change = _diff_domain(intent, observation, lab)
    if isinstance(intent, DiskIntent):
        return _disk_change(change, intent, overlay)
    return change


RECREATE_NOTE = (
    "its disk is made anew from the new image: what is on it is lost; data disks are kept"
)


def _disk_change(
    change: GuestChange, intent: DiskIntent, overlay: DiskFileFacts | str | None
) -> GuestChange:
    """A disk guest's own change classes on top of its domain's: a new image it is
    recreated from, a missing overlay, a grown or (refused) shrunk disk."""
    if change.kind in (ChangeKind.UNKNOWN, ChangeKind.CONFLICT):
        return change
    if isinstance(overlay, str):
        return replace(
            change,
            kind=ChangeKind.UNKNOWN,
            intent=None,
            redefine=False,
            note=f"its disk: {overlay}",
        )
    if change.kind is ChangeKind.CREATE:
        return change
    if any(r.field in ("image", "format") for r in change.reasons):
        return replace(change, kind=ChangeKind.RECREATE, redefine=True, note=RECREATE_NOTE)
    if overlay is None:
        return replace(
            change,
            kind=ChangeKind.RECREATE,
            redefine=True,
            reasons=(
                *change.reasons,
                FieldChange("disk", "missing", str(intent.definition.overlay)),
            ),
            note="its disk is missing: made anew from the image",
        )
    if overlay.virtual_size > intent.size_bytes:
        return replace(
            change,
            kind=ChangeKind.CONFLICT,
            intent=None,
            redefine=False,
            note=f"disk.size ({format_size(intent.size_bytes)}) is smaller than its disk "
            f"({format_size(overlay.virtual_size)}): a disk is never shrunk; set disk.size "
            f"to at least {format_size(overlay.virtual_size)}",
        )
    if overlay.virtual_size < intent.size_bytes:
        grow = FieldChange(
            "disk size", format_size(overlay.virtual_size), format_size(intent.size_bytes)
        )
        kind = ChangeKind.RESIZE if change.kind is ChangeKind.NOOP else change.kind
        return replace(
            change, kind=kind, reasons=(*change.reasons, grow), resize_to=intent.size_bytes
        )
    return change


def _diff_domain(intent: AnyIntent, observation: HypervisorObservation, lab: str) -> GuestChange:
    base = GuestChange(
        intent.name,
        intent.domain,
        intent.guest.hypervisor,
        ChangeKind.NOOP,
        mode=intent.guest.mode.value,
    )
    if observation.domains is None:
        return replace(base, kind=ChangeKind.UNKNOWN, note=observation.error or "unknown")
    if intent.domain in observation.unknown:
        return replace(base, kind=ChangeKind.UNKNOWN, note=observation.unknown[intent.domain])
    domain = observation.domains.get(intent.domain)
    if domain is None:
        return replace(base, kind=ChangeKind.CREATE, intent=intent, redefine=True)
    mark = domain.config.mark
    if mark is None or mark.lab != lab or mark.name != intent.name:
        owner = "no reconcile mark" if mark is None else f"the mark of {mark.lab}/{mark.name}"
        return replace(
            base,
            kind=ChangeKind.CONFLICT,
            note=f"domain '{intent.domain}' exists with {owner}; it is never touched",
        )
    config_changes = _field_changes(intent, domain.config)
    if not domain.persistent:
        config_changes = (*config_changes, TRANSIENT)
    running = domain.state in (DomainState.RUNNING, DomainState.PAUSED)
    known = replace(
        base,
        intent=intent,
        redefine=bool(config_changes),
        running=running,
        observed_state=domain.state,
    )
    if intent.guest.state is GuestState.STOPPED:
        if running:
            return replace(
                known, kind=ChangeKind.STOP, reasons=config_changes, note="running -> stopped"
            )
        if config_changes:
            return replace(known, kind=ChangeKind.REDEFINE, reasons=config_changes)
        return known
    if not running:
        return replace(
            known,
            kind=ChangeKind.START,
            reasons=config_changes,
            note=f"{domain.state} -> running",
        )
    live = domain.live if domain.live is not None and domain.live.mark is not None else None
    live_changes = _field_changes(intent, live) if live is not None else config_changes
    if not live_changes:
        if config_changes:  # changed out of band in the definition only (virsh edit, undefine)
            note = (
                TRANSIENT_NOTE
                if config_changes == (TRANSIENT,)
                else "the persistent definition differs; the running guest does not"
            )
            return replace(known, kind=ChangeKind.REDEFINE, reasons=config_changes, note=note)
        if live is not None and not _seen_ready(intent, live):
            return replace(
                known, kind=ChangeKind.WAIT, note="running, but its boot was never seen ready"
            )
        return known
    if intent.guest.restart is RestartPolicy.NEVER:
        note = 'restart = "never": takes effect at the next start'
        if config_changes:
            return replace(known, kind=ChangeKind.REDEFINE, reasons=config_changes, note=note)
        return replace(known, note="defined anew; " + note)
    return replace(known, kind=ChangeKind.RESTART, reasons=live_changes)


def _seen_ready(intent: AnyIntent, live: DomainFacts) -> bool:
    """Whether this boot was confirmed ready: an imageless guest's with its own system, a
    disk guest's with any (its boot loader picks the system; what runs is switched)."""
    if isinstance(intent, DiskIntent):
        return live.ready is not None
    return live.ready == intent.toplevel


def _kept(domain: ObservedDomain, hypervisor: str) -> GuestChange:
    """A marked domain no guest of the manifest wants there, as it is (kept, to begin with)."""
    mark = domain.config.mark
    assert mark is not None  # only marked domains get here
    return GuestChange(
        mark.name,
        domain.name,
        hypervisor,
        ChangeKind.KEEP,
        running=domain.state in (DomainState.RUNNING, DomainState.PAUSED),
        observed_state=domain.state,
        mode=mark.mode,
    )


def diff_orphan(
    domain: ObservedDomain, hypervisor: str, *, prune: bool, protected: bool
) -> GuestChange:
    """A domain marked as ours whose guest left the manifest."""
    base = _kept(domain, hypervisor)
    if protected:
        return replace(base, note="not in the manifest, but it was defined with protect = true")
    if not prune:
        return replace(base, note="not in the manifest; --prune destroys it")
    return replace(base, kind=ChangeKind.DESTROY, note="not in the manifest (--prune)")


def diff_moved(
    domain: ObservedDomain, hypervisor: str, to: str, *, protected: bool, kept_while: str = ""
) -> GuestChange:
    """A guest's domain on a hypervisor the manifest moved it away from: it goes (the new
    copy is made after it is gone), unless it is protected or the new place is unknown."""
    base = replace(_kept(domain, hypervisor), moved_to=to)
    if protected:
        return replace(
            base, note=f"moved to hypervisor '{to}', but defined with protect = true: kept"
        )
    if kept_while:
        return replace(base, note=f"moved to hypervisor '{to}'; kept while {kept_while}")
    return replace(
        base, kind=ChangeKind.DESTROY, note=f"moved to hypervisor '{to}': this copy goes first"
    )


def diff_copy(domain: ObservedDomain, hypervisor: str, lab: str) -> GuestChange:
    """A domain carrying this lab's mark of a guest under a name that is not that guest's
    domain (a `virsh dumpxml`, renamed, defined again): not the guest, and never touched.
    Named by its domain, so nothing of the guest it claims is acted on (no prune, no roots
    released)."""
    mark = domain.config.mark
    assert mark is not None
    real = domain_name(lab, mark.name)
    note = (
        f"domain '{domain.name}' carries the mark of guest '{mark.name}', whose domain is "
        f"'{real}': a copy, not that guest; neither is touched for it"
    )
    return GuestChange(domain.name, domain.name, hypervisor, ChangeKind.CONFLICT, note=note)


@dataclass(frozen=True)
class ViewChange:
    """A read-only view that is not as it must be: apply makes it anew, read-only."""

    view: View
    state: ViewState
    users: tuple[tuple[str, str], ...]  # (guest, share tag) it is the problem of
    hypervisor: str | None = None  # where it is, when not this machine (a remote hypervisor)


# Guests that keep running as they are: a start (create, start, restart) makes its views.
_KEEPS_RUNNING = frozenset({ChangeKind.NOOP, ChangeKind.WAIT, ChangeKind.REDEFINE})


def diff_views(
    intents: Iterable[AnyIntent],
    states: Mapping[View, ViewState],
    changes: Iterable[GuestChange],
    hypervisor: str | None = None,
) -> tuple[ViewChange, ...]:
    """Views that are writable or stale (always a problem: a writable bind in the state
    directory lets a guest, or a `rm -r`, write to the host), and missing views of guests
    that run and are not about to be started."""
    by_name = {c.name: c for c in changes}
    users: dict[View, list[tuple[str, str]]] = {}
    for intent in intents:
        change = by_name.get(intent.name)
        for share in intent.shares:
            view = share.view
            if view is None or view not in states:
                continue
            state = states[view]
            if state is ViewState.MISSING and not (
                change is not None and change.running and change.kind in _KEEPS_RUNNING
            ):
                continue
            if state is not ViewState.READ_ONLY:
                users.setdefault(view, []).append((intent.name, share.tag))
    return tuple(
        ViewChange(view, states[view], tuple(sorted(found)), hypervisor)
        for view, found in sorted(users.items(), key=lambda item: str(item[0].path))
    )


@dataclass(frozen=True)
class RootChange:
    """A guest whose GC roots are missing, point elsewhere or are unregistered: apply makes
    them anew, without touching the guest."""

    guest: str
    hypervisor: str
    domain: str
    problems: tuple[RootProblem, ...]


# Guests whose domain is there and ours: their closures must be kept.
_KEEPS_ROOTS = frozenset(
    {
        ChangeKind.NOOP,
        ChangeKind.WAIT,
        ChangeKind.REDEFINE,
        ChangeKind.RESTART,
        ChangeKind.START,
        ChangeKind.STOP,
        ChangeKind.KEEP,
    }
)


def diff_roots(
    changes: Iterable[GuestChange],
    observations: Mapping[str, HypervisorObservation],
    roots: Mapping[str, Mapping[str, GcRootFacts]],
) -> tuple[RootChange, ...]:
    """Each guest's roots against the closures its observed definitions boot."""
    found = []
    for change in changes:
        if change.kind not in _KEEPS_ROOTS:
            continue
        observation = observations.get(change.hypervisor)
        domain = (observation.domains or {}).get(change.domain) if observation else None
        if domain is None:
            continue
        problems = root_problems(closures_in_use(domain), roots.get(change.name, {}))
        if problems:
            found.append(RootChange(change.name, change.hypervisor, change.domain, problems))
    return tuple(sorted(found, key=lambda r: r.guest))
