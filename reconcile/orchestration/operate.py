"""Operating a running lab: a guest's console, a login over pinned SSH, the inventory.

None of these plans or changes anything, observes a hypervisor, or takes the lab's lock:

- `console` reads the file the driver writes a guest's serial console to
  (`StateLayout.serial_log`) and follows it like `tail -F`; it only reads.
- `ssh` replaces reconcile with OpenSSH to a host (or a disk guest with an `ssh` table),
  trusting only the manifest's pinned key (core/ssh_login.py). The one file it writes is
  that key, spelled for OpenSSH, in the state directory (`StateLayout.host_known_hosts`:
  the same file and line nix copy uses for a `host_key`), since ssh must read it after
  reconcile is gone.
- `inventory` renders the manifest's machines (core/inventory.py); no network traffic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from reconcile.adapters import files, generations, process
from reconcile.core import inventory as inv
from reconcile.core.console import TerminalFilter
from reconcile.core.desired import Manifest, Ssh
from reconcile.core.errors import ReconcileError
from reconcile.core.ssh_login import login_argv
from reconcile.orchestration import pipeline
from reconcile.orchestration.machines import machine_for

KNOWN_HOSTS_LIMIT = 1 << 20  # a known_hosts file larger than this is not a known_hosts file


def inventory(path: Path, fmt: str) -> str:
    return inv.render(pipeline.load(path), fmt)


def console(
    path: Path,
    name: str,
    *,
    lines: int,
    follow: bool,
    raw: bool,
    emit: Callable[[bytes], None],
    note: Callable[[str], None],
) -> None:
    """Show guest `name`'s serial console: its last `lines` lines, then (with `follow`) what
    it writes, until interrupted. Made safe for a terminal unless `raw`."""
    manifest = pipeline.load(path)
    guest = inv.guest(manifest, name)
    log_path = manifest.lab.layout.serial_log(guest.name)
    shown = TerminalFilter()

    def out(data: bytes) -> None:
        emit(data if raw else shown.feed(data).encode())

    machine = machine_for(manifest.hypervisors[guest.hypervisor], manifest.lab)
    try:
        machine.show_console(log_path, lines=lines, follow=follow, emit=out, note=note)
    except FileNotFoundError:
        where = f" on hypervisor '{guest.hypervisor}'" if machine.remote else ""
        raise ReconcileError(
            f"guest '{name}' has no console log ({log_path}{where}): the guest has not started yet",
            hint=f"start it with `reconcile apply {path} --target {name}`",
        ) from None
    finally:
        machine.close()
        if not raw:
            emit(shown.flush().encode())


def pinned_known_hosts(ssh: Ssh, path: Path) -> Path:
    """Write `path` with only the pinned key(s) of `ssh`'s target, as OpenSSH reads them:
    the `host_key` line, or the lines of `known_hosts` that name exactly this host and port
    (no wildcards, negations, `@cert-authority` or `@revoked`: what paramiko trusts)."""
    target = ssh.target
    if ssh.host_key is not None:
        text = target.known_hosts_line(ssh.host_key)
    else:
        assert ssh.known_hosts is not None  # inventory.ssh_of refuses a guest without a pin
        try:
            data = files.read_regular(ssh.known_hosts, KNOWN_HOSTS_LIMIT)
        except OSError as exc:
            raise ReconcileError(
                f"cannot read known_hosts {ssh.known_hosts}: {exc.strerror or exc}",
                hint="check the ssh table's known_hosts in the manifest",
            ) from None
        text = target.pinned_lines(data.decode(errors="replace"))
        if not text:
            keyscan = " ".join(("ssh-keyscan", *target.port_args, target.host))
            raise ReconcileError(
                f"{ssh.known_hosts} pins no key for {target.known_hosts_name}: refusing to connect",
                hint=f"add its key (after checking it): {keyscan} >> {ssh.known_hosts}, "
                "or set host_key",
            )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReconcileError(
            f"cannot create {path.parent}: {exc.strerror or exc}",
            hint="`reconcile ssh` writes the pinned key to the lab's state directory: "
            "run it as the user that runs the lab",
        ) from None
    try:
        current = path.read_text(errors="replace")
    except OSError:
        current = None
    if current != text:
        files.write_atomic(path, text)
    return path


def ssh_argv(manifest: Manifest, name: str, command: Sequence[str] = ()) -> list[str]:
    """The OpenSSH command line for `reconcile ssh`, with its pinned known_hosts written."""
    pin = manifest.lab.layout.guest_host_key(name)
    learned = pin.read_text().strip() if name in manifest.guests and pin.is_file() else None
    ssh = inv.ssh_of(manifest, name, learned)
    pipeline.claim_state_dir(manifest)
    known_hosts = pinned_known_hosts(ssh, manifest.lab.layout.host_known_hosts(name))
    return login_argv(ssh, known_hosts, command)


def ssh(path: Path, name: str, command: Sequence[str]) -> NoReturn:
    """Become OpenSSH to `name`: the terminal, the exit code and the signals are its own."""
    argv = ssh_argv(pipeline.load(path), name, command)
    process.exec_replace(argv)


# --- generations (issue 16 part 4) ------------------------------------------------------


def guest_generations(path: Path, name: str) -> tuple[list[generations.Generation], str | None]:
    """A guest's generations, oldest first, and the system it is pinned to (None: none)."""
    manifest = pipeline.load(path)
    guest = inv.guest(manifest, name)
    layout = manifest.lab.layout
    return generations.read(layout, guest.name), generations.pins(layout).get(guest.name)


def rollback(path: Path, name: str, to: int | None) -> generations.Generation:
    """Pin guest `name` to generation `to` (default: the one before its newest), so that the
    next plan and apply return it there; the manifest's system is not applied to it until
    `release`. Writes only the pin: the change itself goes through plan and apply."""
    manifest = pipeline.load(path)
    guest = inv.guest(manifest, name)
    layout = manifest.lab.layout
    pipeline.claim_state_dir(manifest)
    known = generations.read(layout, guest.name)
    if to is None:
        if len(known) < 2:
            raise ReconcileError(
                f"guest '{name}' has no generation before its newest",
                hint=f"list them: reconcile generations {path} {name}",
            )
        chosen = known[-2]
    else:
        found = [g for g in known if g.number == to]
        if not found:
            numbers = ", ".join(str(g.number) for g in known) or "none"
            raise ReconcileError(
                f"guest '{name}' has no generation {to} (kept: {numbers})",
                hint=f"list them: reconcile generations {path} {name}",
            )
        chosen = found[0]
    generations.pin(layout, guest.name, chosen.toplevel)
    return chosen


def release(path: Path, name: str) -> bool:
    """Let guest `name` follow the manifest again; whether it was pinned."""
    manifest = pipeline.load(path)
    guest = inv.guest(manifest, name)
    pipeline.claim_state_dir(manifest)
    return generations.unpin(manifest.lab.layout, guest.name)
