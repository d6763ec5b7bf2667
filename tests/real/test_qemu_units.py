"""The plain-QEMU driver on a host that runs systemd: each guest is transient units.

The host is testbed/systemd_host.py's: systemd as PID 1 of its own namespaces, sharing
this machine's /nix and the lab's state directory. reconcile runs inside it as a transient
unit of its own, as a GitOps cycle does, so a guest that were a child of reconcile would
die when that unit ends (systemd stops a unit's whole cgroup): these guests must not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.systemd_host import SystemdHost
from tests.support.flakes import demo_flake
from tests.support.stack import remove_tree
from tests.support.waiting import wait_until

pytestmark = pytest.mark.real

LAB = "qs"
BASE = Path("/var/lib/reconcile-tests/qemu-units")
QEMU_UNIT = f"reconcile-{LAB}-a.service"
FS_UNITS = {f"reconcile-{LAB}-a-fs0.service", f"reconcile-{LAB}-a-fs1.service"}


class Lab:
    def __init__(self, host: SystemdHost) -> None:
        self.host = host
        self.flake = BASE / "flake"
        self.state = BASE / "state"
        self.manifest = BASE / "lab.toml"
        self.memory = "384MiB"
        self.state_line = ""  # 'state = "stopped"' to stop the guest
        self.runs = 0

    def write(self) -> None:
        self.manifest.write_text(
            f"""
[lab]
name = "{LAB}"
flake = "{self.flake}"
state_dir = "{self.state}"
[hypervisors.local]
driver = "qemu"
accel = "qemu"
[kernels.host]
image = "/vmlinuz"
initrd_modules = ["virtio_pci", "virtiofs"]
[guests.a]
mode = "imageless"
system = "demo-a"
kernel = "host"
memory = "{self.memory}"
hypervisor = "local"
shutdown_timeout = "15s"
boot_timeout = "120s"
{self.state_line}
"""
        )

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "reconcile", *args]

    def unit(self) -> str:
        self.runs += 1
        return f"reconcile-run-{self.runs}"

    def apply(
        self, env: dict[str, str] | None = None
    ) -> tuple[str, subprocess.CompletedProcess[str]]:
        """`reconcile apply` as a unit of the host; (its unit, its result)."""
        self.write()
        unit = self.unit()
        argv = self.argv("apply", str(self.manifest), "--yes")
        env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), **(env or {})}
        return unit, self.host.unit_run(argv, unit=unit, env=env)

    def plan(self, *extra: str) -> tuple[int, str]:
        proc = self.host.run(self.argv("plan", str(self.manifest), *extra), check=False)
        return proc.returncode, proc.stdout + proc.stderr

    def guest_units(self) -> dict[str, str]:
        return self.host.units(f"reconcile-{LAB}-a*")

    def qemu_pid(self) -> int:
        """QEMU's pid inside the host (its unit's main process)."""
        shown = self.host.run(["systemctl", "show", "-P", "MainPID", QEMU_UNIT]).stdout
        return int(shown.strip() or 0)


def output(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    remove_tree(BASE)
    BASE.mkdir(parents=True)
    demo_flake(BASE / "flake")
    with SystemdHost(BASE / "host") as host:
        yield Lab(host)
    remove_tree(BASE)


def test_a_guest_is_units_of_its_own_and_outlives_reconciles_unit(lab: Lab) -> None:
    unit, proc = lab.apply()
    assert proc.returncode == 0, output(proc)
    # reconcile's unit has ended (systemd stopped its cgroup); the guest's units run on
    assert unit not in lab.host.units("reconcile-run-*")
    assert lab.guest_units() == {QEMU_UNIT: "active", **dict.fromkeys(FS_UNITS, "active")}
    show = lab.host.run(["systemctl", "show", "-P", "BindsTo", QEMU_UNIT]).stdout.split()
    after = lab.host.run(["systemctl", "show", "-P", "After", QEMU_UNIT]).stdout.split()
    assert set(show) == FS_UNITS and set(after) >= FS_UNITS  # QEMU stops before virtiofsd
    assert "reconcile-ready:" in (lab.state / "guests" / "a" / "serial.log").read_text()
    code, said = lab.plan("--detailed-exitcode")
    assert code == 0 and "No changes." in said, said


def test_kill_9_of_qemu_stops_its_virtiofsd_and_apply_starts_it_again(lab: Lab) -> None:
    pid = lab.qemu_pid()
    assert pid > 0
    lab.host.run(["kill", "-9", str(pid)])
    wait_until("the guest's units end", lambda: not lab.guest_units(), 30)
    run_dir = lab.state / "qemu" / "local" / f"{LAB}-a"
    assert json.loads((run_dir / "exit.json").read_text())["code"] != 0
    assert not (run_dir / "live.json").exists() and not list(run_dir.glob("*.sock"))
    code, said = lab.plan()
    assert code == 0 and "crashed -> running" in said, said
    _, proc = lab.apply()
    assert proc.returncode == 0, output(proc)
    assert lab.qemu_pid() not in (0, pid)
    assert lab.plan("--detailed-exitcode")[0] == 0


def test_reconciles_unit_killed_mid_apply_leaves_the_guest_running(lab: Lab) -> None:
    lab.memory = "416MiB"  # a restart of the guest
    _, proc = lab.apply(env={"RECONCILE_FAULT": "kill-after:a/start"})
    assert proc.returncode == 137, output(proc)
    time.sleep(1)  # systemd has stopped what was left in reconcile's unit
    assert lab.guest_units() == {QEMU_UNIT: "active", **dict.fromkeys(FS_UNITS, "active")}
    _, again = lab.apply()
    assert again.returncode == 0, output(again)
    code, said = lab.plan("--detailed-exitcode")
    assert code == 0, said


def test_a_stopped_guest_leaves_no_units(lab: Lab) -> None:
    lab.state_line = 'state = "stopped"'
    _, proc = lab.apply()
    assert proc.returncode == 0, output(proc)
    wait_until("the guest's units end", lambda: not lab.guest_units(), 30)
    exit_code = json.loads((lab.state / "qemu" / "local" / f"{LAB}-a" / "exit.json").read_text())
    assert exit_code["code"] == 0  # a clean power-off, then virtiofsd after it
