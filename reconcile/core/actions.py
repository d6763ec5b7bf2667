"""Actions: the nodes of a plan. Keys come from manifest names, never from call order."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from reconcile.core.hosts import HostIntent
from reconcile.core.intent import GuestIntent
from reconcile.core.shares import View


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
    COPY = "copy"  # `nix copy` the closure into the host's store (nothing if present)
    PROFILE = "profile"  # point the host's system profile at it (not for `test`)
    ACTIVATE = "activate"  # switch-to-configuration switch|boot|test, detached from SSH
    REBOOT = "reboot"  # `boot` with reboot = true: reboot and wait for the new boot id
    HEALTH = "health"  # the manifest's checks; on failure roll back to `previous`


HOST_ACTIONS = frozenset(
    {ActionKind.COPY, ActionKind.PROFILE, ActionKind.ACTIVATE, ActionKind.REBOOT, ActionKind.HEALTH}
)


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    subject: str  # guest or host name, or "closures" for the build
    hypervisor: str = ""
    domain: str = ""
    intent: GuestIntent | None = None
    installables: tuple[str, ...] = ()  # BUILD only
    timeout_s: float = 0.0
    path: str = ""  # BUILD_KERNEL: the build's directory
    host: HostIntent | None = None  # host actions
    previous: str = ""  # host actions: the system to roll back to ("" = none known)
    boot_id: str = ""  # REBOOT: the boot observed before it
    view: View | None = None  # VIEW only

    @property
    def key(self) -> str:
        if self.kind is ActionKind.BUILD:
            return "build"
        if self.kind is ActionKind.BUILD_KERNEL:
            return f"kernel:{self.subject}"
        if self.kind is ActionKind.REMOVE_KERNEL:
            return f"remove-kernel:{self.subject}"
        if self.kind is ActionKind.VIEW:
            return f"view:{self.subject}"
        return f"{self.subject}/{self.kind.value}"
