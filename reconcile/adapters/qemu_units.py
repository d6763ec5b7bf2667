"""The QEMU driver's guests as systemd transient units, on a host that runs systemd.

Under systemd a detached process still belongs to the unit or session that started it,
and dies with it (a GitOps cycle's unit ends every interval): there the detached
supervisor (qemu_supervisor.py) would not outlive reconcile, so each guest is units of
its own, made with `systemd-run`:

- `reconcile-<domain>-fs<i>.service`: one virtiofsd per share;
- `reconcile-<domain>.service`: QEMU, `After=` and `BindsTo=` its virtiofsd units, so it
  starts after them, stops with any of them, and is stopped before them. Its
  `ExecStopPost=` (STOPPED, a constant script) records how QEMU ended, removes the live
  record, pid file and sockets, and stops the virtiofsd units after it: the same files,
  left the same way, as the supervisor leaves them, so observation is one code path.

Every command line here is argv; the one script is a constant whose values (the run
directory, the units) arrive as positional parameters. Unit names come from the domain's
name, which the schema keeps to `[a-z0-9-]`.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from reconcile.adapters import process
from reconcile.core.errors import ReconcileError
from reconcile.core.guests.qemu_argv import RunDir, argvs_of

SOCKET_WAIT_S = 10.0
QMP_WAIT_S = 30.0
POLL_S = 0.02
_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")

# ExecStopPost of QEMU's unit: $0 the run directory, $1... the virtiofsd units. systemd
# gives it EXIT_CODE (exited, killed, dumped) and EXIT_STATUS (a number or a signal name).
STOPPED = (
    'r="$0"; code=1; '
    'if [ "$EXIT_CODE" = exited ]; then code=$EXIT_STATUS; fi; '
    'case "$code" in "" | *[!0-9]*) code=1 ;; esac; '
    'printf \'{"code": %s, "at": %s}\\n\' "$code" "$(date +%s)" > "$r/exit.json.tmp" '
    '&& mv "$r/exit.json.tmp" "$r/exit.json"; '
    'rm -f "$r/live.json" "$r/qemu.pid" "$r/qmp.sock"; '
    '[ $# -eq 0 ] || systemctl stop --no-block -- "$@"; '
    'rm -f "$r"/fs*.sock; exit 0'
)


def unit(run: RunDir, share: int | None = None) -> str:
    name = run.root.name
    if not _NAME.fullmatch(name):  # the schema's names: never reached
        raise ReconcileError(f"{name!r}: not usable in a systemd unit name")
    return f"reconcile-{name}.service" if share is None else f"reconcile-{name}-fs{share}.service"


def exec_line(argv: list[str]) -> str:
    """argv as one command line of a transient unit's property (systemd.service(5),
    "Command lines"): each word double-quoted with `\\` and `"` escaped and `$` doubled,
    so nothing is split or expanded. (systemd-run's properties take no `%` specifiers.)"""
    words = []
    for word in argv:
        escaped = word.replace("\\", "\\\\").replace('"', '\\"')
        words.append('"' + escaped.replace("$", "$$") + '"')
    return " ".join(words)


def _systemd_run(name: str, argv: list[str], run: RunDir, properties: list[str]) -> None:
    log = f"append:{run.log}"
    command = ["systemd-run", "--quiet", "--collect", "--service-type=exec", f"--unit={name}"]
    command += ["--property=StandardOutput=" + log, "--property=StandardError=" + log]
    command += [f"--property={p}" for p in properties]
    process.run([*command, "--", *argv], timeout=30, hint=f"the guest's log is {run.log}")


def _main_pid(name: str) -> int:
    shown = process.run(["systemctl", "show", "--property=MainPID", "--value", "--", name])
    text = shown.stdout.strip()
    return int(text) if text.isdigit() else 0


def _wait_for(path: Path, name: str, run: RunDir, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    pid = _main_pid(name)
    while not path.exists():
        if pid == 0 or not Path(f"/proc/{pid}").exists():
            raise ReconcileError(
                f"{name} ended before {path} appeared", hint=f"the guest's log is {run.log}"
            )
        if time.monotonic() > deadline:
            raise ReconcileError(f"{name} did not create {path} within {seconds:g}s")
        time.sleep(POLL_S)


def stop_leftovers(run: RunDir, shares: int) -> None:
    """Units of an earlier start that are still loaded (virtiofsd stopping after a QEMU
    that just ended): a unit name can be made only once at a time."""
    names = [unit(run), *(unit(run, i) for i in range(shares))]
    process.run(["systemctl", "stop", "--", *names], check=False, timeout=60)
    process.run(["systemctl", "reset-failed", "--", *names], check=False, timeout=30)


def start(run: RunDir) -> None:
    """The guest recorded in `run.live` as units; returns once QEMU's QMP socket is up."""
    virtiofsd, qemu = argvs_of(json.loads(run.live.read_text()))
    stop_leftovers(run, len(virtiofsd))
    shares = []
    try:
        for index, argv in enumerate(virtiofsd):
            name = unit(run, index)
            run.fs_socket(index).unlink(missing_ok=True)
            _systemd_run(name, argv, run, [])
            shares.append(name)
            _wait_for(run.fs_socket(index), name, run, SOCKET_WAIT_S)
        run.qmp.unlink(missing_ok=True)
        run.exit.unlink(missing_ok=True)
        after = " ".join(shares)
        properties = [f"After={after}", f"BindsTo={after}"] if shares else []
        stopped = exec_line(["/bin/sh", "-c", STOPPED, str(run.root), *shares])
        _systemd_run(unit(run), qemu, run, [*properties, f"ExecStopPost={stopped}"])
        pid = _main_pid(unit(run))
        tmp = run.qemu_pid.with_name(run.qemu_pid.name + ".tmp")
        tmp.write_text(f"{pid}\n")
        tmp.replace(run.qemu_pid)
        _wait_for(run.qmp, unit(run), run, QMP_WAIT_S)
    except ReconcileError:
        stop_leftovers(run, len(virtiofsd))
        raise
