"""Performing a disk guest's steps: its disks, its libvirt definition, its boot.

The steps a disk guest shares with imageless ones (define, start, shutdown, destroy,
undefine, GC roots) are re-checked as theirs are (orchestration/guests.py); its own are
the disk files (adapters/disks.py) and its readiness, which also pins the SSH host key the
guest printed on its console at its first boot. A new system reaches a running disk guest
as it reaches a baremetal host (orchestration/hosts.py), over that pinned key.
"""

from __future__ import annotations

from pathlib import Path

from reconcile.adapters import disks, files, generations, nix, views
from reconcile.core.errors import ReconcileError
from reconcile.core.guests.disk import DiskIntent
from reconcile.core.guests.disk_xml import DiskDomainSpec, disk_target
from reconcile.core.plan.actions import (
    DefineGuest,
    GrowDisk,
    GuestRef,
    PrepareDisks,
    RemoveDisks,
    StartGuest,
    UndefineGuest,
    WaitBooted,
    WipeDisk,
)
from reconcile.core.sshkeys import host_key_problem
from reconcile.logs import get_logger
from reconcile.orchestration.drivers import DiskDriver
from reconcile.orchestration.executor import Check
from reconcile.orchestration.guests import (
    READY_PREFIX,
    GuestPerformer,
    await_console,
    read_console,
    running,
)
from reconcile.orchestration.pipeline import Context

log = get_logger(__name__)

HOST_KEY_PREFIX = "reconcile-ssh-host-key: "

DiskAction = (
    DefineGuest | StartGuest | PrepareDisks | WipeDisk | GrowDisk | RemoveDisks | WaitBooted
)


