"""Imageless guests end to end: the real CLI, libvirtd, QEMU (TCG) and Nix.

One lab is shared across the module (guests boot in seconds, but not in nothing); tests
run in order and each leaves the lab converged for the next. The flake is a copy of nix/
so a test can change one system's closure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconcile.adapters.lock import LabLock
from reconcile.core.layout import StateLayout
from tests.conftest import ROOT
from tests.support.cli import reconcile
from tests.support.stack import SYSTEM_URI, ensure_libvirtd, remove_tree, writable_mounts_below

pytestmark = pytest.mark.real

LAB = "e2e"
BASE = Path("/var/lib/reconcile-tests")  # not pytest's 0700 tmp: QEMU reads the initrd here
GUEST = """
[guests.{name}]
mode = "imageless"
system = "{system}"
kernel = "host"
memory = "{memory}"
shutdown_timeout = "15s"
boot_timeout = "120s"
{extra}
"""


# Guest b's system tries to write to each share, mounted read-write by the guest; only
# rw-data is writable (the others are served from read-only views on the host).
PROBED = ("store", "modules", "ro-data", "rw-data")
MODULES = Path("/lib/modules").resolve()  # the kernel's share (/usr/lib/modules, merged /usr)
B_SHARES = """shares = [
  {{ tag = "ro-data", source = "{root}/ro-data", writable = false }},
  {{ tag = "rw-data", source = "{root}/rw-data", writable = true }},
]"""


def virsh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["virsh", "-c", SYSTEM_URI, *args], capture_output=True, text=True, check=check
    )


def domains() -> set[str]:
    out = virsh("list", "--all", "--name").stdout
    return {line.strip() for line in out.splitlines() if line.strip().startswith(f"{LAB}-")}


def domain_id(name: str) -> str:
    return virsh("domid", name).stdout.strip()


def cleanup() -> None:
    for name in domains():
        virsh("destroy", name, check=False)
        virsh("undefine", name, check=False)


class Lab:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.flake = root / "flake"
        self.state = root / "state"
        self.manifest = root / "lab.toml"
        self.guests: dict[str, tuple[str, str, str]] = {}

    def write(self, uri: str = SYSTEM_URI, hypervisor_extra: str = "") -> Path:
        text = f"""
