"""What each guest should be, with its inputs resolved: the diff's left-hand side.

A `GuestIntent` is pure data computed from the manifest plus resolved inputs (the system's
toplevel store path from evaluation, the kernel's image and digest). Its `spec_hash` is
what the ownership mark records, so an unchanged intent means an unchanged domain.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from reconcile.core.desired import Accel, Guest, Manifest
from reconcile.core.domain import RENDER_VERSION, domain_name, domain_uuid, mac_address

STORE_TAG = "store"
MODULES_TAG = "modules"


@dataclass(frozen=True)
class KernelInputs:
    """A kernel as resolved on the controller."""

    name: str
    image: Path  # the real file, symlinks resolved
    digest: str  # sha256 of the image: a changed kernel restarts its guests
    release: str
    modules: Path
    early_modules: tuple[str, ...]  # module files relative to `modules`, load order


@dataclass(frozen=True)
class ShareSpec:
    tag: str
    source: str
    writable: bool


@dataclass(frozen=True)
class GuestIntent:
    guest: Guest
    domain: str
    uuid: str
    mac: str | None
    accel: Accel
    toplevel: str
    kernel: KernelInputs
    cmdline: str
    shares: tuple[ShareSpec, ...]
    serial_log: Path
    spec_hash: str

    @property
    def name(self) -> str:
        return self.guest.name


def store_view(state_dir: Path) -> Path:
    """Where the lab's read-only view of /nix/store is mounted."""
    return state_dir / "store"


def kernel_cmdline(toplevel: str, params: tuple[str, ...]) -> str:
    """The imageless contract: a tmpfs root, the serial console, the closure's init."""
    return " ".join(("root=tmpfs", "console=ttyS0,115200", f"init={toplevel}/init", *params))


def guest_intent(
    manifest: Manifest,
    guest: Guest,
    toplevel: str,
    kernel: KernelInputs,
) -> GuestIntent:
    lab = manifest.lab.name
    hypervisor = manifest.hypervisors[guest.hypervisor]
    shares = (
        # a read-only bind of /nix/store (adapters/storeview.py): guests cannot write to it
        ShareSpec(STORE_TAG, str(store_view(manifest.lab.state_dir)), False),
        # the guest mounts it at /lib/modules: it holds the <release> directory
        ShareSpec(MODULES_TAG, str(kernel.modules.parent), False),
        *(ShareSpec(s.tag, str(s.source), s.writable) for s in guest.shares),
    )
    mac = None
    if guest.network is not None:
        mac = guest.network.mac or mac_address(lab, guest.name)
    cmdline = kernel_cmdline(toplevel, guest.kernel_params)
    serial_log = manifest.lab.state_dir / "guests" / guest.name / "serial.log"
    fields: Mapping[str, object] = {
        "accel": hypervisor.accel.value,
        "toplevel": toplevel,
        "kernel": [str(kernel.image), kernel.digest, str(kernel.modules), kernel.early_modules],
        "cmdline": cmdline,
        "memory_mib": guest.memory_mib,
        "vcpus": guest.vcpus,
        "shares": [[s.tag, s.source, s.writable] for s in shares],
        "network": [guest.network.libvirt, mac] if guest.network else None,
        "serial_log": str(serial_log),
        "mark": [lab, guest.name, guest.mode.value, guest.protect],
        "render": RENDER_VERSION,  # a new rendering of the XML redefines every domain
    }
    spec_hash = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
    return GuestIntent(
        guest=guest,
        domain=domain_name(lab, guest.name),
        uuid=domain_uuid(lab, guest.name),
        mac=mac,
        accel=hypervisor.accel,
        toplevel=toplevel,
        kernel=kernel,
        cmdline=cmdline,
        shares=shares,
        serial_log=serial_log,
        spec_hash=spec_hash,
    )


def system_installable(flake: str, system: str) -> str:
    """A manifest `system` as an installable: a name, `.#attr` in the lab flake, or a full one."""
    if system.startswith(".#"):
        return f"{flake}{system[1:]}"
    if "#" in system:
        return system
    return f"{flake}#nixosConfigurations.{system}.config.system.build.toplevel"
