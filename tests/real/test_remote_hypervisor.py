"""A second hypervisor: a libvirtd inside a test host (its own network and mount namespace,
/run, /var/lib/libvirt, Nix store and lab state directory), reached over pinned SSH.

One lab for the module, tests in order: a guest boots there from what was copied into that
host's store, an unreachable host makes only its guests unknown, a wrong key is refused,
and a guest moved between the hypervisors leaves exactly one domain.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconcile.core.layout import StateLayout
from testbed.hosts import TestHost
from tests.conftest import ROOT
from tests.support.cli import reconcile
from tests.support.stack import SYSTEM_URI, ensure_libvirtd, remove_tree

pytestmark = pytest.mark.real

LAB = "rhv"
BASE = Path("/var/lib/reconcile-tests")  # QEMU (libvirt-qemu) reads kernels and initrds here
ROOT_DIR = BASE / LAB
STATE = ROOT_DIR / "state"
OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHVhmTUhVpvXYpbmqi7rMc9QIr4ldbyGFPIWu5SnU6RB"


def _imageless_only(directory: str, names: list[str]) -> list[str]:
    skip = [n for n in names if n.startswith("result")]
    return [*skip, "disk"] if Path(directory).name == "bb" and "disk" in names else skip


def local_virsh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["virsh", "-c", SYSTEM_URI, *args], capture_output=True, text=True, check=check
    )


def local_domains() -> set[str]:
    out = local_virsh("list", "--all", "--name").stdout
    return {n.strip() for n in out.splitlines() if n.strip().startswith(f"{LAB}-")}


def remote_domains(host: TestHost, state: str = "--all") -> set[str]:
    out = host.run(["virsh", "-c", "qemu:///system", "list", state, "--name"]).stdout
    return {n.strip() for n in out.splitlines() if n.strip().startswith(f"{LAB}-")}


def cleanup_local() -> None:
    for name in local_domains():
        local_virsh("destroy", name, check=False)
        local_virsh("undefine", name, check=False)


class Lab:
    def __init__(self, host: TestHost) -> None:
        self.host = host
        self.manifest = ROOT_DIR / "lab.toml"
        self.far_on = "far"
        self.far_key = host.host_key_line
        self.far_system = "demo-b"
        self.far_build_on = "controller"
        self.extra = ""

    def write(self) -> Path:
        host = self.host
        self.manifest.write_text(f"""
