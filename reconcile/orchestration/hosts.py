"""Performing host actions: copy, profile, activate, reboot, health; rollback on failure.

Each host's actions run in order (the plan chains them); different hosts run in parallel
up to the executor's worker limit. Everything done to one host in one run shares one
deadline, the manifest's `ssh.total_timeout`.
"""

from __future__ import annotations

import threading
import time

from reconcile.adapters import deploy
from reconcile.adapters.ssh import Session
from reconcile.core.desired import Activation, Host
from reconcile.core.errors import DegradedError, ReconcileError, RolledBackError
from reconcile.core.hosts.baremetal import SYSTEM_PROFILE
from reconcile.core.plan.actions import (
    Activate,
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


class HostPerformer:
    """The executor's Performer for host actions."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._deadlines: dict[str, float] = {}
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
            case CopyClosure():
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
                deploy.reboot(self._session(action), self._systemd(host.name))
                self.ctx.reconnect(host.name)
                boot_id = deploy.wait_for_new_boot(
                    host.ssh, action.boot_id, time.monotonic() + remaining
                )
                log.info("host rebooted", host=host.name, boot_id=boot_id)
            case CheckHealth():
                self._health(action, remaining)

    def _copy_env(self, host: Host) -> dict[str, str]:
        return self.ctx.agent_env(host.name) if host.ssh.passphrase_env else {}

    def _activate(self, action: Activate, remaining: float) -> None:
        intent = action.host
        host = intent.host
        session = self._session(action)
        run_id = deploy.start_activation(
            session, intent.toplevel, host.activation, self._systemd(host.name)
        )
        result = deploy.await_activation(
            session,
            run_id,
            time.monotonic() + min(remaining, host.ssh.command_timeout_s),
            lambda: self.ctx.reconnect(host.name),
        )
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
        deploy.confirm(self.ctx.reconnect(host.name), expected)

    def _rollback(self, action: Activate | CheckHealth, why: str) -> None:
        """Back to the system the host ran before this run; always raises."""
        host = action.host.host
        previous = action.previous
        if not previous:
            raise ReconcileError(
                f"{why}; no previous system is known to roll back to",
                hint="fix the system and apply again, or roll back by hand: "
                "nix-env -p /nix/var/nix/profiles/system --rollback && "
                "/run/current-system/bin/switch-to-configuration switch",
            )
        log.warning("rolling back", host=host.name, to=previous, why=why)
        session = self.ctx.reconnect(host.name)
        if host.activation is not Activation.TEST:
            session.run(["nix-env", "-p", SYSTEM_PROFILE, "--rollback"], check=False)
            if deploy.profile_target(session) != previous:
                deploy.set_profile(session, previous)
        result = deploy.activate(session, previous, host.activation, self._systemd(host.name))
        if not (result.ok or result.degraded):
            raise ReconcileError(
                f"{why}; the rollback to {previous} failed too "
                f"(exit {result.code}){_last_lines(result.output)}",
                hint="the host needs a person: log in and check its current system",
            )
        raise RolledBackError(f"{why}; rolled back to {previous}")


def _last_lines(output: str, lines: int = 8) -> str:
    tail = output.strip().splitlines()[-lines:]
    return (":\n    " + "\n    ".join(tail)) if tail else ""
