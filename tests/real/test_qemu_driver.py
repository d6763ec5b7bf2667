"""The plain-QEMU driver end to end: the real CLI, QEMU (TCG), virtiofsd and Nix, no libvirt.

One lab is shared across the module; tests run in order and each leaves it converged.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.support.cli import reconcile
from tests.support.stack import SYSTEM_URI, ensure_libvirtd, remove_tree

pytestmark = pytest.mark.real

LAB = "qd"
BASE = Path("/var/lib/reconcile-tests")
GUEST = """
[guests.{name}]
mode = "imageless"
system = "demo-a"
kernel = "host"
memory = "{memory}"
hypervisor = "{hypervisor}"
shutdown_timeout = "15s"
boot_timeout = "120s"
"""


class Lab:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.flake = root / "flake"
        self.state = root / "state"
        self.manifest = root / "lab.toml"
        self.guests: dict[str, str] = {}
        self.placed: dict[str, str] = {}  # guest -> hypervisor, when not "local"

    def write(self) -> None:
        text = f"""
[lab]
name = "{LAB}"
flake = "{self.flake}"
state_dir = "{self.state}"
generations = 2
[hypervisors.local]
driver = "qemu"
accel = "qemu"
[hypervisors.lv]
uri = "{SYSTEM_URI}"
accel = "qemu"
[kernels.host]
image = "/vmlinuz"
initrd_modules = ["virtio_pci", "virtiofs"]
"""
        for name, memory in sorted(self.guests.items()):
            hypervisor = self.placed.get(name, "local")
            text += GUEST.format(name=name, memory=memory, hypervisor=hypervisor)
        self.manifest.write_text(text)

    def apply(
        self, *extra: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return reconcile("apply", str(self.manifest), "--yes", *extra, env=env)

    def changes(self) -> dict[str, str]:
        proc = reconcile("plan", str(self.manifest), "--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return {c["guest"]: c["change"] for c in json.loads(proc.stdout)["changes"]}

    def assert_converged(self) -> None:
        proc = reconcile("plan", str(self.manifest), "--detailed-exitcode")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "No changes." in proc.stdout

    def run_dir(self, guest: str) -> Path:
        return self.state / "qemu" / "local" / f"{LAB}-{guest}"

    def qemu_pid(self, guest: str) -> int | None:
        """The running QEMU of a guest, from /proc (not from the driver's own files)."""
        sock = str(self.run_dir(guest) / "qmp.sock").encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"qemu-system-x86_64") and any(sock in a for a in argv):
                return int(proc.name)
        return None

    def serial(self, guest: str) -> str:
        return (self.state / "guests" / guest / "serial.log").read_text(errors="replace")


def _kill_lab_processes(root: Path) -> None:
    mine = str(root).encode()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if mine in (proc / "cmdline").read_bytes():
                    os.kill(int(proc.name), signal.SIGKILL)
            except OSError:
                pass


def virsh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["virsh", "-c", SYSTEM_URI, *args], capture_output=True, text=True, check=False
    )


def libvirt_domains() -> set[str]:
    out = virsh("list", "--all", "--name").stdout
    return {line.strip() for line in out.splitlines() if line.strip().startswith(f"{LAB}-")}


def _cleanup_libvirt() -> None:
    for name in libvirt_domains():
        virsh("destroy", name)
        virsh("undefine", name)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    ensure_libvirtd()  # one guest of the lab moves between libvirt and the qemu driver
    _cleanup_libvirt()
    root = BASE / LAB
    _kill_lab_processes(root)
    remove_tree(root)
    root.mkdir(parents=True)
    os.chmod(BASE, 0o755)
    shutil.copytree(ROOT / "nix", root / "flake", ignore=shutil.ignore_patterns("result*"))
    shutil.copy2("/bin/busybox", root / "flake" / "bb" / "busybox")
    made = Lab(root)
    made.guests = {"a": "384MiB", "b": "384MiB"}
    made.write()
    yield made
    _cleanup_libvirt()
    _kill_lab_processes(root)
    time.sleep(0.5)
    remove_tree(root)


