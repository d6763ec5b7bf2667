"""What each guest should be, with its inputs resolved: the diff's left-hand side.

A `GuestIntent` is pure data computed from the manifest plus resolved inputs (the system's
toplevel store path from evaluation, the kernel's image and digest). Its `spec_hash` is
what the ownership mark records, so an unchanged intent means an unchanged domain.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from reconcile.core.desired import Accel, Guest, Manifest
from reconcile.core.domain import (
    MODULES_TAG,
    NIX_STORE,
    RENDER_VERSION,
    STORE_TAG,
    domain_name,
    domain_uuid,
    mac_address,
)


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
class View:
    """A bind of `source` at `path` that is read-only on the host: what a read-only share serves.

    libvirt 9.0 refuses `<readonly/>` on virtiofs and QEMU 7.2's virtiofsd has no read-only
    option: without it, a guest that mounts its tag read-write writes to the host.
    """

    path: Path
    source: Path


@dataclass(frozen=True)
class ShareSpec:
    tag: str
    source: str  # what virtiofsd serves: `origin` itself, or its read-only view
    writable: bool
    origin: str  # the host directory the guest sees

    @property
    def view(self) -> View | None:
        return None if self.writable else _view(self.source, self.origin)


@functools.lru_cache(maxsize=4096)
def _view(source: str, origin: str) -> View:
    """One value per distinct share (a view is frozen): 1000 guests share a few, and making
    paths anew per guest and per look cost ~30 ms of a no-op plan."""
    return View(Path(source), Path(origin))


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

    @property
    def views(self) -> tuple[View, ...]:
        """The read-only views its shares are served from (apply makes them before a start)."""
        return tuple(v for s in self.shares if (v := s.view) is not None)


@functools.lru_cache(maxsize=4096)
def view_path(state_dir: Path, source: Path) -> Path:
    """Where the lab's read-only view of `source` is mounted: one per source directory."""
    if source == NIX_STORE:
        return state_dir / "store"  # where earlier versions kept it: their bind is checked
    digest = hashlib.sha256(str(source).encode()).hexdigest()[:16]
    return state_dir / "views" / digest


@functools.lru_cache(maxsize=4096)
def share_spec(state_dir: Path, tag: str, origin: Path, writable: bool) -> ShareSpec:
    source = origin if writable else view_path(state_dir, origin)
    return ShareSpec(tag, str(source), writable, str(origin))


def lab_views(intents: Iterable[GuestIntent]) -> list[View]:
    """Every view the guests need, once each, by path."""
    return sorted({v for i in intents for v in i.views}, key=lambda v: str(v.path))


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
    state_dir = manifest.lab.state_dir
    shares = (
        share_spec(state_dir, STORE_TAG, NIX_STORE, False),
        # the guest mounts it at /lib/modules: it holds the <release> directory
        share_spec(state_dir, MODULES_TAG, kernel.modules.parent, False),
        *(share_spec(state_dir, s.tag, s.source, s.writable) for s in guest.shares),
    )
    mac = None
    if guest.network is not None:
        mac = guest.network.mac or mac_address(lab, guest.name)
    cmdline = kernel_cmdline(toplevel, guest.kernel_params)
    serial_log = state_dir / "guests" / guest.name / "serial.log"
    fields: Mapping[str, object] = {
        "accel": hypervisor.accel.value,
        "toplevel": toplevel,
        "kernel": [str(kernel.image), kernel.digest, str(kernel.modules), kernel.early_modules],
        "cmdline": cmdline,
        "memory_mib": guest.memory_mib,
        "vcpus": guest.vcpus,
        "shares": [[s.tag, s.source, s.writable, s.origin] for s in shares],
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
