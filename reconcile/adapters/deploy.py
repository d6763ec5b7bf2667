"""Putting a closure on a baremetal host: copy, profile, activation, health, rollback.

Every remote command is argv. The few shell scripts here are constants; the values they
work on (store paths, modes, unit names) arrive as positional parameters ("$1"), never
as shell text. Activation runs detached from the SSH session (under `systemd-run` where
the host has systemd, `setsid` otherwise) and writes its exit code to a file on the
host's /run, so a dropped connection loses nothing: the result is read after reconnecting.
Before it, a guard is started the same way (core/hosts/guard.py): it rolls the host back
by itself unless the controller confirms the new system in time.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from reconcile.adapters import process
from reconcile.adapters.ssh import Session, UnreachableError
from reconcile.core.desired import Activation, HealthCheck, Ssh
from reconcile.core.errors import CommandError, ReconcileError
from reconcile.core.hosts import boot_once
from reconcile.core.hosts.baremetal import STATE_DIR, SYSTEM_PROFILE
from reconcile.core.hosts.guard import (
    CONFIRM,
    CURRENT_SYSTEM,
    DETACH_ARGV,
    GUARD_SCRIPT,
    GUARD_STATE,
    GUARDS_DIR,
    START_BUSY,
    START_GUARD,
    ConfirmExit,
    GuardSpec,
    GuardState,
    parse_guard_state,
)
from reconcile.logs import get_logger

log = get_logger(__name__)

NIX = ("nix", "--extra-experimental-features", "nix-command")

# $1 mode, $2 toplevel, $3 id: run switch-to-configuration, keep its output and exit code.
RUNNER = (
    'd="$0"; mkdir -p "$d"; '
    '"$2/bin/switch-to-configuration" "$1" > "$d/$3.log" 2>&1; '
    'echo "$?" > "$d/$3.status.tmp" && mv "$d/$3.status.tmp" "$d/$3.status"'
)
# Detach the runner from this session (no systemd): stdio closed, own session.
DETACH = 'setsid -f sh -c "$0" "$@" < /dev/null > /dev/null 2>&1'
# $1 the status file: wait for it, print it.
AWAIT = 'while [ ! -e "$1" ]; do sleep 0.1; done; cat "$1"'
HEALTH_POLL_S = 1.0
RECONNECT_POLL_S = 1.0


def known_hosts_file(ssh: Ssh, path: Path) -> Path:
    """A known_hosts file pinning the host's key, for OpenSSH (nix copy): the manifest's, or
    `path` (`StateLayout.host_known_hosts`) written with its `host_key`."""
    if ssh.known_hosts is not None:
        return ssh.known_hosts
    assert ssh.host_key is not None  # the manifest requires one or the other
    line = ssh.target.known_hosts_line(ssh.host_key)
    if not path.exists() or path.read_text() != line:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(line)
        tmp.replace(path)
    return path


def nix_sshopts(ssh: Ssh, known_hosts: Path) -> str:
    """NIX_SSHOPTS pinning the host key. Nix splits it on whitespace: no spaces in paths."""
    paths = [str(known_hosts)] + ([str(ssh.identity)] if ssh.identity else [])
    if any(any(c.isspace() for c in p) for p in paths):
        raise ReconcileError(
            f"cannot pin the host key for nix copy: a path has whitespace: {paths}",
            hint="nix splits NIX_SSHOPTS on whitespace; move the lab's state_dir or "
            "known_hosts/identity to a path without spaces",
        )
    opts = [
        "-F", "/dev/null",
        "-o", "BatchMode=yes",
        "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"ConnectTimeout={max(1, int(ssh.connect_timeout_s))}",
        "-o", "LogLevel=ERROR",
        *ssh.target.port_args,
    ]  # fmt: skip
    if ssh.identity is not None:
        opts += ["-o", "IdentitiesOnly=yes", "-i", str(ssh.identity)]
    return " ".join(opts)


def build_on_host(
    ssh: Ssh, installable: str, known_hosts: Path, timeout_s: float, env: dict[str, str]
) -> None:
    """Evaluate `installable` here and realise it in the host's own store (`--store`): its
    derivations are copied there and built there; no output comes back to this machine."""
    process.run(
        [
            *NIX, "build", "--no-link", "--print-build-logs",
            "--eval-store", "auto", "--store", ssh.target.nix_store_uri,
            "--", installable,
        ],
        env={**env, "NIX_SSHOPTS": nix_sshopts(ssh, known_hosts)},
        timeout=timeout_s,
        hint=f"the build on {ssh.target.destination} failed; the host's system is unchanged",
    )  # fmt: skip


def copy_closure(
    ssh: Ssh, toplevel: str, known_hosts: Path, timeout_s: float, env: dict[str, str]
) -> None:
    """`nix copy` the closure to the host's store; Nix skips what is already there.

    Local builds are unsigned and a NixOS host requires signatures from non-trusted
    sources: `--no-check-sigs` asks the host (we log in as a trusted user) to accept them.
    """
    process.run(
        [*NIX, "copy", "--no-check-sigs", "--to", ssh.target.nix_store_uri, toplevel],
        env={**env, "NIX_SSHOPTS": nix_sshopts(ssh, known_hosts)},
        timeout=timeout_s,
        hint=f"the copy to {ssh.target.destination} failed; the host is unchanged",
    )


def has_path(session: Session, toplevel: str) -> bool:
    done = session.run(["nix-store", "--check-validity", "--", toplevel], check=False)
    return done.returncode == 0


def profile_target(session: Session) -> str:
    return session.run(["readlink", "-f", SYSTEM_PROFILE], check=False).stdout.strip()


def set_profile(session: Session, toplevel: str) -> None:
    session.run(["nix-env", "-p", SYSTEM_PROFILE, "--set", toplevel])


class SwitchExit(IntEnum):
    """switch-to-configuration's exit codes that mean something here; any other: failed."""

    OK = 0
    DEGRADED = 4  # the new system is active, but some units failed


