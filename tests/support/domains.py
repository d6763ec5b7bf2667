"""Building DomainSpecs for adapter tests, without the planning layers above them.

Production derives a definition from a guest's intent (core/guests/imageless.py `define`); adapter
tests need definitions of their own (a command line of their choosing, shares served
straight from their directories). They build the production value, so its identity and
its hash are production's: nothing here computes either.
"""

from __future__ import annotations

from pathlib import Path

from reconcile.core.desired import Accel, GuestMode, Share
from reconcile.core.guests.domain_xml import DomainSpec
from reconcile.core.guests.identity import mac_address
from reconcile.core.guests.imageless import BootKernel, GuestDefinition, Nic, Owner
from reconcile.core.guests.shares import MODULES_TAG, NIX_STORE, STORE_TAG, ShareSpec

UNUSED_MODULES = Path("/lib/modules/unused")  # a kernel without the `modules` share


def build_domain_spec(
    *,
    lab: str,
    guest: str,
    mode: GuestMode,
    toplevel: str,
    accel: Accel,
    memory_mib: int,
    vcpus: int,
    kernel: Path,
    initrd: Path,
    cmdline: str,
    modules: Path | None,
    shares: tuple[Share, ...],
    network: str | None,
    mac: str | None,
    serial_log: Path,
    protect: bool = False,
) -> DomainSpec:
    """A spec with the `store` (+ `modules`) shares first, each served from its directory.

    `mac` None with a network set derives one from lab + guest, as production does.
    """
    reserved = {STORE_TAG, MODULES_TAG} & {s.tag for s in shares}
    if reserved:
        raise ValueError(f"{guest}: share tags {sorted(reserved)} are reserved")
    system = [Share(STORE_TAG, NIX_STORE, writable=False)]
    if modules is not None:
        system.append(Share(MODULES_TAG, modules, writable=False))
    definition = GuestDefinition(
        accel=accel,
        toplevel=toplevel,
        kernel=BootKernel(kernel, "0" * 64, modules or UNUSED_MODULES, ()),
        cmdline=cmdline,
        memory_mib=memory_mib,
        vcpus=vcpus,
        shares=tuple(
            ShareSpec(s.tag, str(s.source), s.writable, str(s.source)) for s in (*system, *shares)
        ),
        network=Nic(network, mac or mac_address(lab, guest)) if network is not None else None,
        serial_log=serial_log,
        mark=Owner(lab, guest, str(mode), protect),
    )
    return DomainSpec(definition, initrd)