[lab]
name = "{LAB}"
flake = "{self.flake}"
state_dir = "{self.state}"
[hypervisors.local]
uri = "{uri}"
accel = "qemu"
{hypervisor_extra}
[kernels.host]
image = "/vmlinuz"
initrd_modules = ["virtio_pci", "virtiofs"]
"""
        for name, (system, memory, extra) in sorted(self.guests.items()):
            text += GUEST.format(name=name, system=system, memory=memory, extra=extra)
        self.manifest.write_text(text)
        return self.manifest

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return reconcile(*args, env=env)

    def apply(
        self, *extra: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.run("apply", str(self.manifest), "--yes", *extra, env=env)

    def plan_json(self, *extra: str) -> dict[str, object]:
        proc = self.run("plan", str(self.manifest), "--json", *extra)
        assert proc.returncode == 0, proc.stderr
        doc: dict[str, object] = json.loads(proc.stdout)
        return doc

    def changes(self, *extra: str) -> dict[str, str]:
        doc = self.plan_json(*extra)
        return {c["guest"]: c["change"] for c in doc["changes"]}  # type: ignore[attr-defined,index]

    def assert_converged(self) -> None:
        proc = self.run("plan", str(self.manifest), "--detailed-exitcode")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "No changes." in proc.stdout

    def serial(self, guest: str) -> str:
        return (self.state / "guests" / guest / "serial.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    ensure_libvirtd()
    cleanup()
    root = BASE / LAB
    remove_tree(root)
    root.mkdir(parents=True)
    os.chmod(BASE, 0o755)
    shutil.copytree(ROOT / "nix", root / "flake", ignore=shutil.ignore_patterns("result*"))
    shutil.copy2("/bin/busybox", root / "flake" / "bb" / "busybox")
    systems = root / "flake" / "systems.nix"
    probes = " ".join(f'"{tag}"' for tag in PROBED)
    systems.write_text(
        systems.read_text().replace(
            'demo-b = { message = "demo system b"; };',
            f'demo-b = {{ message = "demo system b"; probeShares = [ {probes} ]; }};',
        )
    )
    (root / "ro-data").mkdir()
    (root / "ro-data" / "kept").write_text("host data\n")
    (root / "rw-data").mkdir()
    made = Lab(root)
    made.guests = {
        "a": ("demo-a", "384MiB", ""),
        "b": ("demo-b", "384MiB", B_SHARES.format(root=root)),
        "c": ("demo-a", "384MiB", ""),
    }
    made.write()
    yield made
    cleanup()
    remove_tree(root)  # unmounts the lab's read-only views first
    for stray in (Path("/nix/store"), Path("/lib/modules")):  # only if a probe got through
        for path in stray.glob(".reconcile-probe-*"):
            path.unlink()


def probe_results(log: str) -> dict[str, str]:
    found = re.findall(r"^reconcile-probe: (\S+) (.*?)\r?$", log, re.MULTILINE)
    return dict(found)


def test_apply_boots_guests_then_plan_is_empty(lab: Lab) -> None:
    proc = lab.apply()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Plan: 3 to create." in proc.stdout
    assert "Apply complete" in proc.stdout
    assert domains() == {"e2e-a", "e2e-b", "e2e-c"}
    for guest in ("a", "b", "c"):
        log = lab.serial(guest)
        assert "reconcile-ready: /nix/store/" in log
        # the store is shared read-only: a write from the guest fails
        assert "reconcile-store: read-only" in log
    assert (
        "<source dir='/var/lib/reconcile-tests/e2e/state/store'/>"
        in virsh("dumpxml", "e2e-a").stdout
    )
    xml = virsh("dumpxml", "e2e-b").stdout
    for source, served in [
        (MODULES, StateLayout(lab.state).view(MODULES)),
        (lab.root / "ro-data", StateLayout(lab.state).view(lab.root / "ro-data")),
        (lab.root / "rw-data", lab.root / "rw-data"),  # writable: shared as it is
    ]:
        assert f"<source dir='{served}'/>" in xml, source
    assert writable_mounts_below(lab.state) == []
    lab.assert_converged()
    again = lab.apply()
    assert again.returncode == 0
    assert "No changes." in again.stdout


def test_guest_writes_to_read_only_shares_fail_on_the_host(lab: Lab) -> None:
    """Guest b mounts every share read-write and writes: only the writable one takes it."""
    assert probe_results(lab.serial("b")) == {
        "store": "mount=rw write=EROFS",
        "modules": "mount=rw write=EROFS",
        "ro-data": "mount=rw write=EROFS",
        "rw-data": "mount=rw write=written",
    }
    assert not list(Path("/nix/store").glob(".reconcile-probe-*"))
    assert not list(Path("/lib/modules").glob(".reconcile-probe-*"))
    assert [p.name for p in (lab.root / "ro-data").iterdir()] == ["kept"]
    assert (lab.root / "ro-data" / "kept").read_text() == "host data\n"
    written = (lab.root / "rw-data" / ".reconcile-probe-demo-b").read_text()
    assert written.startswith("/nix/store/") and "demo-b" in written


def test_a_writable_or_missing_view_is_drift_and_apply_remakes_it(lab: Lab) -> None:
    store = lab.state / "store"
    modules = StateLayout(lab.state).view(MODULES)
    subprocess.run(["mount", "-o", "remount,bind,rw", str(store)], check=True)
    subprocess.run(["umount", str(modules)], check=True)
    assert writable_mounts_below(lab.state) == [str(store)]
    doc = lab.plan_json()
    views = {v["path"]: v["state"] for v in doc["views"]}  # type: ignore[attr-defined]
    assert views == {str(store): "writable", str(modules): "missing"}
    plan = lab.run("plan", str(lab.manifest), "--detailed-exitcode")
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert f"view {store} of /nix/store: writable from the host" in plan.stdout
    assert "2 view(s) to make read-only" in plan.stdout
    drift = lab.run("drift", str(lab.manifest))
    assert drift.returncode == 2, drift.stdout + drift.stderr
    assert "share store" in drift.stdout and "share modules" in drift.stdout
    ids = {g: domain_id(f"e2e-{g}") for g in ("a", "b", "c")}
    proc = lab.apply()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {g: domain_id(f"e2e-{g}") for g in ("a", "b", "c")} == ids  # nothing restarted
    assert writable_mounts_below(lab.state) == []
    lab.assert_converged()
    assert lab.run("drift", str(lab.manifest)).returncode == 0


def test_memory_change_restarts_only_that_guest(lab: Lab) -> None:
    before = {g: domain_id(f"e2e-{g}") for g in ("a", "b", "c")}
    lab.guests["b"] = ("demo-b", "448MiB", B_SHARES.format(root=lab.root))
    lab.write()
    assert lab.changes() == {"a": "no-op", "b": "restart", "c": "no-op"}
    proc = lab.apply()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    after = {g: domain_id(f"e2e-{g}") for g in ("a", "b", "c")}
    assert after["a"] == before["a"] and after["c"] == before["c"]
    assert after["b"] != before["b"]
    assert "<memory unit='KiB'>458752</memory>" in virsh("dumpxml", "e2e-b").stdout
    lab.assert_converged()


def test_closure_change_restarts_only_its_guests(lab: Lab) -> None:
    systems = lab.flake / "systems.nix"
    token = f"demo system a, {uuid.uuid4().hex[:8]}"  # a closure no earlier run has built
    systems.write_text(systems.read_text().replace('"demo system a"', f'"{token}"'))
    doc = lab.plan_json()
    changes = {c["guest"]: c for c in doc["changes"]}  # type: ignore[attr-defined]
    assert {g: c["change"] for g, c in changes.items()} == {
        "a": "restart",
        "b": "no-op",
        "c": "restart",
    }
    assert [r["field"] for r in changes["a"]["reasons"]] == ["system"]
    assert len(doc["to_build"]) == 1  # type: ignore[arg-type]
    assert changes["a"]["closure"]["size_after"] is None  # not built: said, not guessed
    assert "closure: not built yet" in lab.run("plan", str(lab.manifest)).stdout
    # Built (as apply would), the plan shows what changes inside the closure.
    installable = f"path:{lab.flake}#nixosConfigurations.demo-a.config.system.build.toplevel"
    subprocess.run(["nix", "build", "--no-link", "--", installable], check=True)
    closure = {c["guest"]: c for c in lab.plan_json()["changes"]}["a"]["closure"]  # type: ignore[attr-defined,index]
    before, after = closure["before"], closure["after"]
    assert before.endswith("-nixos-system-demo-a") and after.endswith("-nixos-system-demo-a")
    assert closure["size_before"] > 0 and closure["size_after"] > closure["size_before"]
    assert closure["to_copy"] == 1  # only the toplevel: busybox and the initrd are shared
    assert [(c["name"], c["change"]) for c in closure["packages"]] == [
        ("nixos-system-demo-a", "resized")  # the message is longer
    ]
    text = lab.run("plan", str(lab.manifest)).stdout
    assert "closure: 0 changed, 0 added, 0 removed;" in text, text
    assert "~ nixos-system-demo-a (+" in text
    b_id = domain_id("e2e-b")
    proc = lab.apply()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert domain_id("e2e-b") == b_id
    assert token in lab.serial("a")
    lab.assert_converged()


def roots(lab: Lab, guest: str) -> set[str]:
    """The closures guest's GC roots keep, each also registered with Nix (gcroots/auto)."""
    directory = lab.state / "gcroots" / guest
    if not directory.is_dir():
        return set()
    registered = {os.readlink(a) for a in Path("/nix/var/nix/gcroots/auto").iterdir()}
    assert {str(link) for link in directory.iterdir()} <= registered
    return {os.readlink(link) for link in directory.iterdir()}