[lab]
name = "{LAB}"
flake = "{ROOT_DIR / "flake"}"
state_dir = "{STATE}"
[hypervisors.local]
uri = "{SYSTEM_URI}"
accel = "qemu"
[hypervisors.far]
uri = "qemu+ssh://root@{host.address}/system"
host_key = "{self.far_key}"
identity = "{host.identity}"
accel = "qemu"
build_on = "{self.far_build_on}"
[kernels.host]
image = "/vmlinuz"
initrd_modules = ["virtio_pci", "virtiofs"]
[guests.near]
mode = "imageless"
system = "demo-a"
kernel = "host"
hypervisor = "local"
memory = "384MiB"
boot_timeout = "120s"
[guests.far]
mode = "imageless"
system = "{self.far_system}"
kernel = "host"
hypervisor = "{self.far_on}"
memory = "384MiB"
boot_timeout = "120s"
[guests.far2]
mode = "imageless"
system = "demo-a"
kernel = "host"
hypervisor = "{self.far_on}"
memory = "384MiB"
state = "stopped"
{self.extra}
""")
        return self.manifest

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return reconcile(*args)

    def apply(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.run("apply", str(self.write()), "--yes", *extra)

    def plan_json(self) -> dict[str, object]:
        proc = self.run("plan", str(self.write()), "--json")
        doc: dict[str, object] = json.loads(proc.stdout)
        return doc

    def assert_converged(self) -> None:
        proc = self.run("plan", str(self.write()), "--detailed-exitcode")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "No changes." in proc.stdout

    def toplevel(self, system: str) -> str:
        attr = (
            f"path:{ROOT_DIR / 'flake'}#nixosConfigurations.{system}.config.system.build.toplevel"
        )
        return subprocess.run(
            ["nix", "eval", "--raw", f"{attr}.outPath"], capture_output=True, text=True, check=True
        ).stdout.strip()


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    ensure_libvirtd()
    cleanup_local()
    remove_tree(ROOT_DIR)
    STATE.mkdir(parents=True)
    os.chmod(BASE, 0o755)
    shutil.copytree(ROOT / "nix", ROOT_DIR / "flake", ignore=_imageless_only)
    shutil.copy2("/bin/busybox", ROOT_DIR / "flake" / "bb" / "busybox")
    # The host sees its own directory at STATE: what reconcile puts there is not here.
    with TestHost(libvirtd=True, private_dirs=(STATE,)) as host:
        made = Lab(host)
        try:
            yield made
        finally:
            cleanup_local()
    remove_tree(ROOT_DIR)


def mount_root(mountinfo: str, point: Path) -> str | None:
    """The root (field 4) of the topmost mount at `point`: what a bind mount shows."""
    found = None
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4] == str(point):
            found = fields[3]
    return found


def test_a_guest_boots_on_the_remote_hypervisor_from_its_own_store(lab: Lab) -> None:
    host = lab.host
    proc = lab.apply()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert remote_domains(host, "--state-running") == {f"{LAB}-far"}
    # far2 (stopped) was defined there at once with far: one copy of their closures at a time
    assert remote_domains(host) == {f"{LAB}-far", f"{LAB}-far2"}
    assert host.has_path(lab.toplevel("demo-a"))
    assert local_domains() == {f"{LAB}-near"}  # far is not here
    far_top = lab.toplevel("demo-b")
    assert host.has_path(far_top)  # copied into the host's own store
    layout = StateLayout(STATE)
    # Its console log, kernel and views are the host's, not this machine's.
    log = host.run(["cat", str(layout.serial_log("far"))]).stdout
    assert f"reconcile-ready: {far_top}" in log
    assert not layout.serial_log("far").exists()
    shown = lab.run("console", str(lab.manifest), "far", "--no-follow", "-n", "400")
    assert shown.returncode == 0 and f"reconcile-ready: {far_top}" in shown.stdout, shown
    xml = host.run(["virsh", "-c", "qemu:///system", "dumpxml", f"{LAB}-far"]).stdout
    placed = re.search(r"<kernel>([^<]+)</kernel>", xml)[1]  # type: ignore[index]
    assert placed.startswith(str(layout.placed_kernels)), xml
    assert host.run(["test", "-s", placed], check=False).returncode == 0
    assert not Path(placed).exists()
    # The store it boots from is the host's: its view binds the host's /nix/store, whose
    # directory is not this machine's /nix/store.
    theirs = mount_root(host.run(["cat", "/proc/self/mountinfo"]).stdout, layout.store_view)
    ours = mount_root(Path("/proc/self/mountinfo").read_text(), layout.store_view)
    assert theirs is not None and theirs.endswith("/nix/store") and theirs != "/nix/store"
    assert str(host.dir) in theirs
    assert ours == "/nix/store"  # near's view here
    # GC roots there keep the closure there.
    roots = host.run(["ls", str(layout.gcroot("far"))]).stdout.split()
    assert roots == [far_top.rsplit("/", 1)[-1]]
    lab.assert_converged()


def test_an_unreachable_hypervisor_makes_only_its_guests_unknown(lab: Lab) -> None:
    lab.extra = """
