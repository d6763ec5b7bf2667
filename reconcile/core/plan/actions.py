"""Actions: the nodes of a plan, one type per kind of step, each with exactly what it needs.

Keys come from manifest names, never from call order. Every action has a `kind` (what the
plan shows), a `subject` (the guest, host, kernel or view it is about) and a `key`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import ClassVar

from reconcile.core.guests.disk import DiskDefinition, DiskIntent
from reconcile.core.guests.imageless import GuestDefinition
from reconcile.core.guests.intent import GuestIntent
from reconcile.core.guests.shares import View
from reconcile.core.hosts.baremetal import HostIntent


class ActionKind(StrEnum):
    BUILD = "build"  # realise every closure the plan needs, in one `nix build`
    BUILD_KERNEL = "build-kernel"  # configure and make one kernel of the manifest
    REMOVE_KERNEL = "remove-kernel"  # delete a kernel build nothing uses (--prune only)
    VIEW = "view"  # make a read-only view anew (it was writable, stale or missing)
    DEFINE = "define"  # write the domain definition (and its initrd, GC root, log dir)
    SHUTDOWN = "shutdown"  # ACPI shutdown, then destroy after the timeout
    START = "start"
    WAIT_READY = "wait-ready"  # the system's readiness line on the serial console
    DESTROY = "destroy"  # stop at once
    UNDEFINE = "undefine"  # remove the definition and release the GC root
    GC_ROOTS = "gc-roots"  # make a guest's GC roots anew (missing, elsewhere, unregistered)
    # baremetal hosts, in this order
    BUILD_ON_HOST = "build-on-host"  # build = "host": realise the closure in the host's store
    COPY = "copy"  # `nix copy` the closure into the host's store (nothing if present)
    PROFILE = "profile"  # point the host's system profile at it (not for `test`)
    ACTIVATE = "activate"  # switch-to-configuration switch|boot|test, detached from SSH
    REBOOT = "reboot"  # `boot` with reboot = true: reboot and wait for the new boot id
    HEALTH = "health"  # the manifest's checks; on failure roll back to `previous`
    # disk guests
    DISKS = "disks"  # make the overlay on the base image and the data disks, where missing
    WIPE = "wipe"  # make the overlay anew from the (new) image: what was on it is lost
    RESIZE = "resize"  # grow the overlay (online through libvirt when running)
    REMOVE_DISKS = "remove-disks"  # a pruned guest's overlay and data disks


# -- the lab's builds and views --------------------------------------------------------


@dataclass(frozen=True)
class BuildClosures:
    kind: ClassVar[ActionKind] = ActionKind.BUILD
    installables: tuple[str, ...]

    subject: ClassVar[str] = "closures"
    key: ClassVar[str] = "build"


@dataclass(frozen=True)
class BuildKernel:
    kind: ClassVar[ActionKind] = ActionKind.BUILD_KERNEL
    name: str  # the kernel's name in the manifest
    directory: Path  # its build directory, named by the inputs' key

    @property
    def subject(self) -> str:
        return self.name

    @property
    def key(self) -> str:
        return kernel_key(self.name)


@dataclass(frozen=True)
class RemoveKernel:
    kind: ClassVar[ActionKind] = ActionKind.REMOVE_KERNEL
    directory: Path
    hypervisor: str | None = None  # a kernel's copy on this remote hypervisor

    @property
    def subject(self) -> str:
        return self.directory.name

    @property
    def key(self) -> str:
        where = f"{self.hypervisor}:" if self.hypervisor else ""
        return f"remove-kernel:{where}{self.subject}"


@dataclass(frozen=True)
class MakeView:
    kind: ClassVar[ActionKind] = ActionKind.VIEW
    view: View
    hypervisor: str | None = None  # a remote hypervisor's view, made there

    @property
    def subject(self) -> str:
        return self.view.path.name

    @property
    def key(self) -> str:
        where = f"{self.hypervisor}:" if self.hypervisor else ""
        return f"view:{where}{self.subject}"


def kernel_key(name: str) -> str:
    return f"kernel:{name}"


# -- guests ----------------------------------------------------------------------------


@dataclass(frozen=True)
class GuestRef:
    """Which domain a guest step acts on: the executor re-checks it is still this guest's."""

    name: str
    hypervisor: str
    domain: str
    mode: str = "imageless"  # which machine kind performs its steps (orchestration/kinds.py)


