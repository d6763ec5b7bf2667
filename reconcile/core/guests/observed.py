"""What a hypervisor holds, as observed once per run. Unknown is never absent."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from reconcile.core.guests.domain_xml import DomainFacts
from reconcile.core.guests.identity import Mark


class DomainState(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    SHUTOFF = "shutoff"
    CRASHED = "crashed"
    OTHER = "other"  # shutting down, suspended to RAM, no state: not a resting state

    @property
    def active(self) -> bool:
        """A live definition exists (a QEMU process runs), whatever it is doing."""
        return self is not DomainState.SHUTOFF


@dataclass(frozen=True)
class ObservedDomain:
    """One domain: `config` is the persistent definition, `live` the running one.

    They differ after a redefine of a running domain, which changes only the persistent
    definition: a restart is pending until `live` matches. `persistent` False is a
    transient domain (`virsh undefine` of a running one): it has no persistent definition,
    `config` is what libvirt gives for it (its running one), and it vanishes when it stops
    or the hypervisor restarts.
    """

    name: str
    uuid: str
    state: DomainState
    config: DomainFacts
    live: DomainFacts | None
    persistent: bool = True

    @property
    def mark(self) -> Mark | None:
        return self.config.mark


@dataclass(frozen=True)
class HypervisorObservation:
    """A snapshot of one hypervisor.

    `domains` None (with `error`) means the hypervisor could not be listed: every domain on
    it is unknown. `unknown` names domains that were listed but could not be read (name ->
    why); they must block create, destroy and restart exactly like a failed hypervisor.
    """

    uri: str
    domains: Mapping[str, ObservedDomain] | None
    error: str | None
    unknown: Mapping[str, str] = field(default_factory=dict)
    # Listed by name only, not read: names that cannot be the lab's (no `<lab>-` prefix).
    # They are unmanaged whatever they hold; a copy of a guest's mark among them can never
    # be taken for the guest, whose name has the prefix.
    others: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.domains is None) == (self.error is None):
            raise ValueError("an observation has either domains or an error")


@dataclass(frozen=True)
class DiskFileFacts:
    """A disk guest's overlay as its qcow2 header shows it (adapters/disks.py)."""

    virtual_size: int
    backing: str  # the backing file it records ("" for none)


class ViewState(StrEnum):
    """The host side of a read-only share, as `/proc/self/mountinfo` and stat show it."""

    READ_ONLY = "read-only"  # one read-only bind, of its source
    MISSING = "missing"  # nothing mounted there: the next start makes it
    WRITABLE = "writable"  # a writable mount at or below it: replaced, never used
    STALE = "stale"  # read-only, but not (only) a bind of its source: replaced

    @property
    def problem(self) -> str:
        return _VIEW_PROBLEMS[self]


_VIEW_PROBLEMS = {
    ViewState.READ_ONLY: "",
    ViewState.MISSING: "not mounted",
    ViewState.WRITABLE: "writable from the host",
    ViewState.STALE: "does not show its source (stacked, or the source was replaced)",
}


@dataclass(frozen=True)
class GcRootFacts:
    """One link in a guest's GC root directory: where it points, and whether Nix knows it
    (its registration in /nix/var/nix/gcroots/auto points back at it)."""

    target: str
    registered: bool