def test_a_running_older_closure_keeps_its_gc_root_until_restarted(lab: Lab) -> None:
    running = virsh("dumpxml", "e2e-a").stdout
    old = re.search(r"init=(/nix/store/[^/ ]+)/init", running)
    assert old is not None
    assert roots(lab, "a") == {old.group(1)}
    lab.guests["a"] = ("demo-a", "384MiB", 'restart = "never"')
    systems = lab.flake / "systems.nix"
    token = f"demo system a, {uuid.uuid4().hex[:8]}"
    systems.write_text(re.sub(r'"demo system a[^"]*"', f'"{token}"', systems.read_text()))
    lab.write()
    assert lab.changes()["a"] == "redefine"
    a_id = domain_id("e2e-a")
    proc = lab.apply("--target", "a")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert domain_id("e2e-a") == a_id  # not restarted: it still runs the old closure
    kept = roots(lab, "a")
    assert old.group(1) in kept and len(kept) == 2, kept  # the running one and the defined one
    lab.guests["a"] = ("demo-a", "384MiB", "")
    lab.write()
    proc = lab.apply("--target", "a")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert domain_id("e2e-a") != a_id
    assert roots(lab, "a") == kept - {old.group(1)}  # restarted: only the new closure's root
    assert lab.apply().returncode == 0  # c runs demo-a too
    lab.assert_converged()