class DiskGuestPerformer(GuestPerformer):
    """The executor's Performer for disk guests."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self._fresh: set[str] = set()  # guests whose overlay this run made: a new host key

    def _disk_hv(self, ref: GuestRef) -> DiskDriver:
        hv: object = self.ctx.hypervisor(ref.hypervisor)  # a Driver, maybe a DiskDriver too
        if not isinstance(hv, DiskDriver):
            raise ReconcileError(
                f"hypervisor '{ref.hypervisor}' cannot run disk guests",
                hint="disk guests need a libvirt hypervisor",
            )
        return hv

    # -- re-check -----------------------------------------------------------------

    def check(self, action: object) -> Check:
        match action:
            case PrepareDisks():
                d = action.intent.definition
                done = d.overlay.exists() and all(x.path.exists() for x in d.data_disks)
                return Check.SATISFIED if done else Check.NEEDED
            case WipeDisk():
                return Check.NEEDED  # an overlay on the new image may still be the old one
            case GrowDisk():
                found = disks.inspect(action.intent.definition.overlay)
                grown = found is not None and found.virtual_size >= action.intent.size_bytes
                return Check.SATISFIED if grown else Check.NEEDED
            case RemoveDisks():
                left = self._disk_files(action.subject)
                return Check.NEEDED if left else Check.SATISFIED
            case WaitBooted():
                return Check.NEEDED
        return super().check(action)  # type: ignore[arg-type]

    # -- acting -------------------------------------------------------------------

    def perform(self, action: object) -> None:
        match action:
            case PrepareDisks():
                self._prepare(action.intent)
            case WipeDisk():
                overlay = action.intent.definition.overlay
                disks.remove(overlay)
                self._layout.guest_host_key(action.subject).unlink(missing_ok=True)
                self._prepare(action.intent)
                log.info("disk wiped", guest=action.subject, overlay=str(overlay))
            case GrowDisk():
                self._grow(action.guest, action.intent)
            case RemoveDisks():
                for path in self._disk_files(action.subject):
                    disks.remove(path)
                self._layout.guest_host_key(action.subject).unlink(missing_ok=True)
                log.info("disks removed", guest=action.subject)
            case WaitBooted():
                self._wait_booted(action)
            case DefineGuest() if isinstance(action.intent, DiskIntent):
                spec = self.disk_spec(action.intent)
                self._disk_hv(action.guest).define(spec)
                self._sync_roots(action.guest, also=spec.mark.image)
                lab = self.ctx.manifest.lab
                generations.record(
                    lab.layout, action.subject, action.intent.toplevel, lab.generations
                )
            case StartGuest() if isinstance(action.intent, DiskIntent):
                serial_log = action.intent.definition.serial_log
                serial_log.parent.mkdir(parents=True, exist_ok=True)
                serial_log.unlink(missing_ok=True)
                views.ensure(self._layout.views_lock, action.intent.views)  # read-only shares
                self._disk_hv(action.guest).start(action.guest.domain)
                self._sync_roots(action.guest)
            case UndefineGuest():
                self.ctx.hypervisor(action.guest.hypervisor).undefine(action.guest.domain)
                nix.sync_gc_roots(self._gcroot(action.subject), set())
                if action.subject not in self.ctx.manifest.guests:
                    generations.forget(self.ctx.manifest.lab.layout, action.subject)
            case _:
                super().perform(action)  # type: ignore[arg-type]

    def disk_spec(self, intent: DiskIntent) -> DiskDomainSpec:
        """The definition, backed by the image its overlay really is on: a switched guest
        keeps its first image; only a recreate moves it to the new one."""
        found = disks.inspect(intent.definition.overlay)
        image = Path(found.backing) if found and found.backing else self._image(intent)
        return DiskDomainSpec(intent, image)

    def _image(self, intent: DiskIntent) -> Path:
        return disks.image_file(intent.image, intent.definition.base_format)

    def _prepare(self, intent: DiskIntent) -> None:
        d = intent.definition
        if not d.overlay.exists():
            image = self._image(intent)
            disks.create_overlay(d.overlay, image, d.base_format, intent.size_bytes)
            self._fresh.add(intent.name)
            log.info("overlay made", guest=intent.name, overlay=str(d.overlay), image=str(image))
        for data, size in zip(d.data_disks, intent.data_sizes, strict=True):
            if not data.path.exists():
                disks.create_data_disk(data.path, size)
                log.info("data disk made", guest=intent.name, disk=str(data.path))

    def _grow(self, ref: GuestRef, intent: DiskIntent) -> None:
        domain = self._probe(ref)
        if domain is not None and running(domain):
            self._disk_hv(ref).resize_disk(ref.domain, disk_target(0), intent.size_bytes)
        else:
            disks.grow(intent.definition.overlay, intent.size_bytes)

    def _disk_files(self, guest: str) -> list[Path]:
        directory = self._layout.guest_dir(guest)
        overlay = self._layout.overlay(guest)
        data = sorted(directory.glob("data-*.qcow2")) if directory.is_dir() else []
        return [p for p in (overlay, *data) if p.exists()]

    def _wait_booted(self, action: WaitBooted) -> None:
        """Any system's readiness line from this boot (the log is new at each start), and
        its host key: pinned when the disk is new or nothing is pinned yet, else it must be
        the pinned one."""
        hv = self._disk_hv(action.guest)
        log_path = hv.console(action.definition)
        ready = await_console(
            log_path,
            lambda lines: next((ln for ln in lines if ln.startswith(READY_PREFIX)), None),
            probe=lambda: hv.probe(action.guest.domain),
            guest=action.subject,
            timeout_s=action.timeout_s,
            waiting_for=f"'{READY_PREFIX}...'",
        )
        lines = [line.strip() for line in read_console(log_path).splitlines()]
        key = next((ln for ln in lines if ln.startswith(HOST_KEY_PREFIX)), None)
        self._pin(action.subject, key.removeprefix(HOST_KEY_PREFIX) if key else None)
        hv.mark_ready(action.guest.domain, ready.removeprefix(READY_PREFIX))

    def _pin(self, guest: str, key: str | None) -> None:
        ssh = self.ctx.manifest.guests[guest].ssh if guest in self.ctx.manifest.guests else None
        if ssh is not None and (ssh.host_key or ssh.known_hosts):
            return  # the manifest pins it
        path = self._layout.guest_host_key(guest)
        if key is None:
            log.warning("no host key on the console", guest=guest)
            return
        if problem := host_key_problem(key):
            raise ReconcileError(
                f"guest '{guest}' printed an unusable SSH host key: {problem}",
                hint="its system prints `reconcile-ssh-host-key: <type> <base64>` at boot",
            )
        pinned = path.read_text().strip() if path.exists() else None
        if pinned is not None and pinned != key and guest not in self._fresh:
            raise ReconcileError(
                f"guest '{guest}' presents a new SSH host key on a disk that was not made anew "
                f"(pinned: {pinned.split()[0]} ..., now {key.split()[0]} ...)",
                hint=f"if that is expected, remove {path} and apply again",
            )
        if pinned != key:
            files.write_atomic(path, key + "\n")
            log.info("host key pinned", guest=guest, key_type=key.split()[0])
