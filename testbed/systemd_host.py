"""A host that runs systemd, on a machine that does not: systemd as PID 1 of namespaces.

`with SystemdHost() as host:` starts `/lib/systemd/systemd --system` as PID 1 of its own
PID, mount, cgroup, network, IPC and UTS namespaces, and waits until `systemctl
is-system-running` says `running`. What it could change on this machine is made private
first, in its mount namespace: `/run`, `/tmp`, `/var/tmp`, `/var/log`, `/var/lib/systemd`
and `/etc/systemd/system` (a unit directory of its own holding only `reconcile-test.target`,
the one unit it starts: nothing of Debian's units runs), and a cgroup tree of its own
(the named `systemd` hierarchy, mounted inside its cgroup namespace). Everything else
(`/nix`, `/var/lib/reconcile-tests`, the checkout) is this machine's, so a lab's state
directory and store are the same seen from inside.

`host.run(argv)` runs a command inside (nsenter), `host.unit_run(argv)` runs it as a
transient unit of its systemd and waits for it (`systemd-run --wait --pipe`), as a GitOps
cycle runs. `stop()` kills its PID 1, which ends every process in its namespaces.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

SYSTEMD = "/lib/systemd/systemd"
TARGET = "reconcile-test.target"
PRIVATE = ("/tmp", "/var/tmp", "/var/log", "/var/lib/systemd")  # tmpfs each, after /run
CGROUPS = Path("/sys/fs/cgroup/systemd")
CHECKOUT = Path(__file__).resolve().parent.parent  # the named hierarchy systemd keeps its units in


class SystemdHost:
    __test__ = False  # not a pytest test class

    def __init__(
        self,
        base: Path = Path("/var/lib/reconcile-tests/systemd-host"),
        *,
        steps: Sequence[str] = (),
    ) -> None:
        """`steps`: more shell lines run inside before systemd starts (after the private
        mounts): a test's own mounts, or units written to /etc/systemd/system."""
        self.steps = list(steps)
        # the checkout (reconcile, its venv, the tests) and the Python that runs them
        self.keep = [CHECKOUT, Path(sys.prefix).resolve()]
        self.dir = base
        self.cgroup = CGROUPS / f"reconcile-test-{base.name}"
        self.pid = -1
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SystemdHost:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _script(self) -> str:
        q = shlex.quote
        units = "/run/reconcile-test-units"
        target = "[Unit]\\nDescription=the reconcile test host\\nDefaultDependencies=no\\n"
        # What must stay visible inside although a private tmpfs covers where it is (a
        # checkout under /tmp, as CI's is): bound aside first, moved back after.
        kept = [str(p) for p in self.keep if any(p.is_relative_to(d) for d in PRIVATE)]
        aside = [f"mkdir -p /run/.kept/{i} && mount --bind {q(p)} /run/.kept/{i}"
                 for i, p in enumerate(kept)]  # fmt: skip
        back = [f"mkdir -p {q(p)} && mount --move /run/.kept/{i} {q(p)}"
                for i, p in enumerate(kept)]  # fmt: skip
        steps = [
            "set -e",
            "mount -t tmpfs -o mode=0755 tmpfs /run",
            *aside,
            *(f"mount -t tmpfs tmpfs {p}" for p in PRIVATE),
            *back,
            "mount -t proc proc /proc",
            f"mkdir -p {units}",
            f"printf '{target}' > {units}/{TARGET}",
            f"mount --bind {units} /etc/systemd/system",
            "mount -t tmpfs tmpfs /sys/fs/cgroup",
            "mkdir /sys/fs/cgroup/systemd",
            "mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd",
            "ip link set lo up",
            *self.steps,
            f"exec env container=reconcile-test {SYSTEMD} --system --unit={TARGET}"
            " --log-target=console --log-level=notice",
        ]
        return "\n".join(steps) + "\n"

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        log = (self.dir / "systemd.log").open("wb")
        # Its cgroup namespace's root is a cgroup of its own in the named `systemd`
        # hierarchy, so the cgroups its systemd makes are below it and go with stop().
        self.cgroup.mkdir(exist_ok=True)
        unshare = ["unshare", "--mount", "--pid", "--fork", "--cgroup", "--uts", "--ipc",
                   "--net", "--propagation", "private", "sh", "-c", self._script()]  # fmt: skip
        enter = 'echo "$$" > "$0/cgroup.procs" && exec "$@"'
        argv = ["sh", "-c", enter, str(self.cgroup), *unshare]
        self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 30
        while self.pid < 0:
            self.pid = self._find_pid()
            if self.pid < 0:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"systemd did not start: {self.log()[-2000:]}")
                time.sleep(0.05)
        while True:
            state = self.run(["systemctl", "is-system-running"], check=False).stdout.strip()
            if state == "running":
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"systemd is {state!r}, not running: {self.log()[-2000:]}")
            time.sleep(0.1)

    def _find_pid(self) -> int:
        """The systemd that unshare's child became (PID 1 inside, another pid here)."""
        assert self._proc is not None
        try:
            children = Path(f"/proc/{self._proc.pid}/task/{self._proc.pid}/children")
            for child in children.read_text().split():
                if Path(f"/proc/{child}/exe").resolve() == Path(SYSTEMD).resolve():
                    return int(child)
        except OSError:
            pass
        return -1

    def log(self) -> str:
        path = self.dir / "systemd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def inside(self, argv: Sequence[str]) -> list[str]:
        return ["nsenter", f"--target={self.pid}", "--mount", "--pid", "--net", "--ipc",
                "--uts", "--", *argv]  # fmt: skip

    def run(
        self, argv: Sequence[str], *, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self.inside(argv), capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"{shlex.join(argv)} exited {proc.returncode}: {proc.stderr}")
        return proc

    def unit_start(self, argv: Sequence[str], *, unit: str, env: dict[str, str]) -> None:
        """argv as the transient unit `unit` of this host's systemd, as a GitOps cycle
        runs; `unit_wait` waits for it. Its output and exit code go to files in `dir`
        (`systemd-run --wait` would need D-Bus, which this host does not run)."""
        out, err, status = self._unit_files(unit)
        for path in (out, err, status):
            path.unlink(missing_ok=True)
        script = '"$@"; echo "$?" > "$RT_STATUS.tmp"; mv "$RT_STATUS.tmp" "$RT_STATUS"'
        command = ["systemd-run", "--quiet", "--collect", f"--unit={unit}"]
        command += [f"--property=StandardOutput=file:{out}"]
        command += [f"--property=StandardError=file:{err}", f"--setenv=RT_STATUS={status}"]
        command += [f"--setenv={k}={v}" for k, v in env.items()]
        self.run([*command, "--", "sh", "-c", script, "sh", *argv])

    def unit_wait(self, unit: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        out, err, status = self._unit_files(unit)
        deadline = time.monotonic() + timeout
        while not status.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"unit {unit} did not end within {timeout:g}s")
            time.sleep(0.2)
        code = int(status.read_text().strip() or "-1")
        said = out.read_text(errors="replace"), err.read_text(errors="replace")
        return subprocess.CompletedProcess([unit], code, *said)

    def unit_run(
        self, argv: Sequence[str], *, unit: str, env: dict[str, str], timeout: float = 900
    ) -> subprocess.CompletedProcess[str]:
        self.unit_start(argv, unit=unit, env=env)
        return self.unit_wait(unit, timeout)

    def _unit_files(self, unit: str) -> tuple[Path, Path, Path]:
        return self.dir / f"{unit}.out", self.dir / f"{unit}.err", self.dir / f"{unit}.status"

    def units(self, pattern: str) -> dict[str, str]:
        """Loaded units matching `pattern`, with their active state."""
        shown = self.run(
            ["systemctl", "list-units", "--all", "--plain", "--no-legend", "--", pattern]
        ).stdout
        return {f[0]: f[2] for line in shown.splitlines() if len(f := line.split()) >= 3}

    def stop(self) -> None:
        if self.pid > 0:
            with contextlib.suppress(ProcessLookupError):  # PID 1 of its namespace: all goes
                os.kill(self.pid, signal.SIGKILL)
            self.pid = -1
        if self._proc is not None:
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
            self._proc = None
        # its cgroups, deepest first, once the processes in them are gone
        deadline = time.monotonic() + 10
        while self.cgroup.exists():
            for path in sorted(self.cgroup.rglob("*"), key=lambda p: -len(p.parts)):
                if path.is_dir():
                    with contextlib.suppress(OSError):
                        path.rmdir()
            with contextlib.suppress(OSError):
                self.cgroup.rmdir()
            if self.cgroup.exists():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cannot remove {self.cgroup}: processes left in it")
                time.sleep(0.1)