def test_removed_guest_is_kept_without_prune_destroyed_with_it(lab: Lab) -> None:
    del lab.guests["c"]
    lab.write()
    assert lab.changes() == {"a": "no-op", "b": "no-op", "c": "keep"}
    proc = lab.apply()
    assert proc.returncode == 0
    assert "e2e-c" in domains()
    assert lab.changes("--prune")["c"] == "destroy"
    proc = lab.apply("--prune")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "e2e-c" not in domains()
    assert not (lab.state / "gcroots" / "c").exists()
    lab.assert_converged()


def test_unmarked_domain_survives_everything(lab: Lab, tmp_path: Path) -> None:
    xml = tmp_path / "intruder.xml"
    xml.write_text(
        "<domain type='qemu'><name>e2e-intruder</name><memory unit='MiB'>64</memory>"
        "<os><type arch='x86_64'>hvm</type></os></domain>"
    )
    virsh("define", str(xml))
    try:
        lab.guests["intruder"] = ("demo-b", "384MiB", "")
        lab.write()
        doc = lab.run("plan", str(lab.manifest), "--json", "--prune")
        assert doc.returncode == 1, doc.stdout + doc.stderr  # a conflict cannot converge
        changes = {c["guest"]: c["change"] for c in json.loads(doc.stdout)["changes"]}
        assert changes["intruder"] == "conflict"
        plan = lab.run("plan", str(lab.manifest), "--detailed-exitcode")
        assert plan.returncode == 1, plan.stdout + plan.stderr
        assert "No changes." not in plan.stdout
        assert "conflict at intruder" in plan.stderr and "e2e-intruder" in plan.stderr
        proc = lab.apply("--prune")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "never touched" in proc.stdout
        assert "CONFLICT" in proc.stdout and "1 conflict(s) (intruder)" in proc.stdout
        drift = lab.run("drift", str(lab.manifest))
        assert drift.returncode == 1, drift.stdout + drift.stderr
        assert "conflict: domain 'e2e-intruder'" in drift.stdout
        del lab.guests["intruder"]
        lab.write()
        proc = lab.apply("--prune", "--show-unmanaged")
        assert "e2e-intruder" in domains()
        assert "e2e-intruder" in proc.stdout  # listed as unmanaged
        assert virsh("domstate", "e2e-intruder").stdout.strip() == "shut off"
    finally:
        virsh("undefine", "e2e-intruder", check=False)
    lab.assert_converged()


def test_a_transient_guest_is_made_persistent_without_a_restart(lab: Lab) -> None:
    """`virsh undefine` of a running managed domain leaves it transient: it would vanish at
    libvirtd's next restart. Plan and drift say so; apply defines it again, no restart."""
    a_id = domain_id("e2e-a")
    virsh("undefine", "e2e-a")
    assert "Persistent:     no" in virsh("dominfo", "e2e-a").stdout
    doc = lab.plan_json()
    change = next(c for c in doc["changes"] if c["guest"] == "a")  # type: ignore[attr-defined]
    assert change["change"] == "redefine"
    assert change["reasons"] == [
        {"field": "persistence", "before": "transient", "after": "persistent"}
    ]
    assert "transient" in change["note"]
    plan = lab.run("plan", str(lab.manifest), "--detailed-exitcode")
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert "persistence: transient -> persistent" in plan.stdout
    drift = lab.run("drift", str(lab.manifest), "--format", "json")
    assert drift.returncode == 2, drift.stdout + drift.stderr
    item = next(i for i in json.loads(drift.stdout)["items"] if i["name"] == "a")
    assert [(f["field"], f["desired"], f["observed"]) for f in item["fields"]] == [
        ("persistence", "persistent", "transient")
    ]
    proc = lab.apply()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert domain_id("e2e-a") == a_id  # never restarted for this
    assert "Persistent:     yes" in virsh("dominfo", "e2e-a").stdout
    lab.assert_converged()


