"""Disk guests end to end: the real CLI, libvirtd, QEMU (TCG), Nix, and the guest's own SSH
daemon reached on a forwarded loopback port with the key it printed at its first boot.

One lab is shared across the module; tests run in order and each leaves it converged.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.support.cli import reconcile
from tests.support.stack import SYSTEM_URI, ensure_libvirtd, remove_tree

pytestmark = pytest.mark.real

LAB = "dg"
BASE = Path("/var/lib/reconcile-tests")
KEY = Path("/var/lib/reconcile/demo-ssh/id_ed25519")  # scripts/setup.sh makes it
PORTS = {"one": 22101, "two": 22102, "kill": 22103}
# A config share: a store path the lab builds, mounted read-only by the guest's system.
SEED = 'config_shares = [{ tag = "seed", source = ".#packages.x86_64-linux.demo-seed" }]'
NETWORK = "default"  # libvirt's own; its leases are read, its addresses never connected to


class Lab:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.flake = root / "flake"
        self.state = root / "state"
        self.manifest = root / "lab.toml"
        # name -> (system, extra TOML lines)
        self.guests: dict[str, tuple[str, str]] = {}
        self.sizes: dict[str, str] = {}  # disk.size, when not 1GiB
        self.formats: dict[str, str] = {}  # disk.format, when not qcow2

    def write(self) -> None:
        text = f"""
[lab]
name = "{LAB}"
flake = "{self.flake}"
state_dir = "{self.state}"
[hypervisors.local]
uri = "{SYSTEM_URI}"
accel = "qemu"
"""
        for name, (system, extra) in sorted(self.guests.items()):
            text += f"""
