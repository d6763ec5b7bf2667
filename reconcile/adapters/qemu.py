"""The plain-QEMU driver: imageless guests without libvirt (orchestration/drivers.py).

Each guest has a run directory, `<state_dir>/qemu/<hypervisor>/<domain>/` (core
`RunDir`): our mark (`mark.json`: lab, guest, spec hash), the persistent definition
(`definition.json`, the record core/guests/qemu_argv.py makes), and while it runs the
live definition, pid files and sockets, kept by its detached supervisor
(adapters/qemu_supervisor.py), or on a host that runs systemd by its transient units
(adapters/qemu_units.py), which leave the same files. Observation reads those files and
asks each running QEMU `query-status` over QMP: one round trip per running guest. A pid
that is not alive (or is some other program now) means stopped, or crashed when QEMU's
last exit was not clean; a record that cannot be read, or a QEMU that does not answer, is unknown.

A directory without our mark is not ours: it is listed as unmanaged and never touched. QEMU
processes started by anything else live outside these directories and are never seen.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from reconcile.adapters import files, process, qemu_units, qmp
from reconcile.core.desired import Hypervisor, Lab
from reconcile.core.errors import ProbeError, ReconcileError
from reconcile.core.guests.domain_xml import DomainFacts, DomainSpec
from reconcile.core.guests.imageless import GuestDefinition
from reconcile.core.guests.observed import DomainState, HypervisorObservation, ObservedDomain
from reconcile.core.guests.qemu_argv import RunDir, facts_of, record
from reconcile.logs import get_logger

log = get_logger(__name__)

RECORD_MAX = 1 << 20
POLL_S = 0.1
START_TIMEOUT_S = 90.0
_STATES = {"running": DomainState.RUNNING, "paused": DomainState.PAUSED}
SYSTEMD_RUNS = Path("/run/systemd/system")  # sd_booted(3)


class QemuError(ReconcileError):
    pass


def _read_json(path: Path) -> Any:
    return json.loads(files.read_regular(path, RECORD_MAX))


def _write_json(path: Path, document: object) -> None:
    files.write_atomic(path, json.dumps(document, indent=1) + "\n")


def _pid(path: Path, run: RunDir) -> int | None:
    """The pid in `path` if that process is alive and is this guest's (its argv names the
    run directory: a pid reused by another program does not count)."""
    try:
        pid = int(path.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if str(run.root).encode() in cmdline else None


class QemuHypervisor:
    """The guests of one `driver = "qemu"` hypervisor of one lab, on this machine."""

    def __init__(self, root: Path, lab: str) -> None:
        self.root = root
        self.lab = lab
        self.uri = f"qemu driver ({root})"

    def _run(self, name: str) -> RunDir:
        return RunDir(self.root / name)

    # --- observing ------------------------------------------------------------------

    def _mark(self, run: RunDir) -> dict[str, Any] | None:
        try:
            mark = _read_json(run.mark)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ProbeError(f"{run.mark}: unreadable mark: {exc}") from None
        if not isinstance(mark, dict) or not isinstance(mark.get("lab"), str):
            raise ProbeError(f"{run.mark}: malformed mark")
        return mark

    def _facts(self, path: Path) -> DomainFacts | None:
        try:
            return facts_of(_read_json(path), str(path))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ProbeError(f"{path}: unreadable: {exc}") from None

    def _state(self, run: RunDir) -> DomainState:
        pid = _pid(run.qemu_pid, run)
        if pid is None:
            if _pid(run.supervisor_pid, run) is not None and run.live.exists():
                return DomainState.OTHER  # starting, or stopping: not a resting state
            with contextlib.suppress(OSError, ValueError):
                if _read_json(run.exit).get("code", 0) != 0:
                    return DomainState.CRASHED
            return DomainState.SHUTOFF
        status = qmp.execute(run.qmp, "query-status")  # QmpError (unknown) when it won't say
        return _STATES.get(str(status.get("status")), DomainState.OTHER)

    def _observe_one(self, name: str) -> ObservedDomain | None:
        """None: no guest of ours by this name. ProbeError: unknown."""
        run = self._run(name)
        if not run.root.is_dir():
            return None
        mark = self._mark(run)
        if mark is None:
            raise ProbeError(f"{run.root} has no reconcile mark: not ours, never touched")
        config = self._facts(run.definition)
        state = self._state(run)
        live = self._facts(run.live) if state.active else None
        if config is None:
            if live is None:
                return None  # an undefined guest's leftovers
            return ObservedDomain(name, live.uuid, state, live, live, persistent=False)
        return ObservedDomain(name, config.uuid, state, config, live)

    def observe(self, prefix: str = "") -> HypervisorObservation:
        try:
            names = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        except FileNotFoundError:
            names = []
        except OSError as exc:
            return HypervisorObservation(self.uri, None, f"cannot list {self.root}: {exc}")
        domains: dict[str, ObservedDomain] = {}
        unknown: dict[str, str] = {}
        others: list[str] = []
        for name in names:
            if not name.startswith(prefix) or not self._run(name).mark.exists():
                others.append(name)  # not ours (or not this lab's name): listed, untouched
                continue
            try:
                found = self._observe_one(name)
            except ProbeError as error:
                unknown[name] = error.message
                continue
            if found is not None:
                domains[name] = found
        return HypervisorObservation(self.uri, domains, None, unknown, tuple(others))

    def probe(self, name: str) -> ObservedDomain | None:
        return self._observe_one(name)

    # --- changing -------------------------------------------------------------------

    def _ours(self, run: RunDir, action: str) -> None:
        mark = self._mark(run)
        if run.root.exists() and (mark is None or mark.get("lab") != self.lab):
            raise QemuError(
                f"refusing to {action} {run.root.name}: {run.root} holds no mark of lab "
                f"'{self.lab}'; it is never touched",
                hint="remove it by hand if it is yours, or rename the guest",
            )

    def define(self, spec: DomainSpec) -> None:
        run = self._run(spec.name)
        self._ours(run, "define")
        mark = self._mark(run)
        if mark is not None and mark.get("guest") != spec.mark.name:
            raise QemuError(
                f"refusing to redefine {spec.name}: it belongs to guest '{mark.get('guest')}'"
            )
        run.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        spec.serial_log.parent.mkdir(parents=True, exist_ok=True)
        document = record(spec, run)  # refuses what QEMU or virtiofsd cannot take
        mark = {"lab": self.lab, "guest": spec.mark.name, "spec_hash": spec.mark.spec_hash}
        _write_json(run.mark, mark)  # first: a kill before the record leaves it ours
        _write_json(run.definition, document)
        log.info("defined", driver="qemu", domain=spec.name, spec_hash=spec.mark.spec_hash)

    def start(self, name: str) -> None:
        run = self._run(name)
        self._ours(run, "start")
        if _pid(run.qemu_pid, run) is not None:
            return
        document = _read_json(run.definition)
        _write_json(run.live, document)
        run.exit.unlink(missing_ok=True)
        if SYSTEMD_RUNS.is_dir():
            # Under systemd a detached process still belongs to the unit or session that
            # started it, and dies with it: there, the guest is transient units of its own.
            try:
                qemu_units.start(run)
            except ReconcileError:
                run.live.unlink(missing_ok=True)
                raise
            log.info("started", driver="qemu", domain=name, units=qemu_units.unit(run))
            return
        # The supervisor gets only the run directory: it reads the argv from live.json.
        process.run(
            [sys.executable, "-m", "reconcile.adapters.qemu_supervisor", str(run.root)],
            timeout=START_TIMEOUT_S,
            hint=f"the supervisor's log is {run.log}",
        )
        log.info("started", driver="qemu", domain=name)

    def mark_ready(self, name: str, toplevel: str) -> None:
        run = self._run(name)
        document = _read_json(run.live)
        document["ready"] = toplevel
        _write_json(run.live, document)

    def _wait_gone(self, run: RunDir, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while _pid(run.qemu_pid, run) is not None or _pid(run.supervisor_pid, run) is not None:
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_S)
        return True

    def shutdown(self, name: str, timeout_s: float) -> bool:
        """ACPI power button, then `quit` after the timeout: whether it went gracefully."""
        run = self._run(name)
        self._ours(run, "shut down")
        if _pid(run.qemu_pid, run) is None:
            return True
        with contextlib.suppress(qmp.QmpError):
            qmp.execute(run.qmp, "system_powerdown")
        if self._wait_gone(run, timeout_s):
            return True
        self.destroy(name)
        return False

    def destroy(self, name: str) -> None:
        run = self._run(name)
        self._ours(run, "destroy")
        pid = _pid(run.qemu_pid, run)
        if pid is None:
            return
        with contextlib.suppress(qmp.QmpError):
            qmp.execute(run.qmp, "quit")  # QEMU may close the socket before it answers
        if not self._wait_gone(run, 10.0):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if not self._wait_gone(run, 10.0):
                raise QemuError(f"{name}: QEMU (pid {pid}) did not stop")
        log.info("destroyed", driver="qemu", domain=name)

    def undefine(self, name: str) -> None:
        run = self._run(name)
        self._ours(run, "undefine")
        if _pid(run.qemu_pid, run) is not None:
            raise QemuError(f"refusing to undefine {name} while it runs", hint="stop it first")
        if run.root.exists():
            shutil.rmtree(run.root)
        log.info("undefined", driver="qemu", domain=name)

    def console(self, definition: GuestDefinition) -> Path:
        return definition.serial_log

    def close(self) -> None:
        pass


def for_hypervisor(hypervisor: Hypervisor, lab: Lab) -> QemuHypervisor:
    return QemuHypervisor(lab.layout.qemu_dir(hypervisor.name), lab.name)
