"""Performing an imageless guest's steps through its hypervisor's driver, with a re-check
before each."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from reconcile.adapters import generations, nix
from reconcile.adapters.initrd import early_archive, guest_initrd, initrd_path
from reconcile.core.desired import BuildOn
from reconcile.core.errors import ReconcileError
from reconcile.core.guests.diff import definition_matches
from reconcile.core.guests.domain_xml import DomainSpec
from reconcile.core.guests.gcroots import closures_in_use, root_problems
from reconcile.core.guests.identity import domain_name
from reconcile.core.guests.intent import GuestIntent, system_installable
from reconcile.core.guests.observed import DomainState, ObservedDomain
from reconcile.core.layout import StateLayout
from reconcile.core.plan.actions import (
    DefineGuest,
    DestroyGuest,
    GuestRef,
    GuestStep,
    ShutdownGuest,
    StartGuest,
    SyncGcRoots,
    UndefineGuest,
    WaitReady,
)
from reconcile.logs import get_logger
from reconcile.orchestration.drivers import Driver
from reconcile.orchestration.executor import Check, StaleError
from reconcile.orchestration.machines import Machine
from reconcile.orchestration.pipeline import Context

log = get_logger(__name__)

READY_PREFIX = "reconcile-ready: "
# Console lines after which a guest will never become ready: fail at once, not at timeout.
FATAL_MARKERS = ("Kernel panic - not syncing", "reconcile-initrd: error:")
POLL_S = 0.25
LOG_TAIL_LINES = 25


def running(domain: ObservedDomain) -> bool:
    return domain.state in (DomainState.RUNNING, DomainState.PAUSED)


class GuestPerformer:
    """The executor's Performer for imageless guests."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @property
    def _layout(self) -> StateLayout:
        return self.ctx.manifest.lab.layout

    def _gcroot(self, guest: str) -> Path:
        return self._layout.gcroot(guest)

    def _probe(self, ref: GuestRef) -> ObservedDomain | None:
        domain = self.ctx.hypervisor(ref.hypervisor).probe(ref.domain)
        if domain is not None:
            mark = domain.config.mark
            lab = self.ctx.manifest.lab.name
            if mark is None or mark.lab != lab:
                raise StaleError(
                    f"domain '{ref.domain}' has no mark of lab '{lab}' now; it is never touched"
                )
            if mark.name != ref.name or domain_name(lab, mark.name) != ref.domain:
                raise StaleError(
                    f"domain '{ref.domain}' carries the mark of guest '{mark.name}' now, "
                    f"not of '{ref.name}'; it is never touched"
                )
        return domain

    # -- re-check -----------------------------------------------------------------

    def check(self, action: GuestStep) -> Check:
        if isinstance(action, WaitReady):
            return Check.NEEDED  # it reads the console: nothing to look at first
        domain = self._probe(action.guest)
        satisfied = False
        match action:
            case DefineGuest():
                satisfied = (
                    domain is not None
                    and domain.persistent  # a transient domain is defined again
                    and definition_matches(action.intent, domain.config)
                )
            case SyncGcRoots():
                wanted = closures_in_use(domain) if domain is not None else set()
                roots = self._machine(action).observe((), self._layout).roots
                satisfied = not root_problems(wanted, roots.get(action.subject, {}))
            case StartGuest():
                if domain is None:
                    raise StaleError(f"domain '{action.guest.domain}' vanished before its start")
                satisfied = running(domain)
            case ShutdownGuest() | DestroyGuest():
                satisfied = domain is None or not running(domain)
            case UndefineGuest():
                satisfied = domain is None
        return Check.SATISFIED if satisfied else Check.NEEDED

    # -- acting -------------------------------------------------------------------

    def perform(self, action: GuestStep) -> None:
        match action:
            case DefineGuest():
                assert isinstance(action.intent, GuestIntent)  # disk guests: disk_guests.py
                spec = self._boot_spec(action, action.intent)
                self._hv(action).define(spec)
                self._sync_roots(action.guest, also=action.intent.toplevel)
                lab = self.ctx.manifest.lab
                generations.record(
                    lab.layout, action.subject, action.intent.toplevel, lab.generations
                )
            case StartGuest():
                assert isinstance(action.intent, GuestIntent)
                machine = self._machine(action)
                machine.fresh_console(action.intent.definition.serial_log)
                # the files it boots from exist (a state dir wiped, a hypervisor reinstalled?)
                self._boot_spec(action, action.intent)
                machine.ensure_views(action.intent.views, self._layout)
                self._hv(action).start(action.guest.domain)
                self._sync_roots(action.guest)  # the old running closure needs no root now
            case WaitReady():
                self.wait_ready(action)
            case ShutdownGuest():
                graceful = self._hv(action).shutdown(action.guest.domain, action.timeout_s)
                log.info("shut down", guest=action.subject, graceful=graceful)
            case DestroyGuest():
                self._hv(action).destroy(action.guest.domain)
            case UndefineGuest():
                self._hv(action).undefine(action.guest.domain)
                self._machine(action).sync_gc_roots(self._gcroot(action.subject), set())
                if action.subject not in self.ctx.manifest.guests:  # pruned, not moved
                    generations.forget(self.ctx.manifest.lab.layout, action.subject)
            case SyncGcRoots():
                self._sync_roots(action.guest)  # the guest itself is not touched

    def _hv(self, action: GuestStep) -> Driver:
        return self.ctx.hypervisor(action.guest.hypervisor)

    def _machine(self, action: GuestStep) -> Machine:
        return self.ctx.machine(action.guest.hypervisor)

    def _boot_spec(self, action: GuestStep, intent: GuestIntent) -> DomainSpec:
        """The definition with its initrd; on a remote hypervisor, with the closure, kernel
        and initrd it names put there (or built there, with `build_on = "hypervisor"`)."""
        machine = self._machine(action)
        kernel = intent.kernel  # the controller's; a remote definition names its copy
        hypervisor = self.ctx.manifest.hypervisors[action.guest.hypervisor]
        if hypervisor.build_on is BuildOn.HYPERVISOR:
            return self._built_there(machine, intent)
        spec = self.domain_spec(intent)
        if machine.remote:
            machine.put_closure(intent.toplevel)
            machine.put_kernel(kernel.image, kernel.modules, intent.definition.kernel)
            machine.put_file(spec.initrd)
        return spec

    def _built_there(self, machine: Machine, intent: GuestIntent) -> DomainSpec:
        """The system built in the hypervisor's store, its initrd joined there from the
        early modules (made here, from the controller's kernel) and the system's own."""
        from reconcile.adapters.remote_hypervisor import RemoteMachine  # noqa: PLC0415

        assert isinstance(machine, RemoteMachine)  # the manifest allows it on qemu+ssh only
        lab, kernel = self.ctx.manifest.lab, intent.kernel
        installable = system_installable(lab.flake, intent.guest.system)
        machine.build(installable, intent.toplevel, lab.build_timeout_s)
        bootspec = machine.read_bootspec(intent.toplevel)
        if "initrd" not in bootspec:
            raise ReconcileError(
                f"{intent.toplevel} has no initrd in its boot.json",
                hint="an imageless guest needs a systemd initrd that mounts the store",
            )
        machine.put_kernel(kernel.image, kernel.modules, intent.definition.kernel)
        files = kernel.early_modules  # resolved already: module files, in load order
        if not files:
            return DomainSpec(intent.definition, Path(bootspec["initrd"]))
        initrd = initrd_path(self._layout.initrd_dir, intent.toplevel, kernel.modules, files)
        machine.join_initrd(initrd, early_archive(kernel.modules, files), bootspec["initrd"])
        return DomainSpec(intent.definition, initrd)

    def _sync_roots(self, ref: GuestRef, also: str | None = None) -> None:
        """Roots for every closure the domain's persistent or running definition uses."""
        domain = self._probe(ref)
        used = {also} if also else set()
        if domain is not None:
            used |= closures_in_use(domain)
        self.ctx.machine(ref.hypervisor).sync_gc_roots(self._gcroot(ref.name), used)

    def domain_spec(self, intent: GuestIntent) -> DomainSpec:
        """The definition, now that the closure is built (its initrd is read from boot.json)."""
        bootspec = nix.read_bootspec(intent.toplevel)
        if "initrd" not in bootspec:
            raise ReconcileError(
                f"{intent.toplevel} has no initrd in its boot.json",
                hint="an imageless guest needs a systemd initrd that mounts the store",
            )
        initrd = guest_initrd(
            Path(bootspec["initrd"]),
            intent.toplevel,
            intent.kernel.modules,
            intent.kernel.early_modules,
            self._layout.initrd_dir,
        )
        return DomainSpec(intent.definition, initrd)

    def wait_ready(self, action: WaitReady) -> None:
        """Wait for the system's readiness line; a guest that stops or times out fails."""
        toplevel = action.definition.toplevel
        want = f"{READY_PREFIX}{toplevel}"
        hv = self._hv(action)
        await_console(
            hv.console(action.definition),
            lambda lines: want if want in lines else None,
            read=self._machine(action).read_console,
            probe=lambda: hv.probe(action.guest.domain),
            guest=action.subject,
            timeout_s=action.timeout_s,
            waiting_for=f"'{want}'",
        )
        hv.mark_ready(action.guest.domain, toplevel)


