"""The libvirt definition of a disk guest, as a value (core/guests/domain_xml.py parses it).

Pure. The guest boots from its overlay (`/dev/vda`) with the image's own boot loader: no
`<kernel>`, no host path but the overlay, the data disks and the serial log.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from reconcile.core.desired import Accel, NetworkKind
from reconcile.core.guests.disk import DiskDefinition, DiskIntent, store_path_of
from reconcile.core.guests.domain_xml import (
    DiskFacts,
    DomainFacts,
    NicFacts,
    ShareFacts,
    render_mark,
    sub,
)
from reconcile.core.guests.identity import Mark

QEMU_NAMESPACE = "http://libvirt.org/schemas/domain/qemu/1.0"
_Q = f"{{{QEMU_NAMESPACE}}}"
USER_NETDEV = "rnet0"
# An explicit slot: without it the NIC QEMU adds takes the one libvirt gave the first disk.
USER_NIC_SLOT = "0x9"
ET.register_namespace("qemu", QEMU_NAMESPACE)


def disk_target(index: int) -> str:
    """vda, vdb, ... (index 0 is the system disk)."""
    return "vd" + "abcdefghijklmnopqrstuvwxyz"[index]


@dataclass(frozen=True)
class DiskDomainSpec:
    """A disk guest's definition with what the driver needs besides: the image file the
    overlay is backed by (found in the image's output once it is built)."""

    intent: DiskIntent
    image_file: Path

    @property
    def definition(self) -> DiskDefinition:
        return self.intent.definition

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def uuid(self) -> str:
        return self.definition.uuid

    @property
    def mark(self) -> Mark:
        return self.intent.ownership(store_path_of(str(self.image_file)))

    @property
    def serial_log(self) -> Path:
        return self.definition.serial_log


def user_netdev_args(port: int, mac: str) -> tuple[str, ...]:
    """QEMU's own user networking (libvirt 9.0 has no passt), SSH on a loopback port."""
    return (
        "-netdev",
        f"user,id={USER_NETDEV},hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device",
        f"virtio-net-pci,netdev={USER_NETDEV},mac={mac},addr={USER_NIC_SLOT}",
    )


def facts_of(intent: DiskIntent) -> DomainFacts:
    """The facts libvirt should report once the intent's definition is defined."""
    d = intent.definition
    nics: tuple[NicFacts, ...] = ()
    args: tuple[str, ...] = ()
    if d.network is not None and d.network.kind is NetworkKind.USER:
        assert d.network.ssh_port is not None
        args = user_netdev_args(d.network.ssh_port, d.network.mac)
    elif d.network is not None:
        nics = (NicFacts(d.network.mac, d.network.name or None),)
    return DomainFacts(
        name=d.name,
        uuid=d.uuid,
        domain_type=str(d.accel),
        memory_kib=d.memory_mib * 1024,
        vcpus=d.vcpus,
        kernel=None,
        initrd=None,
        cmdline="",
        shares=tuple(ShareFacts(s.tag, s.source) for s in d.shares),
        nics=nics,
        mark=intent.ownership(intent.image),
        disks=(
            DiskFacts("vda", str(d.overlay), str(d.base_format)),
            *(DiskFacts(disk_target(i), str(x.path)) for i, x in enumerate(d.data_disks, 1)),
        ),
        qemu_args=args,
    )


def render_disk_xml(spec: DiskDomainSpec) -> str:
    d = spec.definition
    root = ET.Element("domain", {"type": str(d.accel)})
    sub(root, "name", text=d.name)
    sub(root, "uuid", text=d.uuid)
    render_mark(sub(root, "metadata"), spec.mark)
    sub(root, "memory", {"unit": "MiB"}, str(d.memory_mib))
    sub(root, "currentMemory", {"unit": "MiB"}, str(d.memory_mib))
    if d.shares:  # vhost-user-fs needs guest RAM that virtiofsd can map
        backing = sub(root, "memoryBacking")
        sub(backing, "source", {"type": "memfd"})
        sub(backing, "access", {"mode": "shared"})
    sub(root, "vcpu", text=str(d.vcpus))
    os_ = sub(root, "os")
    sub(os_, "type", {"arch": "x86_64", "machine": "pc"}, "hvm")
    sub(os_, "boot", {"dev": "hd"})
    features = sub(root, "features")
    sub(features, "acpi")
    sub(features, "apic")
    if d.accel is Accel.KVM:
        sub(root, "cpu", {"mode": "host-passthrough"})
    sub(root, "on_poweroff", text="destroy")
    sub(root, "on_reboot", text="restart")  # the image's boot loader boots its next system
    sub(root, "on_crash", text="destroy")
    _render_devices(sub(root, "devices"), spec)
    if d.network is not None and d.network.kind is NetworkKind.USER:
        assert d.network.ssh_port is not None
        line = sub(root, _Q + "commandline")
        for arg in user_netdev_args(d.network.ssh_port, d.network.mac):
            sub(line, _Q + "arg", {"value": arg})
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def _render_devices(devices: ET.Element, spec: DiskDomainSpec) -> None:
    d = spec.definition
    system = _disk(devices, d.overlay, "vda", "qcow2")
    # The backing chain spelled out, so libvirt never probes a format, and never chowns the
    # store image to the QEMU user (it is shared, read-only, and not ours to relabel).
    backing = sub(system, "backingStore", {"type": "file"})
    sub(backing, "format", {"type": str(d.base_format)})
    source = sub(backing, "source", {"file": str(spec.image_file)})
    sub(source, "seclabel", {"model": "dac", "relabel": "no"})
    sub(backing, "backingStore")
    for index, data in enumerate(d.data_disks, start=1):
        disk = _disk(devices, data.path, disk_target(index), "qcow2")
        sub(disk, "serial", text=data.name)
    for share in d.shares:  # read-only ones serve a read-only view (core/guests/shares.py)
        fs = sub(devices, "filesystem", {"type": "mount", "accessmode": "passthrough"})
        sub(fs, "driver", {"type": "virtiofs"})
        sub(fs, "source", {"dir": share.source})
        sub(fs, "target", {"dir": share.tag})
    if d.network is not None and d.network.kind is not NetworkKind.USER:
        kind = "network" if d.network.kind is NetworkKind.LIBVIRT else "bridge"
        nic = sub(devices, "interface", {"type": kind})
        sub(nic, "mac", {"address": d.network.mac})
        sub(nic, "source", {kind: d.network.name})
        sub(nic, "model", {"type": "virtio"})
    serial = sub(devices, "serial", {"type": "file"})
    sub(serial, "source", {"path": str(d.serial_log)})
    sub(serial, "target", {"port": "0"})
    console = sub(devices, "console", {"type": "file"})
    sub(console, "source", {"path": str(d.serial_log)})
    sub(console, "target", {"type": "serial", "port": "0"})
    sub(devices, "controller", {"type": "usb", "model": "none"})
    sub(devices, "memballoon", {"model": "none"})


def _disk(devices: ET.Element, path: Path, target: str, fmt: str) -> ET.Element:
    disk = sub(devices, "disk", {"type": "file", "device": "disk"})
    sub(disk, "driver", {"name": "qemu", "type": fmt, "discard": "unmap"})
    sub(disk, "source", {"file": str(path)})
    sub(disk, "target", {"dev": target, "bus": "virtio"})
    return disk
