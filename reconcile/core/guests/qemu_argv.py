"""An imageless guest as plain QEMU and virtiofsd command lines, and the record the QEMU
driver keeps of a definition: what `render_domain_xml` is for libvirt.

Pure. Every value is one argv element (no shell); values QEMU parses as `key=value,...`
have their commas doubled, and a path virtiofsd cannot take (a comma splits its `-o`
list) is refused. The record is JSON: the facts the diff compares (as libvirt's XML
gives them) and the argv to start the guest from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconcile.core.desired import Accel
from reconcile.core.errors import ProbeError, ReconcileError
from reconcile.core.guests.domain_xml import DomainFacts, DomainSpec, ShareFacts
from reconcile.core.guests.identity import Mark

QEMU = "qemu-system-x86_64"
VIRTIOFSD = "/usr/lib/qemu/virtiofsd"  # Debian's qemu-system-common
SOCKET_MAX = 107  # sun_path is 108 bytes with its NUL
RECORD_FORMAT = "reconcile-qemu-guest/1"


@dataclass(frozen=True)
class RunDir:
    """Where one guest's processes keep their sockets, pids and records (the driver's)."""

    root: Path

    @property
    def mark(self) -> Path:  # lab, guest, spec hash: no mark, no touch
        return self.root / "mark.json"

    @property
    def definition(self) -> Path:  # the persistent definition (record)
        return self.root / "definition.json"

    @property
    def live(self) -> Path:  # the running definition; gone when QEMU exits
        return self.root / "live.json"

    @property
    def qmp(self) -> Path:
        return self.root / "qmp.sock"

    def fs_socket(self, index: int) -> Path:
        return self.root / f"fs{index}.sock"

    @property
    def supervisor_pid(self) -> Path:
        return self.root / "supervisor.pid"

    @property
    def qemu_pid(self) -> Path:
        return self.root / "qemu.pid"

    @property
    def exit(self) -> Path:  # how QEMU ended last: {"code": N}
        return self.root / "exit.json"

    @property
    def log(self) -> Path:  # the supervisor's, QEMU's and virtiofsd's stderr
        return self.root / "supervisor.log"


def _opt(value: str) -> str:
    """A value inside QEMU's `key=value,...` syntax: a comma is written twice."""
    return value.replace(",", ",,")


def _socket(path: Path) -> str:
    text = str(path)
    if len(text.encode()) > SOCKET_MAX:
        raise ReconcileError(
            f"socket path too long for a Unix socket ({len(text)} > {SOCKET_MAX} bytes): {text}",
            hint="use a shorter lab.state_dir",
        )
    return text


def qemu_argv(spec: DomainSpec, run: RunDir) -> list[str]:
    """The QEMU command line of an imageless guest, as the libvirt XML has it: q35, ACPI,
    memfd shared memory for virtiofs, direct kernel boot, serial console to a file, and
    no reboot (a guest reboot would reuse the old kernel arguments)."""
    d = spec.definition
    if d.network is not None:
        raise ReconcileError(
            f"guest '{d.mark.name}': the qemu driver has no libvirt networks",
            hint="remove the guest's network, or put it on a libvirt hypervisor",
        )
    accel = "kvm" if d.accel is Accel.KVM else "tcg"
    argv = [
        QEMU,
        *("-name", f"guest={_opt(d.name)}"),
        *("-uuid", d.uuid),
        *("-machine", f"q35,accel={accel}"),
        *(("-cpu", "host") if d.accel is Accel.KVM else ()),
        *("-m", f"{d.memory_mib}M"),
        *("-smp", str(d.vcpus)),
        *("-object", f"memory-backend-memfd,id=mem,size={d.memory_mib}M,share=on"),
        *("-numa", "node,memdev=mem"),
        *("-kernel", str(d.kernel.image)),
        *("-initrd", str(spec.initrd)),
        *("-append", d.cmdline),
        *("-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"),
        *("-chardev", f"file,id=serial0,path={_opt(str(d.serial_log))}"),
        *("-serial", "chardev:serial0"),
        *("-qmp", f"unix:{_opt(_socket(run.qmp))},server=on,wait=off"),
    ]
    for index, share in enumerate(d.shares):
        argv += [
            *("-chardev", f"socket,id=fs{index},path={_opt(_socket(run.fs_socket(index)))}"),
            *("-device", f"vhost-user-fs-pci,chardev=fs{index},tag={_opt(share.tag)}"),
        ]
    return argv


