"""The imageless backend module, tested by booting: the offline demo's systems are
nixosModules.imageless evaluated on the demo platform (nix/platform/), so the module's
mounts are what the guest's initrd mounts. A demo guest boots (scripts/boot-smoke.sh:
QEMU under TCG, the host's kernel, /nix/store over virtiofs tag `store`), and the same
flake with the module's store tag misspelt does not.

QEMU and virtiofsd are started by the script itself (no libvirt, nothing under
/var/lib/reconcile-tests), in a temporary directory it removes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.real  # /vmlinuz comes with scripts/setup.sh (linux-image-amd64)


def boot(flake: Path, poweroff_check: bool) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, FLAKE_DIR=str(flake), SYSTEM="demo-a", BOOT_TIMEOUT="90")
    env["POWEROFF_CHECK"] = "1" if poweroff_check else "0"
    return subprocess.run(
        [str(ROOT / "scripts" / "boot-smoke.sh")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=300,
    )


def flake_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "flake"
    shutil.copytree(ROOT / "nix", copy, ignore=shutil.ignore_patterns("result*", "bb"))
    (copy / "bb").mkdir()
    shutil.copy2("/bin/busybox", copy / "bb" / "busybox")
    return copy


def test_the_demo_guest_boots_with_the_imageless_modules_mounts(tmp_path: Path) -> None:
    proc = boot(flake_copy(tmp_path), poweroff_check=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK: demo-a booted" in proc.stderr


def test_a_wrong_store_tag_in_the_imageless_module_keeps_the_guest_from_booting(
    tmp_path: Path,
) -> None:
    flake = flake_copy(tmp_path)
    module = flake / "modules" / "imageless.nix"
    text = module.read_text()
    assert text.count('device = "store";') == 1
    module.write_text(text.replace('device = "store";', 'device = "stor";'))
    proc = boot(flake, poweroff_check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert (
        "reconcile-initrd: error: cannot mount virtiofs tag 'stor' read-only at /nix/store" in out
    )
    assert "reconcile-ready:" not in out
