"""Performing host actions: copy, profile, activate, reboot, health; rollback on failure.

Each host's actions run in order (the plan chains them); different hosts run in parallel
up to the executor's worker limit. Everything done to one host in one run shares one
deadline, the manifest's `ssh.total_timeout`.

Rollbacks are the host's own: before activating, a guard is started on the host
(core/hosts/guard.py) that rolls back by itself unless the health checks pass and a
fresh connection confirms within `confirm_timeout`. When the checks fail, reconcile asks
the guard to roll back now; when it cannot reach the host, it waits for the guard's
deadline and reads what the guard did once the host answers again.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from reconcile.adapters import deploy, generations
from reconcile.adapters.ssh import Session, UnreachableError
from reconcile.core.desired import Activation, Host
from reconcile.core.errors import DegradedError, ReconcileError, RolledBackError
from reconcile.core.hosts.guard import (
    GUARDS_DIR,
    ConfirmExit,
    GuardPhase,
    GuardSpec,
    GuardState,
)
from reconcile.core.plan.actions import (
    Activate,
    BuildOnHost,
    CheckHealth,
    CopyClosure,
    HostStep,
    Reboot,
    SetProfile,
)
from reconcile.logs import get_logger
from reconcile.orchestration.executor import Check
from reconcile.orchestration.pipeline import Context

log = get_logger(__name__)

GUARD_POLL_S = 0.25


@dataclass
class _Guarded:
    """A guard started on a host this run, and when it rolls back unless confirmed."""

    id: str
    previous: str
    acts_at: float  # monotonic: the controller's view of the guard's deadline


class HostPerformer:
    """The executor's Performer for host actions."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._deadlines: dict[str, float] = {}
        self._guards: dict[str, _Guarded] = {}
        self._lock = threading.Lock()

    def _session(self, action: HostStep) -> Session:
        return self.ctx.session(action.subject)

    def _remaining(self, host: Host) -> float:
        """Seconds left of this host's budget for the run (started at its first action)."""
        with self._lock:
            deadline = self._deadlines.setdefault(
                host.name, time.monotonic() + host.ssh.total_timeout_s
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ReconcileError(
                f"host '{host.name}': ssh.total_timeout ({host.ssh.total_timeout_s:g}s) spent",
                hint=f"raise hosts.{host.name}.ssh.total_timeout; the next run goes on from here",
            )
        return remaining

    def _systemd(self, name: str) -> bool:
        seen = self.ctx.seen_hosts.get(name)
        return seen is not None and seen.has_systemd

    # -- re-check -----------------------------------------------------------------

    def check(self, action: HostStep) -> Check:
        intent = action.host
        session = self._session(action)
        satisfied = False
        match action:
            case CopyClosure() | BuildOnHost():
                satisfied = deploy.has_path(session, intent.toplevel)
            case SetProfile():
                satisfied = deploy.profile_target(session) == intent.toplevel
            case Reboot():
                booted = session.run(["readlink", "/run/booted-system"], check=False)
                satisfied = booted.stdout.strip() == intent.toplevel
            case Activate() | CheckHealth():
                satisfied = False  # activation and checks are always run when planned
        return Check.SATISFIED if satisfied else Check.NEEDED

    # -- acting -------------------------------------------------------------------

    def perform(self, action: HostStep) -> None:
        intent = action.host
        host = intent.host
        remaining = self._remaining(host)
        match action:
            case BuildOnHost():
                deploy.build_on_host(
                    host.ssh,
                    intent.installable,
                    self._known_hosts(host),
                    min(remaining, self.ctx.manifest.lab.build_timeout_s),
                    self._copy_env(host),
                )
            case CopyClosure():
                known_hosts = deploy.known_hosts_file(
                    host.ssh, self.ctx.manifest.lab.layout.host_known_hosts(host.name)
                )
                deploy.copy_closure(
                    host.ssh,
                    intent.toplevel,
                    known_hosts,
                    min(remaining, host.ssh.command_timeout_s),
                    self._copy_env(host),
                )
            case SetProfile():
                deploy.set_profile(self._session(action), intent.toplevel)
            case Activate():
                self._activate(action, remaining)
            case Reboot():
                self._reboot(action, remaining)
            case CheckHealth():
                self._health(action, remaining)
                if intent.machine == "disk guest":  # its generations, as a guest's define records
                    lab = self.ctx.manifest.lab
                    generations.record(lab.layout, host.name, intent.toplevel, lab.generations)

    def _reboot(self, action: Reboot, remaining: float) -> None:
        intent = action.host
        host = intent.host
        session = self._session(action)
        if action.fallback:  # booted once: a failed boot comes back to the fallback
            armed = deploy.arm_boot_once(session, intent.toplevel, action.fallback)
            log.info("booting the new system once", host=host.name, set=armed)
        # A guard does not outlive the boot it runs in (its unit, its /run)
        before = self._guard(host.name, drop=True)
        deploy.reboot(session, self._systemd(host.name))
        self.ctx.reconnect(host.name)
        boot = deploy.wait_for_new_boot(
            host.ssh, action.boot_id, time.monotonic() + remaining, once=bool(action.fallback)
        )
        log.info("host rebooted", host=host.name, boot_id=boot.boot_id, booted=boot.booted)
        if action.fallback and boot.booted != intent.toplevel:
            self._fell_back(action, boot.booted)
        if before is not None:  # guard the new boot until its health is confirmed
            self._start_guard(action, before.previous, deploy.new_run_id(), "")

    def _fell_back(self, action: Reboot, booted: str) -> None:
        """The boot loader booted something else than the new system; always raises."""
        host, new, fallback = action.host.host, action.host.toplevel, action.fallback
        if booted != fallback:
            raise ReconcileError(
                f"host '{host.name}': rebooted into {booted or '(no /run/booted-system)'}, "
                f"neither the new system {new} nor {fallback}",
                hint="something else changed its boot entries; plan shows what it runs",
            )
        why = (
            f"host '{host.name}': the new system {new} did not come back from its reboot; "
            f"the boot loader booted {fallback}, which stayed the default"
        )
        try:
            deploy.restore_fallback(self.ctx.reconnect(host.name), new, fallback)
        except ReconcileError as error:
            raise ReconcileError(
                f"{why}, but putting its profile and boot default back failed: {error.message}",
                hint="it runs the previous system; until its profile is put back, its "
                "next `switch-to-configuration boot` makes the new one the default again",
            ) from None
        raise RolledBackError(f"{why}: rolled back to it")

    def _known_hosts(self, host: Host) -> Path:
        return deploy.known_hosts_file(
            host.ssh, self.ctx.manifest.lab.layout.host_known_hosts(host.name)
        )

    def _copy_env(self, host: Host) -> dict[str, str]:
        return self.ctx.agent_env(host.name) if host.ssh.passphrase_env else {}

    def _guard(self, name: str, *, drop: bool = False) -> _Guarded | None:
        with self._lock:
            return self._guards.pop(name, None) if drop else self._guards.get(name)

    def _start_guard(
        self, action: Activate | Reboot, previous: str, run: str, activation: str
    ) -> None:
        """Start the host's guard: back to `previous` unless confirmed in time, which is
        `confirm_timeout` after the activation `activation` ("" = none) has ended."""
        intent = action.host
        host = intent.host
        wait = host.ssh.command_timeout_s if activation else 0.0
        guard = GuardSpec(
            id=f"guard-{run}",
            toplevel=intent.toplevel,
            previous=previous,
            mode=host.activation.value,
            confirm_s=max(1, math.ceil(host.confirm_timeout_s)),
            wait_s=math.ceil(wait),
            status_file=deploy.status_file(activation) if activation else "",
        )
        deploy.start_guard(self._session(action), guard, self._systemd(host.name))
        acts_at = time.monotonic() + wait + host.confirm_timeout_s
        with self._lock:
            self._guards[host.name] = _Guarded(guard.id, previous, acts_at)

    def _activate(self, action: Activate, remaining: float) -> None:
        intent = action.host
        host = intent.host
        session = self._session(action)
        run = deploy.new_run_id()
        if action.previous:  # with nothing to go back to, there is nothing to guard
            self._start_guard(action, action.previous, run, f"activate-{run}")
        run_id = deploy.start_activation(
            session, intent.toplevel, host.activation, self._systemd(host.name), run
        )
        result = deploy.await_activation(
            session,
            run_id,
            time.monotonic() + min(remaining, host.ssh.command_timeout_s),
            lambda: self.ctx.reconnect(host.name),
        )
        guarded = self._guard(host.name)
        if guarded is not None:  # the guard's clock starts at the activation's end
            guarded.acts_at = time.monotonic() + host.confirm_timeout_s
        said = _last_lines(result.output)
        if result.ok:
            return
        if result.degraded:
            raise DegradedError(
                f"host '{host.name}': switch-to-configuration {host.activation.value} "
                f"exited {result.code}: "
                f"the new system is active, but some units failed{said}"
            )
        self._rollback(
            action,
            f"host '{host.name}': switch-to-configuration {host.activation.value} failed "
            f"(exit {result.code}){said}",
        )

    def _health(self, action: CheckHealth, remaining: float) -> None:
        intent = action.host
        host = intent.host
        timeout = host.health_timeout_s
        failures = deploy.check_health(host.ssh, host.health, min(remaining, timeout))
        if failures:
            self._rollback(
                action,
                f"host '{host.name}': health checks failed after {timeout:g}s: "
                + "; ".join(failures),
            )
        # `boot` (not rebooted) leaves the old system running: confirm whatever is active
        expected = "" if host.activation is Activation.BOOT and not host.reboot else intent.toplevel
        self._confirm(action, expected)

    def _confirm(self, action: CheckHealth, expected: str) -> None:
        """Confirm over a fresh connection (the host still takes logins), winning the
        guard's token; while the host cannot be reached, until the guard's deadline."""
        host = action.host.host
        guarded = self._guard(host.name)
        while True:
            try:
                session = self.ctx.reconnect(host.name)
                confirmed = deploy.confirm(session, expected, guarded.id if guarded else "")
                break
            except UnreachableError as error:
                if guarded is None:
                    raise
                if time.monotonic() >= guarded.acts_at:
                    self._guard(host.name, drop=True)
                    self._await_guard(
                        action,
                        guarded,
                        f"host '{host.name}': its health checks passed, but it could not be "
                        f"reached to confirm them within confirm_timeout "
                        f"({host.confirm_timeout_s:g}s): {error.message}",
                    )
                log.warning("cannot reach the host to confirm; retrying", error=error.message)
                time.sleep(deploy.RECONNECT_POLL_S)
        match confirmed:
            case ConfirmExit.CONFIRMED:
                self._guard(host.name, drop=True)
            case ConfirmExit.DEFAULT_KEPT:
                self._guard(host.name, drop=True)
                raise ReconcileError(
                    f"host '{host.name}': confirmed, but the boot default reconcile set when "
                    "it booted the new system once could not be cleared (bootctl set-default)",
                    hint="until `bootctl set-default ''` works on the host, a reboot boots the "
                    "previous system",
                )
            case ConfirmExit.NOT_ACTIVE:
                raise ReconcileError(
                    f"host '{host.name}': the active system is not {expected}, "
                    "whose health checks passed",
                    hint="something else activated a system meanwhile; plan shows what runs",
                )
            case ConfirmExit.GUARD_WON if guarded is not None:
                self._guard(host.name, drop=True)
                self._await_guard(
                    action,
                    guarded,
                    f"host '{host.name}': its guard's confirm_timeout "
                    f"({host.confirm_timeout_s:g}s) ran out before the confirmation",
                )
            case ConfirmExit.GUARD_WON:
                raise RolledBackError(
                    f"host '{host.name}': the guard of an earlier run rolled it back "
                    "while its health was being checked",
                )

    def _rollback(self, action: Activate | CheckHealth, why: str) -> None:
        """Back to the system the host ran before this run, by its guard; always raises."""
        host = action.host.host
        guarded = self._guard(host.name, drop=True)
        if guarded is None:
            raise ReconcileError(
                f"{why}; no previous system is known to roll back to",
                hint="fix the system and apply again, or roll back by hand: "
                "nix-env -p /nix/var/nix/profiles/system --rollback && "
                "/run/current-system/bin/switch-to-configuration switch",
            )
        log.warning("rolling back", host=host.name, to=guarded.previous, why=why)
        try:
            deploy.ask_guard_to_roll_back(self.ctx.reconnect(host.name), guarded.id)
            guarded.acts_at = time.monotonic()
        except UnreachableError as error:
            log.warning(
                "cannot reach the host; its guard rolls back by itself at its deadline",
                host=host.name,
                error=error.message,
                in_s=round(max(0.0, guarded.acts_at - time.monotonic()), 1),
            )
        self._await_guard(action, guarded, why)

    def _await_guard(self, action: Activate | CheckHealth, guarded: _Guarded, why: str) -> None:
        """What the guard did once it acted, read whenever the host answers; always raises.

        Waits until the guard's deadline plus `command_timeout` (its own activation of the
        previous system), within the host's `total_timeout`.
        """
        host = action.host.host
        previous = guarded.previous
        until = guarded.acts_at + host.ssh.command_timeout_s
        with self._lock:
            until = min(until, self._deadlines.get(host.name, until))
        state: GuardState | None = None
        error = ""
        while True:
            try:
                state = deploy.guard_state(self.ctx.session(host.name), guarded.id)
                error = ""
                if state.phase not in (GuardPhase.PENDING, GuardPhase.ROLLING_BACK):
                    break
                if state.phase is GuardPhase.PENDING and state.alive is False:
                    break
            except UnreachableError as lost:
                error = lost.message
            except ReconcileError as failed:  # a state cut short: ask again
                error = failed.message
            if time.monotonic() >= until:
                break
            time.sleep(GUARD_POLL_S if not error else deploy.RECONNECT_POLL_S)
        where = f"its guard's log is {GUARDS_DIR}/{guarded.id}.log on the host"
        said = _last_lines(state.log) if state is not None else ""
        if state is not None and state.rolled_back:
            how = "asked by reconcile" if state.asked else "not confirmed in time"
            raise RolledBackError(f"{why}; rolled back to {previous} by the host's guard ({how})")
        if state is not None and state.phase is GuardPhase.ROLLED_BACK:
            raise ReconcileError(
                f"{why}; the rollback to {previous} failed too (switch-to-configuration "
                f"exit {state.switch_code}, profile {state.profile}){said}",
                hint=f"the host needs a person: log in and check its current system; {where}",
            )
        seen = f"the guard is {state.phase.value}" if state is not None else "never reached"
        if state is not None and state.phase is GuardPhase.PENDING and state.alive is False:
            seen = "the guard is not running"
        raise ReconcileError(
            f"{why}; the host's guard should roll it back to {previous}, but reconcile "
            f"cannot tell whether it did ({seen}{': ' + error if error else ''})",
            hint=f"the next plan shows which system the host runs; {where}",
        )


def _last_lines(output: str, lines: int = 8) -> str:
    tail = output.strip().splitlines()[-lines:]
    return (":\n    " + "\n    ".join(tail)) if tail else ""