def virtiofsd_argvs(spec: DomainSpec, run: RunDir) -> list[list[str]]:
    """One virtiofsd per share. A read-only share's source is already its read-only view
    (QEMU 7.2's virtiofsd has no read-only option)."""
    argvs = []
    for index, share in enumerate(spec.definition.shares):
        if "," in share.source:
            raise ReconcileError(
                f"share '{share.tag}': virtiofsd cannot serve a path with a comma: {share.source}",
                hint="rename the directory, or use a libvirt hypervisor",
            )
        argvs.append(
            [
                VIRTIOFSD,
                f"--socket-path={_socket(run.fs_socket(index))}",
                *("-o", f"source={share.source}"),
                *("-o", "cache=auto"),
            ]
        )
    return argvs


# --- the record -----------------------------------------------------------------------


def record(spec: DomainSpec, run: RunDir) -> dict[str, Any]:
    """What the driver writes on define: the facts as the diff reads them, and the argv."""
    facts = DomainFacts.from_spec(spec)
    mark = spec.mark
    return {
        "format": RECORD_FORMAT,
        "facts": {
            "name": facts.name,
            "uuid": facts.uuid,
            "domain_type": facts.domain_type,
            "memory_kib": facts.memory_kib,
            "vcpus": facts.vcpus,
            "kernel": facts.kernel,
            "initrd": facts.initrd,
            "cmdline": facts.cmdline,
            "shares": [list(s) for s in facts.shares],
            "mark": {
                "lab": mark.lab,
                "name": mark.name,
                "mode": mark.mode,
                "spec_hash": mark.spec_hash,
                "toplevel": mark.toplevel,
                "kernel": mark.kernel,
                "protect": mark.protect,
            },
        },
        "virtiofsd": virtiofsd_argvs(spec, run),
        "qemu": qemu_argv(spec, run),
    }


def facts_of(document: object, where: str) -> DomainFacts:
    """The facts of a record; ProbeError when it is not one (then the guest is unknown)."""
    if not isinstance(document, dict) or document.get("format") != RECORD_FORMAT:
        raise ProbeError(f"{where}: not a guest record of this version")
    try:
        f = document["facts"]
        m = f["mark"]
        mark = Mark(
            lab=str(m["lab"]),
            name=str(m["name"]),
            mode=str(m["mode"]),
            spec_hash=str(m["spec_hash"]),
            toplevel=str(m["toplevel"]),
            kernel=str(m["kernel"]),
            protect=bool(m["protect"]),
        )
        ready = document.get("ready")
        return DomainFacts(
            name=str(f["name"]),
            uuid=str(f["uuid"]),
            domain_type=str(f["domain_type"]),
            memory_kib=int(f["memory_kib"]),
            vcpus=int(f["vcpus"]),
            kernel=str(f["kernel"]),
            initrd=str(f["initrd"]),
            cmdline=str(f["cmdline"]),
            shares=tuple(ShareFacts(str(t), str(s)) for t, s in f["shares"]),
            nics=(),  # the qemu driver has no networks
            mark=mark,
            ready=str(ready) if ready is not None else None,
        )
    except (KeyError, TypeError, ValueError):
        raise ProbeError(f"{where}: not a guest record of this version") from None


def argvs_of(document: dict[str, Any]) -> tuple[list[list[str]], list[str]]:
    """virtiofsd's and QEMU's argv from a record (facts_of checked its format)."""
    virtiofsd = [[str(a) for a in argv] for argv in document["virtiofsd"]]
    return virtiofsd, [str(a) for a in document["qemu"]]