@dataclass(frozen=True)
class Activated:
    code: int
    output: str  # the tail of switch-to-configuration's output

    @property
    def ok(self) -> bool:
        return self.code == SwitchExit.OK

    @property
    def degraded(self) -> bool:
        return self.code == SwitchExit.DEGRADED


def new_run_id() -> str:
    """What one activation's files and units (and its guard's) are named by."""
    return uuid.uuid4().hex[:12]


def status_file(activation_id: str) -> str:
    """The file an activation's exit code appears in on the host."""
    return f"{STATE_DIR}/{activation_id}.status"


def start_activation(
    session: Session, toplevel: str, mode: Activation, systemd: bool, run: str = ""
) -> str:
    """Start switch-to-configuration detached; returns the id its status file is named by."""
    run_id = f"activate-{run or new_run_id()}"
    args = [mode.value, toplevel, run_id]
    if systemd:
        argv = [
            "systemd-run", f"--unit=reconcile-{run_id}", "--collect", "--quiet",
            "--no-ask-password", "--service-type=exec", "--",
            "sh", "-c", RUNNER, STATE_DIR, *args,
        ]  # fmt: skip
    else:
        argv = ["sh", "-c", DETACH, RUNNER, STATE_DIR, *args]
    session.run(argv)
    log.info("activation started", host=session.ssh.host, mode=mode.value, id=run_id)
    return run_id