[guests.{name}]
mode = "disk"
system = "{system}"
memory = "384MiB"
disk = {{ size = "{self.sizes.get(name, "1GiB")}", format = "{self.formats.get(name, "qcow2")}" }}
{self._network(name)}
boot_timeout = "240s"
shutdown_timeout = "20s"
{extra}
"""
        self.manifest.write_text(text)

    @staticmethod
    def _network(name: str) -> str:
        if name not in PORTS:  # on libvirt's network: no SSH (this test may not reach it)
            return f'network = {{ libvirt = "{NETWORK}" }}\nupdate = "recreate"'
        return (
            f"network = {{ user = true, ssh_port = {PORTS[name]} }}\n"
            f'ssh = {{ identity = "{KEY}", connect_timeout = "5s" }}'
        )

    def apply(
        self, *extra: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return reconcile("apply", str(self.manifest), "--yes", *extra, env=env)

    def plan_json(self) -> dict[str, object]:
        proc = reconcile("plan", str(self.manifest), "--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        doc: dict[str, object] = json.loads(proc.stdout)
        return doc

    def assert_converged(self) -> None:
        proc = reconcile("plan", str(self.manifest), "--detailed-exitcode")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "No changes." in proc.stdout

    def ssh(self, guest: str, *command: str) -> str:
        """A command on the guest through `reconcile ssh`: OpenSSH with the pinned key only."""
        proc = reconcile("ssh", str(self.manifest), guest, "--", *command)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    def overlay(self, guest: str) -> Path:
        return self.state / "guests" / guest / "disk.qcow2"

    def toplevel(self, system: str) -> str:
        attr = f"nixosConfigurations.{system}.config.system.build.toplevel.outPath"
        out = subprocess.run(
            ["nix", "eval", "--raw", f"path:{self.flake}#{attr}"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return out.stdout.strip()


def virsh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["virsh", "-c", SYSTEM_URI, *args], capture_output=True, text=True, check=False
    )


def domid(guest: str) -> str:
    return virsh("domid", f"{LAB}-{guest}").stdout.strip()


def backing_chain(path: Path) -> list[dict[str, object]]:
    out = subprocess.run(
        ["qemu-img", "info", "--backing-chain", "--output=json", "-U", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    chain: list[dict[str, object]] = json.loads(out.stdout)
    return chain


def _cleanup() -> None:
    names = virsh("list", "--all", "--name").stdout.split()
    for name in names:
        if name.startswith(f"{LAB}-"):
            virsh("destroy", name)
            virsh("undefine", name)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    if not KEY.exists() or not (ROOT / "nix" / "bb" / "authorized_keys").exists():
        pytest.fail("the demo's SSH key is missing: run `make setup` (scripts/setup.sh)")
    ensure_libvirtd()
    _cleanup()
    root = BASE / LAB
    remove_tree(root)
    root.mkdir(parents=True)
    os.chmod(BASE, 0o755)
    shutil.copytree(ROOT / "nix", root / "flake", ignore=shutil.ignore_patterns("result*"))
    made = Lab(root)
    made.guests = {"one": ("demo-disk", SEED), "two": ("demo-disk", "")}
    made.write()
    yield made
    _cleanup()
    remove_tree(root)


def test_guests_boot_from_overlays_on_one_shared_store_image(lab: Lab) -> None:
    proc = lab.apply()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Plan: 2 to create." in proc.stdout
    assert "address: 127.0.0.1:22101" in proc.stdout
    chains = {g: backing_chain(lab.overlay(g)) for g in ("one", "two")}
    for chain in chains.values():
        assert len(chain) == 2 and chain[0]["format"] == "qcow2"
        assert str(chain[1]["filename"]).startswith("/nix/store/")
        assert chain[0]["virtual-size"] == 1 << 30
    assert chains["one"][1]["filename"] == chains["two"][1]["filename"]  # one backing file
    image = str(chains["one"][1]["filename"]).split("/")[3]
    roots = {p.readlink().name for p in (lab.state / "gcroots" / "one").iterdir()}
    assert image in roots  # the image is kept while the overlay uses it
    keys = {g: (lab.state / "guests" / g / "ssh_host_key.pub").read_text() for g in ("one", "two")}
    assert keys["one"] != keys["two"]  # made by each guest at its first boot
    serial = (lab.state / "guests" / "one" / "serial.log").read_text(errors="replace")
    assert "reconcile-ready: " in serial
    assert "reconcile-share: seed mounted read-only at /etc/reconcile-seed" in serial
    assert lab.ssh("one", "cat /etc/reconcile-seed/seed.txt") == "reconcile demo seed\n"
    refused = reconcile("ssh", str(lab.manifest), "one", "--", "touch /etc/reconcile-seed/x")
    assert refused.returncode != 0  # mounted read-only, and served from a read-only view
    lab.assert_converged()


def test_a_new_system_is_switched_over_ssh_without_a_restart_and_the_disk_is_kept(lab: Lab) -> None:
    assert lab.ssh("one", "echo kept > /root/marker; cat /root/marker") == "kept\n"
    before = domid("one")
    lab.guests["one"] = ("demo-disk-b", SEED)
    lab.write()
    plan = reconcile("plan", str(lab.manifest))
    assert "disk guest one (root@127.0.0.1:22101) will be switched" in plan.stdout, plan.stdout
    proc = lab.apply()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert domid("one") == before  # the same QEMU: no restart
    assert lab.ssh("one", "readlink", "/run/current-system").strip() == lab.toplevel("demo-disk-b")
    assert lab.ssh("one", "cat", "/root/marker") == "kept\n"
    lab.assert_converged()


def test_growing_the_disk_keeps_the_guest_running_and_shrinking_is_refused(lab: Lab) -> None:
    before = domid("two")
    lab.sizes["two"] = "2GiB"
    lab.write()
    changes = {c["guest"]: c["change"] for c in lab.plan_json()["changes"]}  # type: ignore[attr-defined]
    assert changes == {"one": "no-op", "two": "resize"}
    proc = lab.apply()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert domid("two") == before
    assert backing_chain(lab.overlay("two"))[0]["virtual-size"] == 2 << 30
    assert lab.ssh("two", "cat", "/sys/block/vda/size").strip() == str((2 << 30) // 512)
    lab.assert_converged()
    lab.sizes["two"] = "1GiB"
    lab.write()
    proc = reconcile("plan", str(lab.manifest))
    assert proc.returncode == 1 and "never shrunk" in proc.stdout, proc.stdout + proc.stderr
    lab.sizes["two"] = "2GiB"
    lab.write()


def test_a_restart_and_a_new_system_converge_in_one_apply(lab: Lab) -> None:
    system = "demo-disk" if lab.guests["one"][0] == "demo-disk-b" else "demo-disk-b"
    lab.guests["one"] = (system, SEED + "\nvcpus = 2")
    lab.write()
    plan = reconcile("plan", str(lab.manifest))
    assert "guest one will be cold-restarted" in plan.stdout, plan.stdout
    assert "disk guest one (root@127.0.0.1:22101) will be switched" in plan.stdout, plan.stdout
    proc = lab.apply()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert lab.ssh("one", "readlink /run/current-system").strip() == lab.toplevel(system)
    assert lab.ssh("one", "nproc").strip() == "2"
    lab.assert_converged()


def test_recreate_wipes_the_overlay_keeps_data_disks_and_asks_first(lab: Lab) -> None:
    lab.guests["two"] = (
        "demo-disk",
        'update = "recreate"\ndata_disks = [{ name = "data", size = "16MiB" }]',
    )
    lab.write()
    proc = lab.apply()  # a new data disk: a cold restart (disks are part of the definition)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lab.ssh("two", "echo on-overlay > /root/marker; echo on-data-disk | dd of=/dev/vdb conv=fsync")
    lab.assert_converged()
    lab.guests["two"] = ("demo-disk-b", lab.guests["two"][1])
    lab.write()
    plan = reconcile("plan", str(lab.manifest))
    assert "will be recreated: ITS DISK IS WIPED" in plan.stdout, plan.stdout
    refused = lab.apply()
    assert refused.returncode == 1 and "--allow-recreate" in refused.stderr, refused.stderr
    proc = lab.apply("--allow-recreate")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert lab.ssh("two", "cat /root/marker 2>/dev/null || echo gone") == "gone\n"
    assert lab.ssh("two", "head", "-c", "12", "/dev/vdb") == "on-data-disk"
    assert lab.ssh("two", "readlink", "/run/current-system").strip() == lab.toplevel("demo-disk-b")
    lab.assert_converged()


@pytest.mark.parametrize(
    "fault",
    [
        "kill-after:kill/disks",
        "kill-after:kill/define",
        "kill-after:kill/start",
        "kill-before:kill/wait-ready",
    ],
)
def test_sigkill_at_an_action_boundary_then_rerun_converges(lab: Lab, fault: str) -> None:
    systems = lab.flake / "systems.nix"
    message = f"disk {fault} {uuid.uuid4().hex[:8]}"  # an image no earlier run has built
    text = re.sub(r"\n  demo-disk-k = [^\n]*", "", systems.read_text())
    entry = f'  demo-disk-k = {{ backend = "disk"; message = "{message}"; }};\n}}'
    systems.write_text(text.rstrip().removesuffix("}") + entry + "\n")
    lab.guests["kill"] = ("demo-disk-k", "")
    lab.write()
    killed = lab.apply(env={"RECONCILE_FAULT": fault})
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    proc = lab.apply()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert message in (lab.state / "guests" / "kill" / "serial.log").read_text(errors="replace")
    del lab.guests["kill"]
    lab.write()
    proc = lab.apply("--prune")
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("fault", ["kill-after:kill/shutdown", "kill-after:kill/wipe"])
def test_sigkill_during_a_recreate_then_rerun_converges(lab: Lab, fault: str) -> None:
    lab.guests["kill"] = ("demo-disk", 'update = "recreate"')
    lab.write()
    proc = lab.apply("--allow-recreate")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lab.guests["kill"] = ("demo-disk-b", 'update = "recreate"')
    lab.write()
    killed = lab.apply("--allow-recreate", env={"RECONCILE_FAULT": fault})
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    proc = lab.apply("--allow-recreate")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    serial = (lab.state / "guests" / "kill" / "serial.log").read_text(errors="replace")
    assert f"reconcile-ready: {lab.toplevel('demo-disk-b')}" in serial
    lab.assert_converged()
    del lab.guests["kill"]
    lab.write()
    proc = lab.apply("--prune")
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("fault", ["kill-after:one/profile", "kill-after:one/activate"])
def test_sigkill_during_a_switch_then_rerun_converges(lab: Lab, fault: str) -> None:
    system = "demo-disk" if lab.guests["one"][0] == "demo-disk-b" else "demo-disk-b"
    lab.guests["one"] = (system, SEED)
    lab.write()
    killed = lab.apply(env={"RECONCILE_FAULT": fault})
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    proc = lab.apply()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert lab.ssh("one", "readlink /run/current-system").strip() == lab.toplevel(system)
    assert lab.ssh("one", "cat /root/marker") == "kept\n"
    lab.assert_converged()


def test_a_raw_image_on_libvirts_network_shows_its_lease(lab: Lab) -> None:
    started = virsh("net-info", NETWORK).stdout.find("Active:         no") >= 0
    if started:
        assert virsh("net-start", NETWORK).returncode == 0
    try:
        lab.guests["lease"] = ("demo-disk", "")
        lab.formats["lease"] = "raw"
        lab.write()
        proc = lab.apply()
        assert proc.returncode == 0, proc.stdout + proc.stderr
        chain = backing_chain(lab.overlay("lease"))
        assert chain[1]["format"] == "raw" and str(chain[1]["filename"]).endswith(".img")
        guest = next(c for c in lab.plan_json()["changes"] if c["guest"] == "lease")  # type: ignore[attr-defined]
        assert re.fullmatch(r"192\.168\.122\.\d+", guest["address"]), guest
        drift = reconcile("drift", str(lab.manifest), "--format", "json")
        item = next(i for i in json.loads(drift.stdout)["items"] if i["name"] == "lease")
        assert item["where"] == f"local at {guest['address']}"
        lab.assert_converged()
        del lab.guests["lease"]
        lab.write()
        proc = lab.apply("--prune")
        assert proc.returncode == 0, proc.stdout + proc.stderr
    finally:
        if started:
            virsh("net-destroy", NETWORK)


def test_prune_removes_the_overlay_its_data_disks_and_the_image_root(lab: Lab) -> None:
    del lab.guests["two"]
    lab.write()
    plan = reconcile("plan", str(lab.manifest))
    assert "--prune destroys it" in plan.stdout, plan.stdout
    proc = lab.apply("--prune")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert virsh("dominfo", f"{LAB}-two").returncode != 0
    guest_dir = lab.state / "guests" / "two"
    assert not list(guest_dir.glob("*.qcow2")) if guest_dir.exists() else True
    assert not (lab.state / "gcroots" / "two").exists() or not list(
        (lab.state / "gcroots" / "two").iterdir()
    )
    lab.assert_converged()
