"""An imageless guest's complete definition, and its spec hash, computed in one place.

Pure. `define` turns a guest's desired state and its resolved inputs (the system's toplevel,
the kernel) into a `GuestDefinition`: every value the hypervisor's definition of the guest
is made from. The spec hash is of that value, field by field (`spec_hash`), so a field
added to the definition is hashed without anyone listing it; the hash goes into the
ownership mark, and an unchanged definition means an unchanged domain.

The one thing a driver adds is the initrd's path (`DomainSpec` in core/guests/domain_xml.py): it is
made after the closure is built, from the system's initrd and `kernel.early_modules`,
both of which the definition already covers.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from reconcile.core.desired import Accel, Guest
from reconcile.core.guests.hashing import spec_hash
from reconcile.core.guests.identity import Mark, domain_name, domain_uuid, mac_address
from reconcile.core.guests.shares import (
    MODULES_TAG,
    NIX_STORE,
    STORE_TAG,
    ShareSpec,
    View,
    share_spec,
    views_of,
)
from reconcile.core.layout import StateLayout

# Part of every spec hash: a change to what a driver renders from a definition (the domain
# XML) must redefine every domain. Bump it on purpose, with the pinned hash in the tests.
RENDER_VERSION = 1


@dataclass(frozen=True)
class BootKernel:
    """The kernel a guest boots, as resolved on the controller."""

    image: Path  # the real file, symlinks resolved
    digest: str  # sha256 of the image: a changed kernel restarts its guests
    modules: Path  # lib/modules/<release>
    early_modules: tuple[str, ...]  # module files relative to `modules`, load order


@dataclass(frozen=True)
class Nic:
    network: str  # a libvirt network name
    mac: str


@dataclass(frozen=True)
class Owner:
    """The mark's fixed part: whose guest this is. `protect` counts, so that a guest that
    becomes protected is redefined, and a later prune of it knows."""

    lab: str
    name: str  # the guest's name in the manifest
    mode: str  # a GuestMode value
    protect: bool


@dataclass(frozen=True)
class GuestDefinition:
    """Everything the hypervisor's definition of one imageless guest is made from.

    The field order of the nested values is part of the hash (see `spec_hash`): append
    new fields, bump RENDER_VERSION if a change must redefine domains.
    """

    accel: Accel
    toplevel: str  # the system closure's store path
    kernel: BootKernel
    cmdline: str
    memory_mib: int
    vcpus: int
    shares: tuple[ShareSpec, ...]  # `store` and `modules` first
    network: Nic | None
    serial_log: Path
    mark: Owner
    render: int = RENDER_VERSION

    def __post_init__(self) -> None:
        if self.memory_mib <= 0 or self.vcpus <= 0:
            raise ValueError(f"{self.name}: memory and vCPUs must be positive")
        tags = [share.tag for share in self.shares]
        if len(set(tags)) != len(tags):
            raise ValueError(f"{self.name}: duplicate share tags {tags}")

    @property
    def name(self) -> str:
        """The domain's name, `<lab>-<guest>`."""
        return domain_name(self.mark.lab, self.mark.name)

    @property
    def uuid(self) -> str:
        return domain_uuid(self.mark.lab, self.mark.name)

    @property
    def views(self) -> tuple[View, ...]:
        """The read-only views its shares are served from (made before each start)."""
        return views_of(self.shares)

    @functools.cached_property
    def spec_hash(self) -> str:
        return spec_hash(self)

    @property
    def ownership(self) -> Mark:
        """The mark written into the domain, with this definition's hash."""
        return Mark(
            lab=self.mark.lab,
            name=self.mark.name,
            mode=self.mark.mode,
            spec_hash=self.spec_hash,
            toplevel=self.toplevel,
            kernel=kernel_identity(self.kernel),
            protect=self.mark.protect,
        )


def kernel_identity(kernel: BootKernel) -> str:
    """What the mark records of the kernel: a changed image is a changed digest."""
    return f"{kernel.image} sha256:{kernel.digest[:12]}"


def kernel_cmdline(toplevel: str, params: tuple[str, ...]) -> str:
    """The imageless contract: a tmpfs root, the serial console, the closure's init."""
    return " ".join(("root=tmpfs", "console=ttyS0,115200", f"init={toplevel}/init", *params))


def define(
    lab: str,
    guest: Guest,
    *,
    accel: Accel,
    toplevel: str,
    kernel: BootKernel,
    layout: StateLayout,
) -> GuestDefinition:
    """The definition of `guest` booting `toplevel` on `kernel`."""
    shares = (
        share_spec(layout, STORE_TAG, NIX_STORE, False),
        # the guest mounts it at /lib/modules: it holds the <release> directory
        share_spec(layout, MODULES_TAG, kernel.modules.parent, False),
        *(share_spec(layout, s.tag, s.source, s.writable) for s in guest.shares),
    )
    network = None
    if guest.network is not None:
        network = Nic(guest.network.libvirt, guest.network.mac or mac_address(lab, guest.name))
    return GuestDefinition(
        accel=accel,
        toplevel=toplevel,
        kernel=kernel,
        cmdline=kernel_cmdline(toplevel, guest.kernel_params),
        memory_mib=guest.memory_mib,
        vcpus=guest.vcpus,
        shares=shares,
        network=network,
        serial_log=layout.serial_log(guest.name),
        mark=Owner(lab, guest.name, guest.mode.value, guest.protect),
    )
