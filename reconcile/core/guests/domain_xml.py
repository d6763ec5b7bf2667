"""The libvirt definition of an imageless guest, as a value: render it, parse it back.

Pure: no libvirt import, no I/O. The adapter sends `render_domain_xml(spec)` to libvirt and
hands what libvirt returns to `parse_domain_xml`, which reads only what decisions need and
tolerates libvirt's rewriting (added defaults, reordered elements, memory in KiB).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from reconcile.core.desired import Accel
from reconcile.core.errors import ProbeError
from reconcile.core.guests.identity import MARK_NAMESPACE, Mark
from reconcile.core.guests.imageless import GuestDefinition

MARK_PREFIX = "reconcile"
_NS = f"{{{MARK_NAMESPACE}}}"
_MARK_FIELDS = ("lab", "name", "mode", "spec-hash", "toplevel", "kernel")
# A second element, set on the live definition only once the system reported ready: it
# vanishes when the domain stops, so "running but never confirmed ready" stays visible.
READY_NAMESPACE = "urn:reconcile:ready:1"
READY_KEY = "reconcile-ready"
_PROTECT = "protect"  # optional in a mark: absent reads as false
_IMAGE = "image"  # optional in a mark: only disk guests have one

# libvirt's scaled-integer units (docs: formatdomain "memory"); "KB" and friends are powers of
# 1000, "k"/"KiB" powers of 1024.
_UNIT_BYTES = {
    "b": 1,
    "bytes": 1,
    "KB": 10**3,
    "k": 2**10,
    "KiB": 2**10,
    "MB": 10**6,
    "M": 2**20,
    "MiB": 2**20,
    "GB": 10**9,
    "G": 2**30,
    "GiB": 2**30,
    "TB": 10**12,
    "T": 2**40,
    "TiB": 2**40,
    "PB": 10**15,
    "P": 2**50,
    "PiB": 2**50,
    "EB": 10**18,
    "E": 2**60,
    "EiB": 2**60,
}

# ElementTree's prefix registry is process-global; registering is idempotent and only makes
# the rendered XML read `reconcile:` instead of `ns0:`.
ET.register_namespace(MARK_PREFIX, MARK_NAMESPACE)


@dataclass(frozen=True)
class DomainSpec:
    """A guest's definition with what the driver adds: the initrd it boots, made after the
    closure is built from inputs the definition covers (its hash does not change)."""

    definition: GuestDefinition
    initrd: Path

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def uuid(self) -> str:
        return self.definition.uuid

    @property
    def mark(self) -> Mark:
        return self.definition.ownership

    @property
    def serial_log(self) -> Path:
        return self.definition.serial_log


# NamedTuples, so that `dict(facts.shares)` maps tag -> source.
class ShareFacts(NamedTuple):
    tag: str
    source: str  # the shared directory, or virtiofsd's socket when it runs outside libvirt


class DiskFacts(NamedTuple):
    target: str  # vda, vdb, ...
    source: str  # the file
    backing_format: str = ""  # the format its <backingStore> names ("" for none)


class NicFacts(NamedTuple):
    mac: str | None
    network: str | None  # the network or bridge it joins; None for other interfaces


@dataclass(frozen=True)
class DomainFacts:
    """What the diff needs from a definition libvirt holds; `mark` None means unmanaged."""

    name: str
    uuid: str
    domain_type: str
    memory_kib: int
    vcpus: int
    kernel: str | None  # text, not Path: parsing a thousand domains should not build paths
    initrd: str | None
    cmdline: str
    shares: tuple[ShareFacts, ...]
    nics: tuple[NicFacts, ...]
    mark: Mark | None
    ready: str | None = None  # the toplevel this boot confirmed ready (live definition only)
    disks: tuple[DiskFacts, ...] = ()  # file-backed disks, in device order
    qemu_args: tuple[str, ...] = ()  # <qemu:commandline> (a disk guest's user networking)

    @property
    def memory_mib(self) -> int:
        return self.memory_kib // 1024

    @property
    def managed(self) -> bool:
        return self.mark is not None

    @classmethod
    def from_spec(cls, spec: DomainSpec) -> DomainFacts:
        """The facts libvirt should report once `spec` is defined: compare with `==`."""
        d = spec.definition
        return cls(
            name=d.name,
            uuid=d.uuid,
            domain_type=str(d.accel),
            memory_kib=d.memory_mib * 1024,
            vcpus=d.vcpus,
            kernel=str(d.kernel.image),
            initrd=str(spec.initrd),
            cmdline=d.cmdline,
            shares=tuple(ShareFacts(s.tag, s.source) for s in d.shares),
            nics=(NicFacts(d.network.mac, d.network.network),) if d.network is not None else (),
            mark=d.ownership,
        )


# --- rendering ----------------------------------------------------------------------------


def sub(
    parent: ET.Element, tag: str, attrib: dict[str, str] | None = None, text: str | None = None
) -> ET.Element:
    child = ET.SubElement(parent, tag, attrib or {})
    child.text = text
    return child


def render_mark(parent: ET.Element, mark: Mark) -> None:
    owner = sub(parent, _NS + "domain")
    values = (mark.lab, mark.name, mark.mode, mark.spec_hash, mark.toplevel, mark.kernel)
    for field, value in zip(_MARK_FIELDS, values, strict=True):
        sub(owner, _NS + field, text=value)
    sub(owner, _NS + _PROTECT, text="true" if mark.protect else "false")
    if mark.image:
        sub(owner, _NS + _IMAGE, text=mark.image)


def render_domain_xml(spec: DomainSpec) -> str:
    """The domain XML of an imageless guest (docs/architecture.md). Values go through
    ElementTree, which escapes them."""
    d = spec.definition
    root = ET.Element("domain", {"type": str(d.accel)})
    sub(root, "name", text=d.name)
    sub(root, "uuid", text=d.uuid)
    render_mark(sub(root, "metadata"), d.ownership)
    sub(root, "memory", {"unit": "MiB"}, str(d.memory_mib))
    sub(root, "currentMemory", {"unit": "MiB"}, str(d.memory_mib))
    # vhost-user-fs needs guest RAM that virtiofsd can map: shared memfd, no NUMA needed.
    backing = sub(root, "memoryBacking")
    sub(backing, "source", {"type": "memfd"})
    sub(backing, "access", {"mode": "shared"})
    sub(root, "vcpu", text=str(d.vcpus))
    os_ = sub(root, "os")
    sub(os_, "type", {"arch": "x86_64", "machine": "q35"}, "hvm")
    sub(os_, "kernel", text=str(d.kernel.image))
    sub(os_, "initrd", text=str(spec.initrd))
    sub(os_, "cmdline", text=d.cmdline)
    # Without <acpi/> libvirt starts QEMU with ACPI off and a graceful shutdown cannot work.
    features = sub(root, "features")
    sub(features, "acpi")
    sub(features, "apic")
    if d.accel is Accel.KVM:
        sub(root, "cpu", {"mode": "host-passthrough"})
    # No DAC relabelling: libvirt would otherwise chown the kernel and initrd (store paths)
    # to the QEMU user. QEMU still runs as that user; store files are world-readable.
    sub(root, "seclabel", {"type": "none", "model": "dac"})
    # A guest reboot would reuse the old kernel arguments: end the domain instead.
    for event in ("on_poweroff", "on_reboot", "on_crash"):
        sub(root, event, text="destroy")
    devices = sub(root, "devices")
    for share in d.shares:
        # libvirt 9.0 rejects <readonly/> on virtiofs: a read-only share's source is a
        # read-only view on the host (adapters/views.py).
        fs = sub(devices, "filesystem", {"type": "mount", "accessmode": "passthrough"})
        sub(fs, "driver", {"type": "virtiofs"})
        sub(fs, "source", {"dir": share.source})
        sub(fs, "target", {"dir": share.tag})
    if d.network is not None:
        nic = sub(devices, "interface", {"type": "network"})
        sub(nic, "mac", {"address": d.network.mac})
        sub(nic, "source", {"network": d.network.network})
        sub(nic, "model", {"type": "virtio"})
    serial = sub(devices, "serial", {"type": "file"})
    sub(serial, "source", {"path": str(d.serial_log)})
    sub(serial, "target", {"port": "0"})
    console = sub(devices, "console", {"type": "file"})
    sub(console, "source", {"path": str(d.serial_log)})
    sub(console, "target", {"type": "serial", "port": "0"})
    sub(devices, "controller", {"type": "usb", "model": "none"})
    sub(devices, "memballoon", {"model": "none"})
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


# --- parsing ------------------------------------------------------------------------------
# One pass over the children that matter, no XPath: observe parses every domain of a
# hypervisor on each run, and this is most of its Python time.


def _memory_kib(element: ET.Element | None, name: str) -> int:
    text = (element.text or "").strip() if element is not None else ""
    if element is None or not text:
        raise ProbeError(f"domain {name}: definition has no <memory>")
    unit = element.get("unit", "KiB")
    if unit not in _UNIT_BYTES:
        raise ProbeError(f"domain {name}: unknown memory unit {unit!r}")
    try:
        value = int(text)
    except ValueError:
        raise ProbeError(f"domain {name}: memory is not a number: {text!r}") from None
    return -(-value * _UNIT_BYTES[unit] // 1024)  # libvirt rounds up to whole KiB


def _parse_mark(metadata: ET.Element | None, name: str) -> Mark | None:
    owner = metadata.find(_NS + "domain") if metadata is not None else None
    if owner is None:
        return None
    values = {child.tag.removeprefix(_NS): (child.text or "").strip() for child in owner}
    missing = [field for field in _MARK_FIELDS if not values.get(field)]
    if missing:
        raise ProbeError(f"domain {name}: malformed reconcile mark, missing {missing}")
    protect = values.get(_PROTECT, "false")
    if protect not in ("true", "false"):
        raise ProbeError(f"domain {name}: malformed reconcile mark, protect={protect!r}")
    return Mark(
        lab=values["lab"],
        name=values["name"],
        mode=values["mode"],
        spec_hash=values["spec-hash"],
        toplevel=values["toplevel"],
        kernel=values["kernel"],
        protect=protect == "true",
        image=values.get(_IMAGE, ""),
    )


def _share(fs: ET.Element) -> ShareFacts | None:
    target, source = fs.find("target"), fs.find("source")
    tag = target.get("dir") if target is not None else None
    src = (source.get("dir") or source.get("socket")) if source is not None else None
    return ShareFacts(tag, src or "") if tag else None


def _nic(nic: ET.Element) -> NicFacts:
    mac, source = nic.find("mac"), nic.find("source")
    network = (source.get("network") or source.get("bridge")) if source is not None else None
    return NicFacts(mac.get("address") if mac is not None else None, network)


def _disk(disk: ET.Element) -> DiskFacts | None:
    target, source = disk.find("target"), disk.find("source")
    dev = target.get("dev") if target is not None else None
    path = source.get("file") if source is not None else None
    backing = disk.find("backingStore/format")
    fmt = (backing.get("type") or "") if backing is not None else ""
    return DiskFacts(dev, path, fmt) if dev and path else None


def _devices(
    devices: ET.Element | None,
) -> tuple[tuple[ShareFacts, ...], tuple[NicFacts, ...], tuple[DiskFacts, ...]]:
    shares: list[ShareFacts] = []
    nics: list[NicFacts] = []
    disks: list[DiskFacts] = []
    for device in devices if devices is not None else ():
        if device.tag == "filesystem":
            share = _share(device)
            if share is not None:
                shares.append(share)
        elif device.tag == "interface":
            nics.append(_nic(device))
        elif device.tag == "disk":
            disk = _disk(device)
            if disk is not None:
                disks.append(disk)
    return tuple(shares), tuple(nics), tuple(disks)


_QEMU_COMMANDLINE = "{http://libvirt.org/schemas/domain/qemu/1.0}commandline"


def _qemu_args(line: ET.Element | None) -> tuple[str, ...]:
    return tuple(arg.get("value", "") for arg in line) if line is not None else ()


def parse_domain_xml(xml: str) -> DomainFacts:
    """The facts of a definition as libvirt returns it; ProbeError when it cannot be read.

    A domain whose reconcile mark is present but malformed raises too: it is neither ours
    to change nor safely someone else's, so callers treat it as unknown.
    """
    try:
        # libvirtd's own output, not untrusted input.
        root = ET.fromstring(xml)  # noqa: S314
    except ET.ParseError as exc:
        raise ProbeError(f"unreadable domain XML: {exc}") from None
    top: dict[str, ET.Element] = {}
    for child in root:
        top.setdefault(child.tag, child)
    name_element = top.get("name")
    name = (name_element.text or "") if name_element is not None else ""
    if root.tag != "domain" or not name:
        raise ProbeError("domain XML without <domain><name>")
    vcpu = top.get("vcpu")
    vcpu_text = (vcpu.text or "").strip() if vcpu is not None else ""
    if not vcpu_text.isdigit():
        raise ProbeError(f"domain {name}: vcpu is not a number: {vcpu_text!r}")
    os_: dict[str, str] = {}
    for child in top.get("os", ()):
        os_.setdefault(child.tag, child.text or "")
    uuid_element = top.get("uuid")
    shares, nics, disks = _devices(top.get("devices"))
    return DomainFacts(
        name=name,
        uuid=(uuid_element.text or "") if uuid_element is not None else "",
        domain_type=root.get("type", ""),
        memory_kib=_memory_kib(top.get("memory"), name),
        vcpus=int(vcpu_text),  # the maximum; a `current` attribute is not ours to set
        kernel=os_.get("kernel") or None,
        initrd=os_.get("initrd") or None,
        cmdline=os_.get("cmdline", ""),
        shares=shares,
        nics=nics,
        mark=_parse_mark(top.get("metadata"), name),
        ready=_parse_ready(top.get("metadata")),
        disks=disks,
        qemu_args=_qemu_args(top.get(_QEMU_COMMANDLINE)),
    )


# DomainFacts as plain tuples and scalars (what `marshal` writes: adapters/parsed_domains.py
# keeps the facts of domains already parsed), field by field in declaration order.
PlainFacts = tuple[Any, ...]


def facts_to_plain(facts: DomainFacts) -> PlainFacts:
    mark = facts.mark
    return (
        facts.name,
        facts.uuid,
        facts.domain_type,
        facts.memory_kib,
        facts.vcpus,
        facts.kernel,
        facts.initrd,
        facts.cmdline,
        tuple(tuple(share) for share in facts.shares),
        tuple(tuple(nic) for nic in facts.nics),
        None
        if mark is None
        else (
            mark.lab,
            mark.name,
            mark.mode,
            mark.spec_hash,
            mark.toplevel,
            mark.kernel,
            mark.protect,
            mark.image,
        ),
        facts.ready,
        tuple(tuple(disk) for disk in facts.disks),
        facts.qemu_args,
    )


def facts_from_plain(plain: PlainFacts) -> DomainFacts:
    """The facts `facts_to_plain` gave; TypeError or ValueError for anything else."""
    name, uuid, kind, memory, vcpus, kernel, initrd, cmdline, *nested = plain
    shares, nics, mark, ready, disks, qemu_args = nested
    return DomainFacts(
        name=name,
        uuid=uuid,
        domain_type=kind,
        memory_kib=memory,
        vcpus=vcpus,
        kernel=kernel,
        initrd=initrd,
        cmdline=cmdline,
        shares=tuple(ShareFacts(*s) for s in shares),
        nics=tuple(NicFacts(*n) for n in nics),
        mark=None if mark is None else Mark(*mark),
        ready=ready,
        disks=tuple(DiskFacts(*d) for d in disks),
        qemu_args=tuple(qemu_args),
    )


def _parse_ready(metadata: ET.Element | None) -> str | None:
    found = metadata.find(f"{{{READY_NAMESPACE}}}ready") if metadata is not None else None
    return found.get("toplevel") if found is not None else None


def ready_xml(toplevel: str) -> str:
    element = ET.Element("ready", {"toplevel": toplevel})
    return ET.tostring(element, encoding="unicode")
