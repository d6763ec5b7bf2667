"""A Nix remote builder: a test host (its own network namespace, /nix and sshd) builds the
lab's closure over pinned SSH, and the path comes back to the controller by copying.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.hosts import TestHost
from tests.conftest import ROOT
from tests.support.cli import reconcile

pytestmark = pytest.mark.real

BASE = Path("/var/lib/reconcile-tests")


def _imageless_only(directory: str, names: list[str]) -> list[str]:
    """The flake without the disk images' 110 MB of tools: these systems need none."""
    skip = [n for n in names if n.startswith("result")]
    return [*skip, "disk"] if Path(directory).name == "bb" and "disk" in names else skip


@pytest.fixture(scope="module")
def builder() -> Iterator[TestHost]:
    with TestHost() as host:
        yield host


def lab(tmp: Path, host: TestHost, *, host_key: str, local: bool) -> tuple[Path, str]:
    """A lab of one stopped imageless guest (defined, never booted) whose system no run
    built before, and the toplevel it resolves to."""
    flake = tmp / "flake"
    shutil.copytree(ROOT / "nix", flake, ignore=_imageless_only)
    message = f"built remotely {uuid.uuid4().hex[:8]}"
    systems = flake / "systems.nix"
    systems.write_text(
        re.sub(
            r"demo-a = \{[^}]*\};", f'demo-a = {{ message = "{message}"; }};', systems.read_text()
        )
    )
    manifest = tmp / "lab.toml"
    manifest.write_text(f"""
[lab]
name = "rb"
flake = "{flake}"
state_dir = "{tmp / "state"}"
build_locally = {"true" if local else "false"}
[hypervisors.local]
uri = "test:///default"
accel = "qemu"
[kernels.host]
image = "/vmlinuz"
[builders.b1]
target = "root@{host.address}"
host_key = "{host_key}"
identity = "{host.identity}"
[guests.g]
mode = "imageless"
system = "demo-a"
kernel = "host"
state = "stopped"
""")
    attr = f"path:{flake}#nixosConfigurations.demo-a.config.system.build.toplevel"
    top = subprocess.run(
        ["nix", "eval", "--raw", f"{attr}.outPath"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return manifest, top


def test_the_closure_is_built_on_the_builder_and_copied_back(
    builder: TestHost, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp = tmp_path_factory.mktemp("rb", numbered=True)
    manifest, top = lab(tmp, builder, host_key=builder.host_key_line, local=False)
    assert not Path(top).exists() and not builder.has_path(top)
    plan = reconcile("plan", str(manifest))
    assert f"Closures to build (1, on builder b1 (root@{builder.address})):" in plan.stdout, (
        plan.stdout + plan.stderr
    )
    proc = reconcile("apply", str(manifest), "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert Path(top).exists()  # copied back to the controller's store
    assert builder.has_path(top)  # built there: its store held nothing of it before
    built_there = builder.dir / "nix" / "var" / "log" / "nix" / "drvs"
    assert built_there.is_dir() and any(built_there.rglob("*nixos-system-demo-a*")), (
        "no build log on the builder"
    )
    # (Nix streams the builder's log to the controller's log directory too: the builder's own
    # log and its store, which held nothing of this closure before, are what show where.)


def test_a_builder_with_another_host_key_is_refused(
    builder: TestHost, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp = tmp_path_factory.mktemp("rb", numbered=True)
    wrong = tmp / "wrong"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    other = (wrong.with_suffix(".pub")).read_text().split()
    manifest, top = lab(tmp, builder, host_key=f"{other[0]} {other[1]}", local=False)
    proc = reconcile("apply", str(manifest), "--yes")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Host key verification failed" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert not Path(top).exists() and not builder.has_path(top)


def test_a_host_with_build_on_host_builds_its_system_itself(
    builder: TestHost, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp = tmp_path_factory.mktemp("boh", numbered=True)
    manifest, top = lab(tmp, builder, host_key=builder.host_key_line, local=True)
    text = manifest.read_text()
    text = (
        text[: text.index("[builders.b1]")]
        + f"""
[hosts.bm]
system = "demo-a"
build_on = "host"
ssh = {{ target = "root@{builder.address}", host_key = "{builder.host_key_line}", \
identity = "{builder.identity}" }}
"""
    )
    manifest.write_text(text.replace("build_locally = true\n", ""))
    assert not Path(top).exists() and not builder.has_path(top)
    plan = reconcile("plan", str(manifest))
    assert 'built on the host (build_on = "host")' in plan.stdout, plan.stdout + plan.stderr
    assert "Closures to build" not in plan.stdout  # nothing is built here
    proc = reconcile("apply", str(manifest), "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert builder.current_system() == top
    assert not Path(top).exists()  # evaluated here, built and kept there only
    logs = builder.dir / "nix" / "var" / "log" / "nix" / "drvs"
    assert any(logs.rglob(f"*{Path(top).name.split('-', 1)[1]}.drv*"))
    assert "copy skipped" in proc.stdout  # the copy found it there
    again = reconcile("plan", str(manifest), "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr
