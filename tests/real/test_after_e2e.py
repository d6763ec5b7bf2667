"""Ordering between machines end to end (`after`): the real CLI, libvirtd, QEMU (TCG), Nix.

Guest `app` comes after `db`; `web` is independent. First `db` boots a kernel without its
virtio modules in the initrd (kernel `bare`): stage 1 finds no virtiofs and says so on the
console (`reconcile-initrd: error:`), which fails its wait at once. Apply exits 1, db is
FAILED, app BLOCKED naming db's failed action and never defined, web converges. Then db
boots the right kernel: apply converges, and app is defined only after db was ready.

Tests run in order on one lab (its own name, state directory and `after-*` domains); the
flake is a copy of nix/, as in test_imageless_e2e.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.support.cli import reconcile
from tests.support.stack import SYSTEM_URI, ensure_libvirtd, remove_tree

pytestmark = pytest.mark.real

LAB = "after"
BASE = Path("/var/lib/reconcile-tests")  # not pytest's 0700 tmp: QEMU reads the initrd here
MANIFEST = """
[lab]
name = "{lab}"
flake = "{flake}"
state_dir = "{state}"
[hypervisors.local]
uri = "{uri}"
accel = "qemu"
[kernels.host]
image = "/vmlinuz"
initrd_modules = ["virtio_pci", "virtiofs"]
[kernels.bare]
image = "/vmlinuz"
[guests.db]
mode = "imageless"
system = "demo-a"
kernel = "{db_kernel}"
memory = "384MiB"
boot_timeout = "120s"
shutdown_timeout = "0s"
[guests.app]
mode = "imageless"
system = "demo-b"
kernel = "host"
memory = "384MiB"
boot_timeout = "120s"
shutdown_timeout = "15s"
after = ["db"]
[guests.web]
mode = "imageless"
system = "demo-c"
kernel = "host"
memory = "384MiB"
boot_timeout = "120s"
shutdown_timeout = "15s"
"""


def virsh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["virsh", "-c", SYSTEM_URI, *args], capture_output=True, text=True, check=check
    )


def domains() -> set[str]:
    out = virsh("list", "--all", "--name").stdout
    return {line.strip() for line in out.splitlines() if line.strip().startswith(f"{LAB}-")}


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

    def write(self, db_kernel: str) -> Path:
        self.manifest.write_text(
            MANIFEST.format(
                lab=LAB, flake=self.flake, state=self.state, uri=SYSTEM_URI, db_kernel=db_kernel
            )
        )
        return self.manifest

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return reconcile(*args)

    def apply(self) -> subprocess.CompletedProcess[str]:
        """An apply whose log (stderr) is JSON lines: each action's start and done."""
        return self.run("--log-format", "json", "apply", str(self.manifest), "--yes")

    def plan_json(self) -> dict[str, object]:
        proc = self.run("plan", str(self.manifest), "--json")
        assert proc.returncode == 0, proc.stderr
        doc: dict[str, object] = json.loads(proc.stdout)
        return doc

    def serial(self, guest: str) -> str:
        return (self.state / "guests" / guest / "serial.log").read_text(errors="replace")


def events(stderr: str) -> list[dict[str, str]]:
    """The log's events, in the order they were written."""
    found = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


def when(log: list[dict[str, str]], event: str, action: str) -> int:
    """Where in the log `action` had `event` (its index: lines are written in order)."""
    return next(
        i for i, e in enumerate(log) if e.get("event") == event and e.get("action") == action
    )


def statuses(out: str) -> dict[str, str]:
    """Each guest's status in the apply summary: its rows are indented by two spaces, the
    messages under them by six."""
    summary = out.split("\nApply results:\n", 1)[1]
    rows = [line.split() for line in summary.splitlines() if line[:3].strip() and line[:2] == "  "]
    return {row[0]: row[1] for row in rows}


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
    made = Lab(root)
    made.write(db_kernel="bare")
    yield made
    cleanup()
    remove_tree(root)  # unmounts the lab's read-only views first


def test_the_plan_orders_app_after_db_and_nothing_else(lab: Lab) -> None:
    doc = lab.plan_json()
    depends = {a["key"]: a["depends_on"] for a in doc["actions"]}  # type: ignore[attr-defined]
    assert "db/wait-ready" in depends["app/define"]
    assert not [d for d in depends["web/define"] if d.startswith(("db/", "app/"))]
    graph = lab.run("plan", str(lab.manifest), "--graph")
    assert graph.returncode == 0, graph.stderr
    assert graph.stdout.startswith("digraph plan {\n") and graph.stdout.endswith("}\n")
    assert '  "db/wait-ready" -> "app/define";\n' in graph.stdout
    assert '"db/wait-ready" -> "web/' not in graph.stdout


def test_a_failed_dependency_blocks_what_comes_after_it(lab: Lab) -> None:
    proc = lab.apply()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    # db's boot failed at once, on its console's line; app never ran; web is independent
    assert "failed to boot: reconcile-initrd: error: the kernel has no virtiofs" in out
    guests = {k: v for k, v in statuses(out).items() if k != "closures"}  # a build, if any
    assert guests == {"app": "BLOCKED", "db": "FAILED", "web": "ok"}, out
    assert "      define blocked: not run: db/wait-ready did not succeed" in out
    assert "Apply FAILED:" in out and "(exit 1)." in out
    assert domains() == {"after-db", "after-web"}  # app's domain was never defined
    assert "reconcile-ready: /nix/store/" in lab.serial("web")
    assert not (lab.state / "guests" / "app" / "serial.log").exists()
    log = events(proc.stderr)
    assert not [e for e in log if e.get("action", "").startswith("app/")]  # never started


def test_fixed_dependency_converges_and_app_comes_after_db_is_ready(lab: Lab) -> None:
    lab.write(db_kernel="host")
    doc = lab.plan_json()
    changes = {c["guest"]: c["change"] for c in doc["changes"]}  # type: ignore[attr-defined]
    assert changes == {"app": "create", "db": "restart", "web": "no-op"}
    proc = lab.apply()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Apply complete" in proc.stdout
    assert domains() == {"after-app", "after-db", "after-web"}
    log = events(proc.stderr)
    assert when(log, "done", "db/wait-ready") < when(log, "start", "app/define")
    for guest in ("db", "app"):
        assert "reconcile-ready: /nix/store/" in lab.serial(guest)
    plan = lab.run("plan", str(lab.manifest), "--detailed-exitcode")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "No changes." in plan.stdout
