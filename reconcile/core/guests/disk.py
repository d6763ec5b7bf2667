"""A disk guest's complete definition, its spec hash, and its intent.

Pure. A disk guest boots from a qcow2 overlay in the lab's state directory whose backing
file is a base image Nix built into the store: the system's own boot loader, kernel and
initrd, never a host path. `define` turns a guest and its resolved inputs into a
`DiskDefinition`, everything libvirt's definition is made from; its hash goes into the
ownership mark like an imageless guest's (core/guests/hashing.py).

Three things are deliberately not in the hash, because each has its own change class:
- the base image: with `update = "switch"` a new system is switched to over SSH and the
  disk keeps its old backing file; with `recreate` a new image wipes the overlay (the
  mark's `image` is compared);
- the system: what runs is what the guest reports over SSH (a baremetal-style switch);
- the overlay's size: growing it is a resize of the running disk, not a new domain.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from reconcile.core.desired import Accel, DiskFormat, DiskUpdate, Guest, NetworkKind
from reconcile.core.guests.hashing import spec_hash
from reconcile.core.guests.identity import Mark, domain_name, domain_uuid, mac_address
from reconcile.core.guests.imageless import Owner
from reconcile.core.guests.shares import ShareSpec, View, share_spec, views_of
from reconcile.core.layout import StateLayout

# Part of every disk guest's spec hash: bump it on purpose when the rendered XML changes.
RENDER_VERSION = 1
# What a disk guest's mark says of its kernel: the image's own, loaded by its boot loader.
IMAGE_KERNEL = "from its image"
# The image variant of `config.system.build.images` each format comes from (NixOS names).
IMAGE_VARIANTS = {DiskFormat.QCOW2: "qemu", DiskFormat.RAW: "raw"}
IMAGE_SUFFIXES = {DiskFormat.QCOW2: (".qcow2",), DiskFormat.RAW: (".img", ".raw")}


@dataclass(frozen=True)
class DiskNic:
    kind: NetworkKind
    name: str  # the libvirt network or bridge; "" for user networking
    mac: str
    ssh_port: int | None  # user networking: 127.0.0.1:<port> is forwarded to port 22
    address: str | None  # a bridge's static address, `a.b.c.d/len`


@dataclass(frozen=True)
class DataDiskSpec:
    name: str
    path: Path  # made at its manifest size when missing; never wiped, never shrunk


@dataclass(frozen=True)
class DiskDefinition:
    """Everything the hypervisor's definition of one disk guest is made from."""

    accel: Accel
    memory_mib: int
    vcpus: int
    overlay: Path  # the system disk, /dev/vda
    base_format: DiskFormat  # the backing file's format, named to qemu (never probed)
    network: DiskNic | None
    data_disks: tuple[DataDiskSpec, ...]  # /dev/vdb, ... in manifest order
    serial_log: Path
    shares: tuple[ShareSpec, ...]  # the manifest's, then its config shares (store paths)
    mark: Owner
    render: int = RENDER_VERSION

    def __post_init__(self) -> None:
        if self.memory_mib <= 0 or self.vcpus <= 0:
            raise ValueError(f"{self.name}: memory and vCPUs must be positive")

    @property
    def name(self) -> str:
        return domain_name(self.mark.lab, self.mark.name)

    @property
    def uuid(self) -> str:
        return domain_uuid(self.mark.lab, self.mark.name)

    @functools.cached_property
    def spec_hash(self) -> str:
        return spec_hash(self)


@dataclass(frozen=True)
class DiskIntent:
    """A disk guest as the manifest says it, with its inputs resolved."""

    guest: Guest
    definition: DiskDefinition
    toplevel: str  # the system it should run
    image: str  # the base image's store path (the output holding one image file)
    size_bytes: int  # the overlay's virtual size
    data_sizes: tuple[int, ...] = ()  # each data disk's size, as definition.data_disks

    @property
    def name(self) -> str:
        return self.guest.name

    @property
    def domain(self) -> str:
        return self.definition.name

    @property
    def spec_hash(self) -> str:
        return self.definition.spec_hash

    @property
    def shares(self) -> tuple[ShareSpec, ...]:
        return self.definition.shares

    @property
    def views(self) -> tuple[View, ...]:
        """The read-only views its shares are served from (made before each start)."""
        return views_of(self.definition.shares)

    @property
    def recreates(self) -> bool:
        return self.guest.update is DiskUpdate.RECREATE

    def ownership(self, image: str) -> Mark:
        """The mark written into the domain: the system it was made with, and the image its
        overlay really is on (a switched guest's is older than `self.image`)."""
        return Mark(
            lab=self.definition.mark.lab,
            name=self.definition.mark.name,
            mode=self.definition.mark.mode,
            spec_hash=self.spec_hash,
            toplevel=self.toplevel,
            kernel=IMAGE_KERNEL,
            protect=self.definition.mark.protect,
            image=image,
        )


def image_key(guest: str) -> str:
    """The key of a disk guest's base image among the plan's installables to build."""
    return f"{guest} (image)"


def store_path_of(path: str) -> str:
    """/nix/store/<hash>-<name> of a file inside a store path (the GC root to keep)."""
    parts = path.split("/")
    return "/".join(parts[:4]) if len(parts) > 3 and parts[1:3] == ["nix", "store"] else path


def image_installable(flake: str, system: str, fmt: DiskFormat) -> str:
    """The base image of a manifest `system` name in the lab's flake (NixOS's
    `system.build.images.<variant>`). A system given as an installable needs `disk.image`."""
    variant = IMAGE_VARIANTS[fmt]
    return f"{flake}#nixosConfigurations.{system}.config.system.build.images.{variant}"


def share_key(guest: str, tag: str) -> str:
    """The key of a config share's installable among the plan's installables to build."""
    return f"{guest} (share {tag})"


def define(
    lab: str,
    guest: Guest,
    *,
    accel: Accel,
    layout: StateLayout,
    config_sources: Mapping[str, str],
) -> DiskDefinition:
    """`config_sources`: each config share's store path, by tag."""
    assert guest.disk is not None  # the manifest gives every disk guest its defaults
    network = None
    if guest.network is not None:
        n = guest.network
        network = DiskNic(
            n.kind, n.name, n.mac or mac_address(lab, guest.name), n.ssh_port, n.address
        )
    return DiskDefinition(
        accel=accel,
        memory_mib=guest.memory_mib,
        vcpus=guest.vcpus,
        overlay=layout.overlay(guest.name),
        base_format=guest.disk.format,
        network=network,
        data_disks=tuple(
            DataDiskSpec(d.name, layout.data_disk(guest.name, d.name)) for d in guest.data_disks
        ),
        serial_log=layout.serial_log(guest.name),
        shares=(
            *(share_spec(layout, s.tag, s.source, s.writable) for s in guest.shares),
            *(
                share_spec(layout, c.tag, Path(config_sources[c.tag]), False)
                for c in guest.config_shares
            ),
        ),
        mark=Owner(lab, guest.name, guest.mode.value, guest.protect),
    )


def disk_intent(
    lab: str,
    guest: Guest,
    *,
    accel: Accel,
    layout: StateLayout,
    toplevel: str,
    image: str,
    config_sources: Mapping[str, str] | None = None,
) -> DiskIntent:
    assert guest.disk is not None
    definition = define(lab, guest, accel=accel, layout=layout, config_sources=config_sources or {})
    sizes = tuple(d.size_bytes for d in guest.data_disks)
    return DiskIntent(guest, definition, toplevel, image, guest.disk.size_bytes, sizes)
