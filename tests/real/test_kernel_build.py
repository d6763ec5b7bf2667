"""A kernel built by reconcile in the plan, booted as an imageless guest under TCG.

The source is Debian's linux-source tarball, extracted once into a git tree, and the lab's
state directory is kept under /var/cache across runs: its builds are keyed by what
determines them (commit, config inputs, toolchain), so a second run builds nothing, which
is the behaviour under test, not a shortcut.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.support.stack import SYSTEM_URI, ensure_libvirtd, mounts_below, remove_tree

pytestmark = pytest.mark.real

CACHE = Path("/var/cache/reconcile-tests")
TREE = CACHE / "linux-source-6.1"
STATE = CACHE / "kstate"
WORK = Path("/var/lib/reconcile-tests/kernel")
FRAGMENT = ROOT / "manifests" / "kernel" / "tiny-imageless.config"


def linux_tree() -> Path:
    """Debian's kernel source as a git tree (built once, kept: extracting it takes ~10 s,
    committing it ~20 s)."""
    if (TREE / ".git").is_dir() and subprocess.run(
        ["git", "-C", str(TREE), "rev-parse", "--verify", "HEAD"], capture_output=True, check=False
    ).returncode == 0:
        return TREE
    tarball = next(Path("/usr/src").glob("linux-source-*.tar.xz"))
    CACHE.mkdir(parents=True, exist_ok=True)
    remove_tree(TREE)
    subprocess.run(["tar", "-xf", str(tarball), "-C", str(CACHE)], check=True)
    extracted = CACHE / tarball.name.removesuffix(".tar.xz")
    if extracted != TREE:
        extracted.rename(TREE)
    git = ["git", "-C", str(TREE), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-f", "-A", "."], check=True)  # Debian's .gitignore is `/*`
    subprocess.run([*git, "commit", "-qm", tarball.name], check=True)
    return TREE


def manifest(extra: str = "") -> Path:
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / "lab.toml"
    path.write_text(f"""