[guests.near2]
mode = "imageless"
system = "demo-a"
kernel = "host"
hypervisor = "local"
memory = "384MiB"
state = "stopped"
"""
    lab.host.kill_network()
    try:
        proc = lab.apply()
        assert proc.returncode == 1, proc.stdout + proc.stderr
        said = proc.stdout + proc.stderr
        assert "far" in said and "unreachable" in said, said
        assert local_domains() == {f"{LAB}-near", f"{LAB}-near2"}  # the local one converged
    finally:
        lab.host.restore_network()
    assert remote_domains(lab.host, "--state-running") == {f"{LAB}-far"}  # untouched
    lab.assert_converged()


def test_a_wrong_host_key_is_refused(lab: Lab) -> None:
    lab.far_key = OTHER_KEY
    try:
        proc = lab.run("plan", str(lab.write()), "--detailed-exitcode")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        said = proc.stdout + proc.stderr
        assert "host key" in said, said
    finally:
        lab.far_key = lab.host.host_key_line
    lab.assert_converged()


def test_a_system_built_on_its_hypervisor_is_never_here(lab: Lab) -> None:
    host, layout = lab.host, StateLayout(STATE)
    systems = ROOT_DIR / "flake" / "systems.nix"
    message = f"built on far {uuid.uuid4().hex[:8]}"  # a closure no run built before
    systems.write_text(
        re.sub(
            r"demo-c = \{[^}]*\};", f'demo-c = {{ message = "{message}"; }};', systems.read_text()
        )
    )
    lab.far_system, lab.far_build_on = "demo-c", "hypervisor"
    try:
        top = lab.toplevel("demo-c")
        doc = lab.plan_json()
        assert "hypervisor far (its guests' systems)" in doc["built_on"], doc  # type: ignore[operator]
        assert doc["to_build"] == [], doc  # nothing of it is built here
        proc = lab.apply()
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert 'Systems built where their guests run (build_on = "hypervisor")' in proc.stdout
        assert host.has_path(top)
        here = subprocess.run(
            ["nix-store", "--check-validity", top], check=False, capture_output=True
        )
        assert here.returncode != 0, "the system was built (or copied) here"
        log = host.run(["cat", str(layout.serial_log("far"))]).stdout
        assert f"reconcile-ready: {top}" in log and message in log
        xml = host.run(["virsh", "-c", "qemu:///system", "dumpxml", f"{LAB}-far"]).stdout
        initrd = re.search(r"<initrd>([^<]+)</initrd>", xml)[1]  # type: ignore[index]
        assert initrd.startswith(str(layout.initrd_dir)), xml  # joined there, early modules first
        assert host.run(["test", "-s", initrd], check=False).returncode == 0
        lab.assert_converged()
    finally:
        lab.far_system, lab.far_build_on = "demo-b", "controller"
    proc = lab.apply()  # back to a system built here and copied
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lab.assert_converged()


SPARE = """
[guests.spare]
mode = "imageless"
system = "demo-a"
kernel = "host"
hypervisor = "far"
memory = "384MiB"
state = "stopped"
"""


def test_pruning_on_a_remote_hypervisor_obeys_the_same_rules(lab: Lab) -> None:
    host, layout = lab.host, StateLayout(STATE)
    kept = lab.extra
    lab.extra = kept + SPARE
    proc = lab.apply()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{LAB}-spare" in remote_domains(host)
    assert host.run(["ls", str(layout.gcroot("spare"))]).stdout.split()  # rooted there
    lab.extra = kept  # gone from the manifest
    changes = {c["guest"]: c["change"] for c in lab.plan_json()["changes"]}  # type: ignore[attr-defined,index]
    assert changes["spare"] == "keep", changes  # an orphan: kept without --prune
    host.kill_network()
    try:
        proc = lab.apply("--prune")
        assert proc.returncode == 1, proc.stdout + proc.stderr  # unknown: nothing pruned
    finally:
        host.restore_network()
    assert f"{LAB}-spare" in remote_domains(host)
    proc = lab.apply("--prune")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert remote_domains(host) == {f"{LAB}-far", f"{LAB}-far2"}
    gone = host.run(["test", "-e", str(layout.gcroot("spare"))], check=False)
    assert gone.returncode != 0  # its roots there went with it
    lab.assert_converged()


def test_moving_a_guest_between_hypervisors_leaves_exactly_one_domain(lab: Lab) -> None:
    lab.far_on = "local"
    doc = lab.plan_json()
    kinds = {(c["guest"], c["hypervisor"]): c["change"] for c in doc["changes"]}  # type: ignore[attr-defined,index]
    assert kinds[("far", "far")] != "noop" and kinds[("far", "local")] == "create", kinds
    proc = lab.apply()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert remote_domains(lab.host) == set()
    assert local_domains() == {f"{LAB}-near", f"{LAB}-near2", f"{LAB}-far", f"{LAB}-far2"}
    lab.assert_converged()
    # Nothing there boots its kernel copy now: --prune removes it, there.
    placed = StateLayout(STATE).placed_kernels
    copies = lab.host.run(["ls", "-A", str(placed)]).stdout.split()
    assert len(copies) == 1, copies
    doc = json.loads(lab.run("plan", str(lab.manifest), "--json", "--prune").stdout)
    assert doc["kernel_copies_to_remove"] == [
        {"hypervisor": "far", "directory": str(placed / copies[0])}
    ], doc
    proc = lab.apply("--prune")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert lab.host.run(["ls", "-A", str(placed)]).stdout.split() == []
    lab.assert_converged()