def await_console(
    log_path: Path,
    found: Callable[[list[str]], str | None],
    *,
    probe: Callable[[], ObservedDomain | None],
    guest: str,
    timeout_s: float,
    waiting_for: str,
    read: Callable[[Path], str] | None = None,
) -> str:
    """Poll a guest's console log until `found` (given its stripped lines) returns a line;
    fail at once on a fatal line or a guest that stopped, and after `timeout_s`. `read`
    reads the log where it is (default: this machine)."""
    read = read or read_console
    deadline = time.monotonic() + timeout_s
    next_probe = 0.0
    while True:
        text = read(log_path)
        lines = [line.strip() for line in text.splitlines()]
        if (line := found(lines)) is not None:
            return line
        fatal = next((ln for ln in lines if any(m in ln for m in FATAL_MARKERS)), None)
        if fatal is not None:
            raise ReconcileError(
                f"guest '{guest}' failed to boot: {fatal}" + tail(text, log_path),
                hint=f"its console log is {log_path}",
            )
        now = time.monotonic()
        if now >= next_probe:
            domain = probe()
            if domain is None or not running(domain):
                raise ReconcileError(
                    f"guest '{guest}' stopped before it was ready" + tail(text, log_path),
                    hint=f"its console log is {log_path}",
                )
            next_probe = now + 2.0
        if now >= deadline:
            raise ReconcileError(
                f"guest '{guest}' not ready after {timeout_s:g}s (waiting for {waiting_for})"
                + tail(text, log_path),
                hint=f"raise guests.{guest}.boot_timeout, or read {log_path}",
            )
        time.sleep(POLL_S)


def read_console(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def tail(text: str, path: Path) -> str:
    lines = text.rstrip().splitlines()[-LOG_TAIL_LINES:]
    if not lines:
        return f"\n  (nothing on the console yet: {path})"
    return f"\n  last lines of {path}:\n" + "\n".join(f"    {line}" for line in lines)
