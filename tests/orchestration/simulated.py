"""A hypervisor driver held in memory, for the performers' tests.

It offers what the guest performer calls on a hypervisor (the methods of
`LibvirtHypervisor`, the driver interface), with libvirt's semantics where the performer
depends on them: a definition is kept as the facts libvirt would report for it
(`DomainFacts.from_spec`), redefining a running domain changes only its persistent
definition, a transient domain vanishes when it stops, a running domain cannot be
undefined, and every mutation refuses a domain without a reconcile mark. What the world
does behind reconcile's back (`virsh edit`, `virsh undefine` of a running domain, a
domain of someone else's) is done with the methods under "out of band".
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path

from reconcile.core.errors import ProbeError, ReconcileError
from reconcile.core.guests.domain_xml import DomainFacts, DomainSpec
from reconcile.core.guests.imageless import GuestDefinition
from reconcile.core.guests.observed import DomainState, HypervisorObservation, ObservedDomain


class SimulatedError(ReconcileError):
    """What the simulated hypervisor refuses (libvirt's adapter raises its own kinds)."""


@dataclass
class _Domain:
    uuid: str
    state: DomainState
    config: DomainFacts  # the persistent definition (the running one when transient)
    live: DomainFacts | None  # the running definition
    persistent: bool = True

    def observed(self, name: str) -> ObservedDomain:
        return ObservedDomain(name, self.uuid, self.state, self.config, self.live, self.persistent)


class SimulatedHypervisor:
    """One hypervisor's domains, in memory; safe to share between the executor's threads."""

    def __init__(self, uri: str = "test:///simulated", *, graceful: bool = True) -> None:
        self.uri = uri
        self.graceful = graceful  # False: a shutdown times out and destroys
        self.mutations: list[tuple[str, str]] = []  # (method, domain), in call order
        self.probes: list[str] = []
        self.unreadable: dict[str, str] = {}  # domain -> why it cannot be read now
        self.closed = False
        self._domains: dict[str, _Domain] = {}
        self._lock = threading.RLock()

    # -- out of band: what happens to the world behind reconcile's back ---------------

    def put(
        self,
        facts: DomainFacts,
        state: DomainState = DomainState.SHUTOFF,
        *,
        persistent: bool = True,
    ) -> None:
        """A domain as someone made it (any mark, or none), running or not."""
        running = state.active
        with self._lock:
            self._domains[facts.name] = _Domain(
                facts.uuid, state, facts, facts if running else None, persistent
            )

    def edit(self, name: str, **changes: object) -> None:
        """`virsh edit` of the persistent definition (the running one keeps its values)."""
        with self._lock:
            domain = self._domains[name]
            domain.config = replace(domain.config, **changes)  # type: ignore[arg-type]

    def make_transient(self, name: str) -> None:
        """`virsh undefine` of a running domain: it runs on, without a persistent definition."""
        with self._lock:
            domain = self._domains[name]
            assert domain.state.active and domain.live is not None
            domain.config, domain.persistent = domain.live, False

    def set_state(self, name: str, state: DomainState) -> None:
        """The guest paused, crashed or powered itself off."""
        with self._lock:
            domain = self._domains[name]
            domain.state = state
            if not state.active:
                self._stopped(name, domain)

    def vanish(self, name: str) -> None:
        """`virsh undefine` of a stopped domain."""
        with self._lock:
            del self._domains[name]

    def get(self, name: str) -> ObservedDomain | None:
        """The domain as it is, without counting as a probe."""
        with self._lock:
            domain = self._domains.get(name)
            return domain.observed(name) if domain is not None else None

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._domains)

    # -- the driver ---------------------------------------------------------------------

    def observe(self, prefix: str = "") -> HypervisorObservation:
        with self._lock:
            domains, unknown, others = {}, {}, []
            for name, domain in sorted(self._domains.items()):
                if not name.startswith(prefix):
                    others.append(name)
                elif name in self.unreadable:
                    unknown[name] = self.unreadable[name]
                else:
                    domains[name] = domain.observed(name)
            return HypervisorObservation(self.uri, domains, None, unknown, tuple(others))

    def probe(self, name: str) -> ObservedDomain | None:
        with self._lock:
            self.probes.append(name)
            if name in self.unreadable:
                raise ProbeError(f"cannot read domain {name!r}: {self.unreadable[name]}")
            return self.get(name)

    def define(self, spec: DomainSpec) -> None:
        facts = DomainFacts.from_spec(spec)
        with self._lock:
            existing = self._domains.get(spec.name)
            if existing is not None:
                mark = existing.config.mark
                if mark is None:
                    raise self._refusal("redefine", spec.name)
                if (mark.lab, mark.name) != (spec.mark.lab, spec.mark.name):
                    raise SimulatedError(
                        f"refusing to redefine domain {spec.name!r}: it belongs to "
                        f"lab {mark.lab!r}, guest {mark.name!r}"
                    )
            self.mutations.append(("define", spec.name))
            if existing is None:
                self._domains[spec.name] = _Domain(spec.uuid, DomainState.SHUTOFF, facts, None)
            else:  # a running domain keeps its live definition; a transient one is kept now
                existing.config, existing.persistent = facts, True

    def start(self, name: str) -> None:
        with self._lock:
            domain = self._owned(name, "start")
            self.mutations.append(("start", name))
            if not domain.state.active:
                domain.state, domain.live = DomainState.RUNNING, replace(domain.config, ready=None)

    def mark_ready(self, name: str, toplevel: str) -> None:
        with self._lock:
            domain = self._owned(name, "mark ready")
            if domain.live is None:
                raise SimulatedError(f"cannot mark domain {name!r} ready: it is not running")
            self.mutations.append(("mark_ready", name))
            domain.live = replace(domain.live, ready=toplevel)

    def shutdown(self, name: str, timeout_s: float) -> bool:
        with self._lock:
            domain = self._owned(name, "shut down")
            self.mutations.append(("shutdown", name))
            if domain.state.active:
                domain.state = DomainState.SHUTOFF
                self._stopped(name, domain)
                return self.graceful
            return True

    def destroy(self, name: str) -> None:
        with self._lock:
            domain = self._owned(name, "destroy")
            self.mutations.append(("destroy", name))
            if domain.state.active:
                domain.state = DomainState.SHUTOFF
                self._stopped(name, domain)

    def undefine(self, name: str) -> None:
        with self._lock:
            domain = self._owned(name, "undefine")
            if domain.state.active:
                raise SimulatedError(
                    f"cannot undefine domain {name!r}: it is running",
                    hint="shut it down or destroy it first",
                )
            self.mutations.append(("undefine", name))
            del self._domains[name]

    def console(self, definition: GuestDefinition) -> Path:
        return definition.serial_log

    def close(self) -> None:
        self.closed = True

    # -- helpers ------------------------------------------------------------------------

    def _owned(self, name: str, action: str) -> _Domain:
        domain = self._domains.get(name)
        if domain is None:
            raise SimulatedError(f"cannot {action} domain {name!r}: no such domain")
        if domain.config.mark is None:
            raise self._refusal(action, name)
        return domain

    def _stopped(self, name: str, domain: _Domain) -> None:
        domain.live = None
        if not domain.persistent:
            del self._domains[name]  # a transient domain is gone once it stops

    def _refusal(self, action: str, name: str) -> SimulatedError:
        return SimulatedError(f"refusing to {action} domain {name!r}: it carries no reconcile mark")