def await_activation(
    session: Session, run_id: str, deadline: float, reconnect: Callable[[], Session]
) -> Activated:
    """The activation's exit code, reconnecting while the host is reachable again in time."""
    status = f"{STATE_DIR}/{run_id}.status"
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ReconcileError(
                f"{session.ssh.host}: activation {run_id} did not finish in time",
                hint=f"its output is in {STATE_DIR}/{run_id}.log on the host; "
                "the next run observes where it got to",
            )
        try:
            code = session.run(["sh", "-c", AWAIT, "sh", status], timeout_s=remaining)
            text = session.run(["tail", "-c", "3000", f"{STATE_DIR}/{run_id}.log"], check=False)
            return Activated(int(code.stdout.strip() or "1"), text.stdout)
        except UnreachableError as error:
            log.warning("connection lost during activation; reconnecting", error=error.message)
            time.sleep(RECONNECT_POLL_S)
            session = _reconnect(reconnect, deadline)
        except CommandError as error:
            if not error.retryable:
                raise
            session = reconnect()


def _reconnect(reconnect: Callable[[], Session], deadline: float) -> Session:
    while True:
        session = reconnect()
        try:
            session.run(["true"])
            return session
        except UnreachableError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(RECONNECT_POLL_S)


def start_guard(session: Session, guard: GuardSpec, systemd: bool) -> None:
    """Start the host's guard, detached like an activation (GuardSpec says what it does)."""
    host = session.ssh.host
    started = session.run(
        ["sh", "-c", START_GUARD, GUARDS_DIR, guard.id, guard.toplevel, GUARD_SCRIPT],
        check=False,
    )
    if started.returncode == START_BUSY:
        raise ReconcileError(
            f"{host}: the guard of an earlier activation is rolling the host back "
            f"right now ({started.stdout.strip()}); nothing was activated",
            hint=f"apply again once it is done; its log is in {GUARDS_DIR} on the host",
        )
    if started.returncode != 0:
        raise CommandError(
            ("ssh", session.ssh.target.destination, "sh", "-c", "<start guard>", guard.id),
            started.returncode,
            (started.stderr or started.stdout).strip()[-2000:],
            hint="nothing was activated",
        )
    args = guard.argv(SYSTEM_PROFILE)
    if systemd:
        argv = [
            "systemd-run", f"--unit=reconcile-{guard.id}", "--collect", "--quiet",
            "--no-ask-password", "--service-type=exec", "--setenv=PATH", "--", *args,
        ]  # fmt: skip
    else:
        argv = ["sh", "-c", DETACH_ARGV, "sh", *args]
    session.run(argv)
    log.info("guard started", host=host, id=guard.id, previous=guard.previous)


def ask_guard_to_roll_back(session: Session, guard_id: str) -> None:
    """Tell the guard to roll back now rather than at its deadline."""
    session.run(["touch", "--", f"{GUARDS_DIR}/{guard_id}.now"])


def guard_state(session: Session, guard_id: str) -> GuardState:
    done = session.run(["sh", "-c", GUARD_STATE, GUARDS_DIR, guard_id])
    try:
        return parse_guard_state(done.stdout)
    except ValueError as error:
        raise ReconcileError(f"{session.ssh.host}: {error}") from None


def confirm(session: Session, expected: str, guard_id: str = "") -> ConfirmExit:
    """Win the guard's token and record the active system as healthy (read back by the
    next probe); GUARD_WON when the guard took the token first (it rolls back)."""
    argv = ["sh", "-c", CONFIRM, STATE_DIR, expected, guard_id, CURRENT_SYSTEM, boot_once.RECORD]
    done = session.run(argv, check=False)
    if done.returncode in (
        ConfirmExit.NOT_ACTIVE,
        ConfirmExit.GUARD_WON,
        ConfirmExit.DEFAULT_KEPT,
    ):
        return ConfirmExit(done.returncode)
    if done.returncode != 0:
        raise CommandError(
            ("ssh", session.ssh.target.destination, "sh", "-c", "<confirm>", expected),
            done.returncode,
            (done.stderr or done.stdout).strip()[-2000:],
        )
    return ConfirmExit.CONFIRMED


