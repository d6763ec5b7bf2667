"""The hypervisor driver interface, and the table a hypervisor's driver is chosen from.

A driver keeps guests' definitions on one hypervisor and starts and stops them. It knows
nothing of the manifest: it is handed values the core computed (a `DomainSpec`) and
reports what it sees as core values (`HypervisorObservation`, `ObservedDomain`). It must
refuse to change a domain without this lab's ownership mark, and send the guest's serial
console to `console(definition)`, where readiness is read from.

Adding a driver: one adapter module implementing `Driver`, one entry in `DRIVERS`, and its
name in the manifest schema's `hypervisors.<name>.driver` enum.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from reconcile.adapters import libvirt
from reconcile.core.desired import Hypervisor, Lab
from reconcile.core.errors import ReconcileError
from reconcile.core.guests.disk import DiskDefinition
from reconcile.core.guests.disk_xml import DiskDomainSpec
from reconcile.core.guests.domain_xml import DomainSpec
from reconcile.core.guests.imageless import GuestDefinition
from reconcile.core.guests.observed import HypervisorObservation, ObservedDomain


class Driver(Protocol):
    uri: str  # what it connects to, for messages

    def observe(self, prefix: str = "") -> HypervisorObservation:
        """Every domain (those named `prefix...` read in full); a failure is unknown."""
        ...

    def probe(self, name: str) -> ObservedDomain | None:
        """One domain as it is now; None when it is absent (ProbeError when unknown)."""
        ...

    def define(self, spec: DomainSpec) -> None: ...

    def start(self, name: str) -> None: ...

    def mark_ready(self, name: str, toplevel: str) -> None:
        """Record on the running definition that this boot of `toplevel` came up."""
        ...

    def shutdown(self, name: str, timeout_s: float) -> bool:
        """Stop gracefully, forcibly after `timeout_s`; whether it was graceful."""
        ...

    def destroy(self, name: str) -> None: ...

    def undefine(self, name: str) -> None: ...

    def console(self, definition: GuestDefinition) -> Path:
        """The file the guest's serial console is written to."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class DiskDriver(Protocol):
    """What disk guests need of a driver besides: their own definition, disks that grow
    while the guest runs, a libvirt network's DHCP leases. Only libvirt's has it."""

    uri: str

    def probe(self, name: str) -> ObservedDomain | None: ...

    def define(self, spec: DiskDomainSpec) -> None: ...

    def start(self, name: str) -> None: ...

    def mark_ready(self, name: str, toplevel: str) -> None: ...

    def shutdown(self, name: str, timeout_s: float) -> bool: ...

    def destroy(self, name: str) -> None: ...

    def undefine(self, name: str) -> None: ...

    def console(self, definition: DiskDefinition) -> Path: ...

    def resize_disk(self, name: str, target: str, size_bytes: int) -> None: ...

    def leases(self, network: str) -> dict[str, str]: ...


DriverFactory = Callable[[Hypervisor, Lab], Driver]


def _libvirt(hypervisor: Hypervisor, lab: Lab) -> Driver:
    return libvirt.for_hypervisor(hypervisor, lab.layout.parsed_domains(hypervisor.name))


def _qemu(hypervisor: Hypervisor, lab: Lab) -> Driver:
    # Loaded only for a lab that has a plain-QEMU hypervisor (with its units and QMP).
    from reconcile.adapters import qemu  # noqa: PLC0415

    return qemu.for_hypervisor(hypervisor, lab)


# Chosen explicitly, by the manifest's `driver`: nothing registers itself on import.
DRIVERS: Mapping[str, DriverFactory] = {
    "libvirt": _libvirt,  # at the hypervisor's `uri`
    "qemu": _qemu,  # on this machine, its guests kept in the lab's state dir
}


def connect(hypervisor: Hypervisor, lab: Lab) -> Driver:
    """The driver of the manifest's hypervisor (connecting on first use)."""
    factory = DRIVERS.get(hypervisor.driver)
    if factory is None:  # the schema allows only DRIVERS' names
        raise ReconcileError(
            f"hypervisor '{hypervisor.name}': no driver '{hypervisor.driver}'",
            hint="drivers: " + ", ".join(sorted(DRIVERS)),
        )
    return factory(hypervisor, lab)