def test_guests_boot_under_the_qemu_driver_with_a_read_only_store(lab: Lab) -> None:
    proc = lab.apply()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Plan: 2 to create." in proc.stdout
    for guest in ("a", "b"):
        assert lab.qemu_pid(guest) is not None
        log = lab.serial(guest)
        assert "reconcile-ready: /nix/store/" in log
        assert "reconcile-store: read-only" in log  # served from the read-only view
        mark = json.loads((lab.run_dir(guest) / "mark.json").read_text())
        assert mark["lab"] == LAB and mark["guest"] == guest
    assert subprocess.run(["pgrep", "-x", "libvirtd"], check=False).returncode in (0, 1)
    lab.assert_converged()


def test_a_memory_change_restarts_only_that_guest(lab: Lab) -> None:
    before = {g: lab.qemu_pid(g) for g in ("a", "b")}
    lab.guests["b"] = "448MiB"
    lab.write()
    assert lab.changes() == {"a": "no-op", "b": "restart"}
    proc = lab.apply()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert lab.qemu_pid("a") == before["a"]
    assert lab.qemu_pid("b") not in (None, before["b"])
    argv = Path(f"/proc/{lab.qemu_pid('b')}/cmdline").read_bytes().split(b"\0")
    assert b"448M" in argv
    lab.assert_converged()


def test_kill_9_of_qemu_is_seen_and_apply_starts_it_again(lab: Lab) -> None:
    pid = lab.qemu_pid("a")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while lab.qemu_pid("a") is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert lab.changes() == {"a": "start", "b": "no-op"}
    proc = reconcile("plan", str(lab.manifest))
    assert "crashed -> running" in proc.stdout, proc.stdout
    drift = reconcile("drift", str(lab.manifest), "--format", "json")
    assert drift.returncode == 2, drift.stdout + drift.stderr  # drift covers these guests too
    items = {i["name"]: i["status"] for i in json.loads(drift.stdout)["items"]}
    assert items["a"] == "drifted" and items["b"] == "in-sync"
    proc = lab.apply()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert lab.qemu_pid("a") not in (None, pid)
    lab.assert_converged()


def test_sigkill_of_reconcile_mid_apply_leaves_guests_running(lab: Lab) -> None:
    lab.guests["b"] = "384MiB"
    lab.write()
    env = {**os.environ, "RECONCILE_FAULT": "kill-after:b/start"}
    proc = lab.apply(env=env)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    time.sleep(1)
    assert lab.qemu_pid("b") is not None  # the guest outlived reconcile
    assert lab.qemu_pid("a") is not None
    again = lab.apply()
    assert again.returncode == 0, again.stdout + again.stderr
    lab.assert_converged()


