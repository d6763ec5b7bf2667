"""What each guest should be, with its inputs resolved: the diff's left-hand side.

A `GuestIntent` is the guest as the manifest says it, the kernel it boots as resolved on
the controller, and its complete definition (core/guests/imageless.py), whose hash the ownership
mark records.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from reconcile.core.desired import Guest, GuestMode, Manifest
from reconcile.core.guests import imageless, placement
from reconcile.core.guests.disk import DiskIntent
from reconcile.core.guests.imageless import BootKernel, GuestDefinition
from reconcile.core.guests.shares import ShareSpec, View


@dataclass(frozen=True)
class KernelInputs:
    """A kernel as resolved on the controller."""

    name: str
    image: Path  # the real file, symlinks resolved
    digest: str  # sha256 of the image: a changed kernel restarts its guests
    release: str
    modules: Path
    early_modules: tuple[str, ...]  # module files relative to `modules`, load order

    @property
    def boot(self) -> BootKernel:
        return BootKernel(self.image, self.digest, self.modules, self.early_modules)


@dataclass(frozen=True)
class GuestIntent:
    guest: Guest
    kernel: KernelInputs  # on the controller: what a remote hypervisor's copy is made from
    definition: GuestDefinition

    @property
    def name(self) -> str:
        return self.guest.name

    @property
    def domain(self) -> str:
        return self.definition.name

    @property
    def toplevel(self) -> str:
        return self.definition.toplevel

    @property
    def spec_hash(self) -> str:
        return self.definition.spec_hash

    @property
    def shares(self) -> tuple[ShareSpec, ...]:
        return self.definition.shares

    @property
    def views(self) -> tuple[View, ...]:
        """The read-only views its shares are served from (apply makes them before a start)."""
        return self.definition.views


def lab_views(intents: Iterable[GuestIntent | DiskIntent]) -> list[View]:
    """Every view the guests need, once each, by path."""
    return sorted({v for i in intents for v in i.views}, key=lambda v: str(v.path))


# What defines a guest of each mode this version manages: one core module per kind.
DEFINERS = {GuestMode.IMAGELESS: imageless.define}


def guest_intent(
    manifest: Manifest,
    guest: Guest,
    toplevel: str,
    kernel: KernelInputs,
) -> GuestIntent:
    hypervisor = manifest.hypervisors[guest.hypervisor]
    layout = manifest.lab.layout
    boot = kernel.boot
    if placement.is_remote(hypervisor):  # it boots the copy kept on that machine
        boot = placement.placed_kernel(layout, boot)
    definition = DEFINERS[guest.mode](
        manifest.lab.name,
        guest,
        accel=hypervisor.accel,
        toplevel=toplevel,
        kernel=boot,
        layout=layout,
    )
    return GuestIntent(guest, kernel, definition)


def system_installable(flake: str, system: str) -> str:
    """A manifest `system` as an installable: a name, `.#attr` in the lab flake, or a full one."""
    if system.startswith(".#"):
        return f"{flake}{system[1:]}"
    if "#" in system:
        return system
    return f"{flake}#nixosConfigurations.{system}.config.system.build.toplevel"