def test_missing_stale_or_unregistered_gc_roots_are_restored(lab: Lab) -> None:
    ids = {g: domain_id(f"e2e-{g}") for g in ("a", "b")}
    (root_a,) = (lab.state / "gcroots" / "a").iterdir()
    (root_b,) = (lab.state / "gcroots" / "b").iterdir()
    closure_a, closure_b = os.readlink(root_a), os.readlink(root_b)
    root_a.unlink()  # deleted
    for auto in Path("/nix/var/nix/gcroots/auto").iterdir():  # its registration gone
        if os.readlink(auto) == str(root_b):
            auto.unlink()
    doc = lab.plan_json()
    states = {
        r["guest"]: [p["state"] for p in r["problems"]]
        for r in doc["gc_roots"]  # type: ignore[attr-defined]
    }
    assert states == {"a": ["missing"], "b": ["unregistered"]}
    plan = lab.run("plan", str(lab.manifest), "--detailed-exitcode")
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert f"{closure_a}: missing" in plan.stdout
    drift = lab.run("drift", str(lab.manifest))
    assert drift.returncode == 2, drift.stdout + drift.stderr
    assert "gc roots" in drift.stdout
    proc = lab.apply()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert roots(lab, "a") == {closure_a} and roots(lab, "b") == {closure_b}
    lab.assert_converged()
    root_a.unlink()
    root_a.symlink_to(closure_b)  # pointing elsewhere
    assert lab.changes() == {"a": "no-op", "b": "no-op"}
    doc = lab.plan_json()
    assert doc["gc_roots"][0]["problems"][0]["state"] == "elsewhere"  # type: ignore[index]
    proc = lab.apply()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert roots(lab, "a") == {closure_a}
    assert {g: domain_id(f"e2e-{g}") for g in ("a", "b")} == ids  # the guests untouched
    lab.assert_converged()