def test_a_qemu_that_reconcile_did_not_start_is_untouched(lab: Lab) -> None:
    foreign_dir = lab.state / "qemu" / "local" / f"{LAB}-x"  # unmarked: not ours
    foreign_dir.mkdir(parents=True)
    (foreign_dir / "note").write_text("someone else's\n")
    foreign = subprocess.Popen(
        [
            "qemu-system-x86_64",
            "-name",
            f"guest={LAB}-x",
            "-S",
            "-nodefaults",
            "-display",
            "none",
            "-machine",
            "q35,accel=tcg",
            "-m",
            "64M",
            "-qmp",
            f"unix:{foreign_dir}/qmp.sock,server=on,wait=off",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        lab.assert_converged()
        proc = lab.apply("--prune")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert foreign.poll() is None
        assert (foreign_dir / "note").read_text() == "someone else's\n"
        plan = reconcile("plan", str(lab.manifest), "--show-unmanaged")
        assert f"{LAB}-x" in plan.stdout  # listed as unmanaged
    finally:
        foreign.kill()
        foreign.wait()
        shutil.rmtree(foreign_dir)


def test_a_removed_guest_is_pruned_and_its_run_directory_goes(lab: Lab) -> None:
    del lab.guests["b"]
    lab.write()
    assert lab.changes() == {"a": "no-op", "b": "keep"}
    proc = lab.apply("--prune")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert lab.qemu_pid("b") is None
    assert not lab.run_dir("b").exists()
    assert not (lab.state / "gcroots" / "b").exists() or not any(
        (lab.state / "gcroots" / "b").iterdir()
    )
    lab.assert_converged()


def test_moving_a_guest_from_libvirt_to_the_qemu_driver_leaves_one_copy(lab: Lab) -> None:
    lab.guests["m"] = "384MiB"
    lab.placed["m"] = "lv"
    lab.write()
    proc = lab.apply()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert libvirt_domains() == {f"{LAB}-m"} and lab.qemu_pid("m") is None
    lab.placed["m"] = "local"  # the qemu driver's hypervisor
    lab.write()
    plan = reconcile("plan", str(lab.manifest))
    assert "moved to hypervisor 'local'" in plan.stdout, plan.stdout
    proc = lab.apply()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert libvirt_domains() == set()  # no second copy left behind under libvirt
    assert lab.qemu_pid("m") is not None
    assert "reconcile-ready: /nix/store/" in lab.serial("m")
    lab.assert_converged()


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _new_closure(lab: Lab) -> None:
    systems = lab.flake / "systems.nix"
    text = systems.read_text()
    start = text.index("demo-a = { message = ")
    end = text.index(";", text.index('"', start + 22) + 1)
    token = os.urandom(4).hex()
    systems.write_text(text[:start] + f'demo-a = {{ message = "demo a {token}"' + text[end:])


def test_generations_and_a_rollback_through_plan_and_apply(lab: Lab) -> None:
    del lab.guests["m"]
    lab.write()
    assert lab.apply("--prune").returncode == 0
    listed = reconcile("generations", str(lab.manifest), "a")
    assert listed.returncode == 0 and "   1  " in listed.stdout, listed.stdout
    first = listed.stdout.splitlines()[1].split()[-1]
    tops = [first]
    for _ in range(2):  # two new closures: generations 2 and 3; 1 is released (keep 2)
        _new_closure(lab)
        proc = lab.apply()
        assert proc.returncode == 0, proc.stdout + proc.stderr
        pid = lab.qemu_pid("a")
        assert pid is not None
        tops.append(
            next(
                w.split("=", 1)[1][: -len("/init")]
                for w in _cmdline(pid).split()
                if w.startswith("init=")
            )
        )
    listed = reconcile("generations", str(lab.manifest), "a").stdout
    assert [line.split()[0] for line in listed.splitlines()[1:]] == ["2", "3"], listed
    roots = lab.state / "generations" / "a"
    assert sorted(p.name for p in roots.iterdir()) == ["2", "3"]  # 1's root released
    assert os.readlink(roots / "3") == tops[2]
    # back to generation 2, through the normal plan and apply
    back = reconcile("rollback", str(lab.manifest), "a", "--to", "2")
    assert back.returncode == 0 and "pinned to generation 2" in back.stdout, back.stdout
    assert lab.changes()["a"] == "restart"
    proc = lab.apply("--target", "a")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"init={tops[1]}/init" in _cmdline(lab.qemu_pid("a") or 0)
    lab.assert_converged()  # the pin holds: the manifest's newer system is not applied
    assert "(pinned by rollback)" in reconcile("generations", str(lab.manifest), "a").stdout
    # released: the manifest's system again
    assert reconcile("rollback", str(lab.manifest), "a", "--release").returncode == 0
    assert lab.changes()["a"] == "restart"
    assert lab.apply().returncode == 0
    assert f"init={tops[2]}/init" in _cmdline(lab.qemu_pid("a") or 0)
    lab.assert_converged()