def _check_once(ssh: Ssh, session: Session, check: HealthCheck) -> str | None:
    """None when the check passes, else why not."""
    if check.kind == "tcp":
        try:
            with socket.create_connection((ssh.host, int(str(check.value))), timeout=3):
                return None
        except OSError as exc:
            return f"tcp {check.value}: {exc.strerror or exc}"
    if check.kind == "systemd":
        argv: list[str] = ["systemctl", "is-active", "--", str(check.value)]
    else:
        assert isinstance(check.value, tuple)
        argv = list(check.value)
    done = session.run(argv, check=False, timeout_s=min(30.0, ssh.command_timeout_s))
    if done.returncode == 0:
        return None
    said = (done.stdout.strip() or done.stderr.strip())[-200:]
    return f"{check.kind} {check.value}: exit {done.returncode}" + (f": {said}" if said else "")


def check_health(ssh: Ssh, checks: tuple[HealthCheck, ...], timeout_s: float) -> list[str]:
    """Run every check over a fresh connection until all pass or `timeout_s` is spent.

    Returns the failures of the last round (empty: healthy). A fresh connection proves the
    host still takes new SSH logins after its switch.
    """
    deadline = time.monotonic() + timeout_s
    failures: list[str] = []
    while True:
        session = Session(ssh)
        try:
            failures = [f for c in checks if (f := _check_once(ssh, session, c)) is not None]
        except UnreachableError as error:
            failures = [f"ssh: {error.message}"]
        finally:
            session.close()
        if not failures or time.monotonic() + HEALTH_POLL_S > deadline:
            return failures
        log.info("health checks not passing yet", host=ssh.host, failures=failures)
        time.sleep(HEALTH_POLL_S)


def reboot(session: Session, systemd: bool) -> None:
    """Ask the host to reboot, detached so the command returns before the connection dies."""
    command = "systemctl reboot" if systemd else "reboot"
    session.run(["sh", "-c", DETACH, f"sleep 1; {command}"])
    session.close()


def arm_boot_once(session: Session, toplevel: str, fallback: str) -> str:
    """Make the next boot, and only it, boot `toplevel`; `fallback` the default after it
    (core/hosts/boot_once.py). Returns what was set, for the log."""
    done = session.run(
        ["sh", "-c", boot_once.ARM, SYSTEM_PROFILE, toplevel, fallback, boot_once.RECORD],
        check=False,
    )
    said = (done.stdout.strip() or done.stderr.strip())[-500:] or f"exit {done.returncode}"
    if done.returncode == 0:
        return said
    raise ReconcileError(
        f"{session.ssh.host}: cannot boot {toplevel} once (bootctl): {said}",
        hint="nothing was rebooted, and its guard puts the previous system back as the boot "
        "default unless confirmed; boot_once = false reboots into the new default instead",
    )


def restore_fallback(session: Session, toplevel: str, fallback: str) -> None:
    """After the boot loader fell back to `fallback`: the profile and the boot default
    back on it, as a rollback leaves them."""
    session.run(
        ["sh", "-c", boot_once.RESTORE, SYSTEM_PROFILE, toplevel, fallback, boot_once.RECORD]
    )


@dataclass(frozen=True)
class NewBoot:
    boot_id: str
    booted: str  # what /run/booted-system points at ("" = nothing)


def wait_for_new_boot(ssh: Ssh, old_boot_id: str, deadline: float, *, once: bool) -> NewBoot:
    """Poll with fresh connections until the host answers with another boot id."""
    while time.monotonic() < deadline:
        session = Session(ssh)
        try:
            boot = boot_once.parse_new_boot(session.run(["sh", "-c", boot_once.NEW_BOOT]).stdout)
            if boot[0] and boot[0] != old_boot_id:
                return NewBoot(*boot)
        except (UnreachableError, CommandError):
            pass
        finally:
            session.close()
        time.sleep(RECONNECT_POLL_S)
    hint = "check the host's console; the next run observes where it got to"
    if once:
        hint = (
            "it was to boot the new system once: its previous system stays the default, so "
            "a reset (a watchdog, panic= on the kernel command line, or a person) boots it; " + hint
        )
    raise ReconcileError(f"{ssh.host}: no new boot before the deadline", hint=hint)