@dataclass(frozen=True)
class _GuestStep:
    guest: GuestRef

    kind: ClassVar[ActionKind]

    @property
    def subject(self) -> str:
        return self.guest.name

    @property
    def key(self) -> str:
        return f"{self.guest.name}/{self.kind.value}"


@dataclass(frozen=True)
class DefineGuest(_GuestStep):
    kind: ClassVar[ActionKind] = ActionKind.DEFINE
    intent: GuestIntent | DiskIntent


@dataclass(frozen=True)
class StartGuest(_GuestStep):
    kind: ClassVar[ActionKind] = ActionKind.START
    intent: GuestIntent | DiskIntent  # what it boots: its files and views are made again first


@dataclass(frozen=True)
class WaitReady(_GuestStep):
    kind: ClassVar[ActionKind] = ActionKind.WAIT_READY
    definition: GuestDefinition  # what booted: the readiness line names its toplevel
    timeout_s: float


@dataclass(frozen=True)
class ShutdownGuest(_GuestStep):
    kind: ClassVar[ActionKind] = ActionKind.SHUTDOWN
    timeout_s: float  # then destroy


@dataclass(frozen=True)
class DestroyGuest(_GuestStep):
    kind: ClassVar[ActionKind] = ActionKind.DESTROY


@dataclass(frozen=True)
class UndefineGuest(_GuestStep):
    kind: ClassVar[ActionKind] = ActionKind.UNDEFINE


@dataclass(frozen=True)
class SyncGcRoots(_GuestStep):
    kind: ClassVar[ActionKind] = ActionKind.GC_ROOTS


# -- disk guests (besides the guest steps above) -----------------------------------------


@dataclass(frozen=True)
class PrepareDisks(_GuestStep):
    kind: ClassVar[ActionKind] = ActionKind.DISKS
    intent: DiskIntent


@dataclass(frozen=True)
class WipeDisk(_GuestStep):
    kind: ClassVar[ActionKind] = ActionKind.WIPE
    intent: DiskIntent


@dataclass(frozen=True)
class GrowDisk(_GuestStep):
    kind: ClassVar[ActionKind] = ActionKind.RESIZE
    intent: DiskIntent


@dataclass(frozen=True)
class RemoveDisks(_GuestStep):
    kind: ClassVar[ActionKind] = ActionKind.REMOVE_DISKS


@dataclass(frozen=True)
class WaitBooted(_GuestStep):
    """A disk guest's readiness: any system's line from this boot (its boot loader chose
    the system), and the SSH host key it printed, pinned at its first boot."""

    kind: ClassVar[ActionKind] = ActionKind.WAIT_READY
    definition: DiskDefinition
    timeout_s: float


# -- baremetal hosts -------------------------------------------------------------------


@dataclass(frozen=True)
class _HostStep:
    host: HostIntent

    kind: ClassVar[ActionKind]

    @property
    def subject(self) -> str:
        return self.host.name

    @property
    def key(self) -> str:
        return f"{self.host.name}/{self.kind.value}"


@dataclass(frozen=True)
class BuildOnHost(_HostStep):
    kind: ClassVar[ActionKind] = ActionKind.BUILD_ON_HOST


@dataclass(frozen=True)
class CopyClosure(_HostStep):
    kind: ClassVar[ActionKind] = ActionKind.COPY


@dataclass(frozen=True)
class SetProfile(_HostStep):
    kind: ClassVar[ActionKind] = ActionKind.PROFILE


@dataclass(frozen=True)
class Activate(_HostStep):
    kind: ClassVar[ActionKind] = ActionKind.ACTIVATE
    previous: str  # the system to roll back to ("" = none known)


@dataclass(frozen=True)
class Reboot(_HostStep):
    kind: ClassVar[ActionKind] = ActionKind.REBOOT
    boot_id: str  # the boot observed before it
    fallback: str = ""  # boot the new system once, this one staying the default ("": no)


@dataclass(frozen=True)
class CheckHealth(_HostStep):
    kind: ClassVar[ActionKind] = ActionKind.HEALTH
    previous: str  # the system to roll back to ("" = none known)


GuestStep = (
    DefineGuest
    | StartGuest
    | WaitReady
    | ShutdownGuest
    | DestroyGuest
    | UndefineGuest
    | SyncGcRoots
)
DiskStep = PrepareDisks | WipeDisk | GrowDisk | RemoveDisks | WaitBooted
HostStep = BuildOnHost | CopyClosure | SetProfile | Activate | Reboot | CheckHealth
LabStep = BuildClosures | BuildKernel | RemoveKernel | MakeView
Action = LabStep | GuestStep | DiskStep | HostStep