[lab]
name = "kt"
flake = "{ROOT / "nix"}"
state_dir = "{STATE}"
[hypervisors.local]
uri = "{SYSTEM_URI}"
accel = "qemu"
[kernels.tiny]
source = "{TREE}"
config = "tinyconfig"
fragments = ["{FRAGMENT}"]
{extra}
[guests.k1]
mode = "imageless"
system = "demo-c"
kernel = "tiny"
memory = "256MiB"
boot_timeout = "120s"
shutdown_timeout = "10s"
""")
    return path


def reconcile(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconcile", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=1500,
        env=dict(os.environ),
    )


def virsh(*args: str) -> None:
    subprocess.run(["virsh", "-c", SYSTEM_URI, *args], capture_output=True, check=False)


@pytest.fixture(scope="module")
def tree() -> Iterator[Path]:
    ensure_libvirtd()
    yield linux_tree()
    virsh("destroy", "kt-k1")
    virsh("undefine", "kt-k1")
    for point in sorted(mounts_below(STATE), key=len, reverse=True):
        subprocess.run(["umount", point], check=False)  # the lab's view of /nix/store
    remove_tree(WORK)


def test_kernel_is_built_in_the_plan_and_boots(tree: Path) -> None:
    path = manifest()
    plan = reconcile("plan", str(path), "--json")
    assert plan.returncode == 0, plan.stderr
    proc = reconcile("apply", str(path), "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    serial = (STATE / "guests" / "k1" / "serial.log").read_text(errors="replace")
    assert "reconcile-ready: /nix/store/" in serial
    assert "reconcile-initrd: error" not in serial
    dumpxml = subprocess.run(
        ["virsh", "-c", SYSTEM_URI, "dumpxml", "kt-k1"], capture_output=True, text=True, check=True
    ).stdout
    assert f"<kernel>{STATE}/kernels/tiny-" in dumpxml
    again = reconcile("plan", str(path), "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Kernels to build" not in again.stdout
    assert "No changes." in again.stdout


def test_missing_imageless_option_fails_the_plan(tree: Path) -> None:
    path = manifest('set = { VIRTIO_FS = "n" }')
    proc = reconcile("plan", str(path))
    assert proc.returncode == 1
    assert (
        "error: kernel 'tiny' lacks what imageless guests need built in: VIRTIO_FS (not set); "
        "guests that boot it: k1" in proc.stderr
    )
    assert "CONFIG_VIRTIO_FS=y" in proc.stderr
    assert "Traceback" not in proc.stderr
    manifest()


def test_kernel_change_restarts_exactly_its_guests(tree: Path) -> None:
    # a change that keeps the kernel (same inputs) plans nothing; a different `set` is a
    # different build key, hence a new image for k1: restart, and the build in the plan
    path = manifest('set = { PRINTK_TIME = "y" }')
    doc = reconcile("plan", str(path), "--json")
    assert doc.returncode == 0, doc.stderr
    plan = json.loads(doc.stdout)
    assert [k["kernel"] for k in plan["kernels_to_build"]] == ["tiny"]
    assert {c["guest"]: c["change"] for c in plan["changes"]} == {"k1": "restart"}
    assert [r["field"] for r in plan["changes"][0]["reasons"]] == ["kernel", "shares"]
    # the resolved configs say what the change is
    assert {"option": "PRINTK_TIME", "before": "n", "after": "y"} in plan["changes"][0][
        "kernel_config"
    ]
    text = reconcile("plan", str(path)).stdout
    assert "kernel config: " in text and "CONFIG_PRINTK_TIME: n -> y" in text, text
    manifest()


def test_plans_and_drift_at_once_resolve_one_config_once(tree: Path) -> None:
    # A drift timer, a person's plan and an apply may resolve the same new kernel at once:
    # one run resolves it (make in its O= directory), the others wait and reuse the result.
    token = uuid.uuid4().hex[:8]
    path = manifest(f'set = {{ LOCALVERSION = "-c{token}" }}')
    runs = [["plan", str(path), "--json"] for _ in range(3)] + [["drift", str(path)]]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "reconcile", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in runs
    ]
    outputs = [proc.communicate(timeout=900) for proc in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode in (0, 2), out + err  # plan: 0; drift: 2 (k1 boots another)
        assert "Traceback" not in err
    wanted = f'CONFIG_LOCALVERSION="-c{token}"'
    fresh = [d for d in (STATE / "kernels").iterdir() if d.is_dir() and wanted in _config(d)]
    assert len(fresh) == 1
    build = fresh[0]
    assert (build / "config.done").read_text() == build.name.removeprefix("tiny-")
    assert f"-c{token}" in (build / "release").read_text()  # what the modules dir is named
    log = (build / "build.log").read_text()
    assert log.count("olddefconfig\n") == 1, "the config was resolved more than once"
    assert not list(build.glob("**/.*.tmp"))  # no half-written file left behind
    manifest()


def _config(build: Path) -> str:
    try:
        return (build / "build" / ".config").read_text()
    except OSError:
        return ""


def test_prune_removes_only_kernel_builds_nothing_uses(tree: Path) -> None:
    path = manifest()
    builds = sorted(d.name for d in (STATE / "kernels").iterdir())
    plan = json.loads(reconcile("plan", str(path), "--json", "--prune").stdout)
    stale = [Path(d).name for d in plan["kernels_to_remove"]]
    current = next(
        d for d in builds if (STATE / "kernels" / d / "complete").exists() and d not in stale
    )
    assert len(stale) >= 2  # the configs resolved by the two tests above
    assert not reconcile("plan", str(path), "--json").stdout.count("remove-kernel")  # only --prune
    proc = reconcile("apply", str(path), "--yes", "--prune")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    left = {d.name for d in (STATE / "kernels").iterdir()}
    assert left - {f".{current}.lock"} == {current}  # removed builds take their locks along
    assert (TREE / "Makefile").exists()  # the source behind `src` links is untouched
    again = reconcile("plan", str(path), "--detailed-exitcode", "--prune")
    assert again.returncode == 0, again.stdout
