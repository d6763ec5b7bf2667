"""The QEMU driver's supervisor: runs one guest's virtiofsd daemons and QEMU, detached.

`python -m reconcile.adapters.qemu_supervisor RUN_DIR` starts the guest recorded in
`RUN_DIR/live.json` and returns once QEMU is up (exit 0), or says why it is not (exit 1).
The supervisor itself runs on in a session of its own (double fork), so that neither
reconcile's exit nor its terminal's stops a guest; where the host has systemd, transient
units would do this job. It starts each virtiofsd and waits for its socket, then QEMU;
when QEMU exits it records how (`exit.json`), stops virtiofsd after it, and removes the
live record, pid files and sockets, so that what is left says "stopped" or "crashed".
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from reconcile.core.guests.qemu_argv import RunDir, argvs_of

SOCKET_WAIT_S = 10.0
QMP_WAIT_S = 30.0
STOP_WAIT_S = 5.0


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _wait_for(path: Path, proc: subprocess.Popen[bytes], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before {path} appeared")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not create {path} within {seconds:g}s")
        time.sleep(0.02)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + STOP_WAIT_S
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _cleanup(run: RunDir, count: int) -> None:
    for path in (run.live, run.qemu_pid, run.qmp, *(run.fs_socket(i) for i in range(count))):
        path.unlink(missing_ok=True)
    run.supervisor_pid.unlink(missing_ok=True)


def supervise(run: RunDir, ready_fd: int) -> int:
    """Start the guest, tell the launcher through `ready_fd`, then wait for QEMU."""
    virtiofsd, qemu = argvs_of(json.loads(run.live.read_text()))
    log = run.log.open("ab")
    daemons: list[subprocess.Popen[bytes]] = []
    guest: subprocess.Popen[bytes] | None = None
    try:
        for index, argv in enumerate(virtiofsd):
            run.fs_socket(index).unlink(missing_ok=True)
            daemon = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            daemons.append(daemon)
            _wait_for(run.fs_socket(index), daemon, SOCKET_WAIT_S, f"virtiofsd ({argv[-3]})")
        run.qmp.unlink(missing_ok=True)
        guest = subprocess.Popen(qemu, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        _write(run.qemu_pid, f"{guest.pid}\n")
        _wait_for(run.qmp, guest, QMP_WAIT_S, "QEMU")
    except (OSError, RuntimeError) as error:
        if guest is not None and guest.poll() is None:
            guest.kill()
            guest.wait()
        _stop(daemons)
        _cleanup(run, len(virtiofsd))
        os.write(ready_fd, f"{error}\n".encode())
        os.close(ready_fd)
        return 1
    os.write(ready_fd, b"ok\n")
    os.close(ready_fd)
    code = guest.wait()
    _write(run.exit, json.dumps({"code": code, "at": time.time()}) + "\n")
    run.live.unlink(missing_ok=True)  # stopped: no running definition (and no ready mark)
    _stop(daemons)  # after QEMU, never before: a guest loses its root with its store
    _cleanup(run, len(virtiofsd))
    return 0


def launch(run: RunDir) -> int:
    """Fork the supervisor into a session of its own and wait for its first word."""
    read_fd, write_fd = os.pipe()
    first = os.fork()
    if first == 0:  # the intermediate: a new session, then the supervisor, then gone
        os.close(read_fd)
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        _write(run.supervisor_pid, f"{os.getpid()}\n")
        code = 1
        try:
            code = supervise(run, write_fd)
        finally:
            os._exit(code)
    os.close(write_fd)
    os.waitpid(first, 0)
    with os.fdopen(read_fd) as said:
        word = said.readline().strip()
    if word == "ok":
        return 0
    tail = ""
    with contextlib.suppress(OSError):
        tail = "".join(run.log.read_text(errors="replace").splitlines(keepends=True)[-10:])
    print(word or "the supervisor ended without a word", file=sys.stderr)
    if tail:
        print(tail, file=sys.stderr, end="")
    return 1


if __name__ == "__main__":
    sys.exit(launch(RunDir(Path(sys.argv[1]))))
