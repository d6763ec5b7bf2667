"""A kernel compiled on a builder: a test host (its own network namespace and sshd, and a
~/.cache of its own, where a builder keeps its copy of a build) runs make over pinned SSH,
and the image comes back into the lab's build directory here, complete, so that the next
plan has nothing to build.

The tree and its small config are the kernel test's (tests/real/test_kernel_build.py).
The lab's state directory is new each run, and so is the host's ~/.cache: the compile
there is real every run (about 4 minutes on 2 cores, nearly all of it make).
"""

from __future__ import annotations

import json
import pwd
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconcile.adapters.kernel_builder import IMAGE
from testbed.hosts import TestHost
from tests.conftest import ROOT
from tests.real.test_kernel_build import FRAGMENT, linux_tree
from tests.support.cli import reconcile

pytestmark = pytest.mark.real

# The host's user is root: its home is this machine's, but its ~/.cache is the host's own.
CACHE = Path(pwd.getpwnam("root").pw_dir) / ".cache"


@pytest.fixture(scope="module")
def builder() -> Iterator[TestHost]:
    CACHE.mkdir(exist_ok=True)
    with TestHost(private_dirs=[CACHE]) as host:
        yield host


def lab(tmp: Path, host: TestHost, tree: Path) -> Path:
    """One stopped imageless guest (defined, never booted: defining it needs the kernel)
    on the plain-QEMU driver, whose records outlive the run, so a second plan converges."""
    manifest = tmp / "lab.toml"
    manifest.write_text(f"""
[lab]
name = "kb"
flake = "{ROOT / "nix"}"
state_dir = "{tmp / "state"}"
[hypervisors.local]
driver = "qemu"
accel = "qemu"
[builders.b1]
target = "root@{host.address}"
host_key = "{host.host_key_line}"
identity = "{host.identity}"
[kernels.tiny]
source = "{tree}"
config = "tinyconfig"
fragments = ["{FRAGMENT}"]
builder = "b1"
[guests.g]
mode = "imageless"
system = "demo-c"
kernel = "tiny"
memory = "256MiB"
state = "stopped"
""")
    return manifest


def test_make_runs_on_the_builder_and_the_kernel_comes_back(
    builder: TestHost, tmp_path: Path
) -> None:
    manifest = lab(tmp_path, builder, linux_tree())
    kernels = tmp_path / "state" / "kernels"
    plan = reconcile("plan", str(manifest))
    assert plan.returncode == 0, plan.stdout + plan.stderr
    [build] = [d for d in kernels.iterdir() if d.is_dir()]  # resolved here, in the plan
    assert (
        f"Kernels to build (1):\n  * tiny in {build}, on builder b1 (root@{builder.address})\n"
        in plan.stdout
    ), plan.stdout

    proc = reconcile("apply", str(manifest), "--yes", timeout=1800)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    # Here: complete, as a local build is, with what guests boot; but make built nothing.
    assert (build / "complete").read_text() == build.name.removeprefix("tiny-")
    release = (build / "release").read_text().strip()
    assert release.endswith("+")  # setlocalversion's mark of this git tree, given to make there
    image = (build / "bzImage").read_bytes()
    assert f"{release} (".encode() in image  # the image says the release guests planned with
    assert (build / "modules" / "lib" / "modules" / release).is_dir()
    assert not (build / "build" / "vmlinux").exists()
    # There: the host's own ~/.cache, which no process of this machine's mount namespace
    # sees at that path, holds the compile's objects and the same image.
    there = builder.dir / "private" / "0" / "reconcile-kernels" / build.name
    assert (there / "build" / "vmlinux").is_file()
    assert (there / IMAGE).read_bytes() == image
    assert not (CACHE / "reconcile-kernels" / build.name).exists()
    log = (build / "build.log").read_text()
    assert f"# on builder b1 (root@{builder.address}) in {CACHE}/reconcile-kernels/" in log
    assert "  LD      vmlinux" in log  # make's output came back as it ran
    # and was counted: kept for the next build's percentage (make knows no total)
    assert json.loads((build / "objects.json").read_text())["bzImage"] > 100  # tinyconfig

    again = reconcile("plan", str(manifest), "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Kernels to build" not in again.stdout
    assert "No changes." in again.stdout