def test_a_damaged_cached_initrd_is_made_anew(lab: Lab) -> None:
    cached = sorted((lab.state / "initrd").glob("*.img"))
    assert cached and all(Path(f"{c}.sha256").is_file() for c in cached)
    for image in cached:
        data = image.read_bytes()
        image.write_bytes(data[: len(data) // 2])  # a full disk's half-written file
    lab.guests["a"] = ("demo-a", "416MiB", "")  # a restart: its start reads the initrd
    lab.write()
    proc = lab.apply()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Kernel panic" not in lab.serial("a")
    assert "reconcile-ready: /nix/store/" in lab.serial("a")
    lab.assert_converged()


def test_a_copy_of_a_guests_mark_is_a_conflict_and_the_guest_is_kept(lab: Lab) -> None:
    """A domain carrying a's mark under another name is not a: --prune keeps both, and
    nothing of a (its domain, its GC roots) is touched."""
    xml = virsh("dumpxml", "--inactive", "e2e-a").stdout
    copy = re.sub(r"<uuid>[^<]*</uuid>", f"<uuid>{uuid.uuid4()}</uuid>", xml)
    copy = copy.replace("<name>e2e-a</name>", "<name>e2e-copy</name>")
    copy = re.sub(r"<mac address='[^']*'/>", "", copy)
    path = lab.root / "copy.xml"
    path.write_text(copy)
    virsh("define", str(path))
    try:
        kept = roots(lab, "a")
        a_id = domain_id("e2e-a")
        plan = lab.run("plan", str(lab.manifest), "--prune", "--detailed-exitcode")
        assert plan.returncode == 1, plan.stdout + plan.stderr
        assert "e2e-copy" in plan.stderr and "guest 'a'" in plan.stderr
        assert "destroy" not in plan.stdout
        proc = lab.apply("--prune")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "CONFLICT" in proc.stdout and "e2e-copy" in proc.stdout
        assert {"e2e-a", "e2e-copy"} <= domains()
        assert domain_id("e2e-a") == a_id
        assert roots(lab, "a") == kept
        drift = lab.run("drift", str(lab.manifest))
        assert drift.returncode == 1, drift.stdout + drift.stderr
        assert "e2e-copy" in drift.stdout
    finally:
        virsh("undefine", "e2e-copy", check=False)
    lab.assert_converged()


@pytest.mark.parametrize(
    "fault",
    [
        "kill-before:build",
        "kill-after:build",
        "kill-after:d/define",
        "kill-before:d/start",
        "kill-after:d/start",
        "kill-after:d/shutdown",
        "kill-before:d/wait-ready",
    ],
)
def test_sigkill_at_an_action_boundary_then_rerun_converges(lab: Lab, fault: str) -> None:
    systems = lab.flake / "systems.nix"
    message = f"c {fault} {uuid.uuid4().hex[:8]}"  # a closure no earlier run has built
    text = re.sub(
        r"demo-c = \{[^}]*\};", f'demo-c = {{ message = "{message}"; }};', systems.read_text()
    )
    systems.write_text(text)
    lab.guests["d"] = ("demo-c", "384MiB", "")
    lab.write()
    killed = lab.apply(env={"RECONCILE_FAULT": fault})
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    proc = lab.apply()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert message in lab.serial("d")
    lab.assert_converged()


def test_second_apply_is_refused_by_the_lock(lab: Lab) -> None:
    with LabLock(lab.state / "lock"):
        proc = lab.apply()
        assert proc.returncode == 1
        assert "error: the lab is locked by pid" in proc.stderr
        assert "--lock-timeout" in proc.stderr
        plan = lab.run("plan", str(lab.manifest))
        assert plan.returncode == 0  # plan takes no lock


def test_lock_timeout_waits_for_the_holder(lab: Lab) -> None:
    lock = LabLock(lab.state / "lock")
    lock.__enter__()
    timer = threading.Timer(1.5, lock.__exit__, (None, None, None))
    timer.start()
    try:
        proc = lab.apply("--lock-timeout", "30s")
    finally:
        timer.join()
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_protected_guest_is_never_pruned(lab: Lab) -> None:
    lab.guests["p"] = ("demo-b", "256MiB", "protect = true")
    lab.write()
    assert lab.apply().returncode == 0
    del lab.guests["p"]
    lab.write()
    assert lab.changes("--prune")["p"] == "keep"
    proc = lab.apply("--prune")
    assert proc.returncode == 0
    assert "defined with protect = true" in proc.stdout
    assert "e2e-p" in domains()
    virsh("destroy", "e2e-p", check=False)  # the test's own cleanup, outside reconcile
    virsh("undefine", "e2e-p")
    lab.assert_converged()


def test_saved_plan_applies_or_is_refused_as_stale(lab: Lab) -> None:
    lab.guests["d"] = ("demo-c", "320MiB", "")
    lab.write()
    saved = lab.root / "plan.json"
    assert lab.run("plan", str(lab.manifest), "--out", str(saved)).returncode == 0
    lab.guests["d"] = ("demo-c", "352MiB", "")
    lab.write()
    stale = lab.run("apply", str(saved), "--yes")
    assert stale.returncode == 1
    assert "the saved plan is stale" in stale.stderr
    assert "Traceback" not in stale.stderr
    assert lab.run("plan", str(lab.manifest), "--out", str(saved)).returncode == 0
    proc = lab.run("apply", str(saved), "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "<memory unit='KiB'>360448</memory>" in virsh("dumpxml", "e2e-d").stdout
    lab.assert_converged()


def test_clear_errors_libvirt_nix_kernel(lab: Lab) -> None:
    # Nothing listens on loopback port 1: the pinned qemu+ssh connection is refused.
    lab.write(
        uri="qemu+ssh://root@127.0.0.1:1/system",
        hypervisor_extra='host_key = "ssh-ed25519 '
        'AAAAC3NzaC1lZDI1NTE5AAAAIHVhmTUhVpvXYpbmqi7rMc9QIr4ldbyGFPIWu5SnU6RB"',
    )
    proc = lab.run("plan", str(lab.manifest))
    assert "unknown" in proc.stdout and "Traceback" not in proc.stderr
    assert "127.0.0.1:1" in proc.stdout
    proc = lab.apply()
    assert "Traceback" not in proc.stderr

    lab.write()
    lab.guests["broken"] = ("demo-broken", "256MiB", "")
    lab.write()
    proc = lab.apply()
    assert proc.returncode == 1
    assert "build failed" in proc.stdout or "command failed" in proc.stdout
    assert "nix --extra-experimental-features" in proc.stdout  # copy-pasteable command
    assert "made to fail its build" in proc.stdout
    assert "Traceback" not in proc.stderr
    del lab.guests["broken"]

    manifest = (
        lab.write().read_text().replace('image = "/vmlinuz"', 'image = "/nonexistent/vmlinuz"')
    )
    lab.manifest.write_text(manifest)
    proc = lab.run("plan", str(lab.manifest))
    assert proc.returncode == 1
    assert "error: kernel 'host': cannot read image /nonexistent/vmlinuz" in proc.stderr
    assert "hint:" in proc.stderr
    lab.write()
    lab.assert_converged()
