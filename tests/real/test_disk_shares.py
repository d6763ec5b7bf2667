"""virtiofs shares in the demo flake's disk guests (nix/disk/shares.sh), booted for real.

Plain QEMU under TCG as tests/real/test_disk_image.py does, with QEMU's own virtiofs: one
`/usr/lib/qemu/virtiofsd` per share and `vhost-user-fs-pci` devices on shared memfd memory.
Three guests boot at once:
  - `seeded`: demo-disk with its `seed` share (systems.nix) served from the flake's
    `demo-seed` package, a config share: mounted read-only, seed.txt read over SSH;
  - `bare`: the same image without any share: `seed missing (nofail)`, and it gets ready;
  - `strict`: a copy of the flake whose demo-disk also has a writable share `rw` (given)
    and a required share `need` (not given): `rw` is mounted read-write and what the guest
    writes is on the host; the missing required share withholds the readiness line.

Only 127.0.0.1 is connected to (the forwarded ports). QEMU and virtiofsd are started here
and killed by their pids; everything else lives in a temporary directory.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.real.test_disk_image import (
    BOOT_TIMEOUT_S,
    IDENTITY,
    READY_PREFIX,
    Guest,
    console_lines,
    free_port,
)

pytestmark = pytest.mark.real

VIRTIOFSD = "/usr/lib/qemu/virtiofsd"
IMAGE = "nixosConfigurations.demo-disk.config.system.build.images.qemu"
TOPLEVEL = "nixosConfigurations.demo-disk.config.system.build.toplevel"
SEED = "packages.x86_64-linux.demo-seed"
SHARE_PREFIX = "reconcile-share: "
# The strict guest's demo-disk: systems.nix's `shares` with the share options.
STRICT = """shares = {
      seed = "/etc/reconcile-seed";
      rw = { mountPoint = "/mnt/rw"; readOnly = false; };
      need = { mountPoint = "/mnt/need"; required = true; };
    };"""


def build(flake: Path, *attrs: str) -> list[str]:
    """The attributes' outputs, built in one call, in the order given."""
    ref = f"path:{flake}"
    argv = ["nix", "build", "--no-link", "--json", *(f"{ref}#{a}" for a in attrs)]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr
    built = {entry["outputs"]["out"] for entry in json.loads(proc.stdout)}
    outs = []
    for attr in attrs:
        argv = ["nix", "eval", "--raw", f"{ref}#{attr}.outPath"]
        outs.append(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
    assert set(outs) == built
    return outs


@dataclass
class SharedGuest(Guest):
    daemons: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def wait_line(self, prefix: str, text: str) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while not any(text in line for line in self.lines(prefix)):
            assert self.qemu.poll() is None, f"QEMU exited: {self.log.read_text(errors='replace')}"
            assert time.monotonic() < deadline, "\n".join(console_lines(self.log)[-40:])
            time.sleep(0.2)

    def stop(self) -> None:
        for proc in [self.qemu, *self.daemons]:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def virtiofsd(dir: Path, tag: str, source: str) -> tuple[subprocess.Popen[bytes], Path]:
    socket = dir / f"{tag}.sock"
    argv = [VIRTIOFSD, f"--socket-path={socket}", "-o", f"source={source}", "-o", "cache=none"]
    with (dir / f"virtiofsd-{tag}.log").open("wb") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    deadline = time.monotonic() + 10
    while not socket.exists():  # QEMU's chardev connects at once: the socket must be there
        assert proc.poll() is None, (dir / f"virtiofsd-{tag}.log").read_text()
        assert time.monotonic() < deadline, "virtiofsd made no socket"
        time.sleep(0.05)
    return proc, socket


def start(image: str, dir: Path, shares: dict[str, str]) -> SharedGuest:
    """Boots IMAGE on an overlay in DIR with one virtiofs device per tag -> host dir."""
    dir.mkdir()
    overlay = dir / "disk.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", image, str(overlay)],
        check=True,
    )
    port = free_port()
    argv = [
        "qemu-system-x86_64", "-accel", "tcg", "-m", "512", "-display", "none",
        "-serial", f"file:{dir / 'serial.log'}", "-monitor", "none",
        "-drive", f"file={overlay},if=virtio,format=qcow2",
        "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device", "virtio-net-pci,netdev=n0,addr=0x9",
    ]  # fmt: skip
    daemons = []
    if shares:
        # vhost-user needs the guest's RAM shared with the daemons.
        argv += ["-object", "memory-backend-memfd,id=mem,size=512M,share=on"]
        argv += ["-numa", "node,memdev=mem"]
    for i, (tag, source) in enumerate(shares.items()):
        proc, socket = virtiofsd(dir, tag, source)
        daemons.append(proc)
        argv += ["-chardev", f"socket,id=fs{i},path={socket}"]
        argv += ["-device", f"vhost-user-fs-pci,chardev=fs{i},tag={tag}"]
    with (dir / "qemu.log").open("wb") as log:
        qemu = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    return SharedGuest(dir, port, qemu, daemons=daemons)


@dataclass
class Lab:
    toplevel: str
    seed: str
    rw: Path
    seeded: SharedGuest
    bare: SharedGuest
    strict: SharedGuest
    boot_s: dict[str, float]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    assert IDENTITY.exists(), "run `make setup`: it makes the demo SSH key"
    root = tmp_path_factory.mktemp("disk-shares")
    copy = root / "flake"
    shutil.copytree(ROOT / "nix", copy, ignore=shutil.ignore_patterns("result*"))
    systems = copy / "systems.nix"
    text = systems.read_text()
    before = 'shares = { seed = "/etc/reconcile-seed"; };'
    line = next(line for line in text.splitlines() if line.strip().startswith("demo-disk ="))
    assert before in line
    systems.write_text(text.replace(line, line.replace(before, STRICT)))

    top, image_dir, seed = build(ROOT / "nix", TOPLEVEL, IMAGE, SEED)
    (strict_dir,) = build(copy, IMAGE)
    (image,) = [str(p) for p in Path(image_dir).glob("*.qcow2")]
    (strict_image,) = [str(p) for p in Path(strict_dir).glob("*.qcow2")]
    rw = root / "rw"
    rw.mkdir()
    guests: list[SharedGuest] = []
    try:
        began = time.monotonic()
        seeded = start(image, root / "seeded", {"seed": seed})
        guests.append(seeded)
        bare = start(image, root / "bare", {})
        guests.append(bare)
        strict = start(strict_image, root / "strict", {"seed": seed, "rw": str(rw)})
        guests.append(strict)
        boot_s = {}
        for name, guest in (("seeded", seeded), ("bare", bare)):
            guest.wait_ready()
            boot_s[name] = round(time.monotonic() - began, 1)
        strict.wait_line(SHARE_PREFIX, "the guest does not get ready")
        boot_s["strict"] = round(time.monotonic() - began, 1)
        yield Lab(top, seed, rw, seeded, bare, strict, boot_s)
    finally:
        for guest in guests:
            guest.stop()


def test_a_config_share_is_mounted_read_only_and_read_over_ssh(lab: Lab) -> None:
    guest = lab.seeded
    assert guest.lines(SHARE_PREFIX) == ["seed mounted read-only at /etc/reconcile-seed"]
    assert guest.lines(READY_PREFIX) == [lab.toplevel]
    lines = console_lines(guest.log)
    share = next(i for i, line in enumerate(lines) if line.startswith(SHARE_PREFIX))
    assert share < next(i for i, line in enumerate(lines) if line.startswith(READY_PREFIX))
    seed_txt = Path(lab.seed, "seed.txt").read_text().strip()
    assert guest.run("cat", "/etc/reconcile-seed/seed.txt") == seed_txt
    proc = guest.ssh("touch", "/etc/reconcile-seed/written")
    assert proc.returncode != 0 and "Read-only file system" in proc.stderr
    mounts = guest.run("cat", "/proc/mounts").splitlines()
    assert any(m.startswith("seed /etc/reconcile-seed virtiofs ro,") for m in mounts), mounts
    print(f"boot to ready (or refusal) under TCG, three at once: {lab.boot_s} s")


def test_a_missing_nofail_share_is_skipped_and_the_guest_gets_ready(lab: Lab) -> None:
    guest = lab.bare
    assert guest.lines(SHARE_PREFIX) == ["seed missing (nofail)"]
    assert guest.lines(READY_PREFIX) == [lab.toplevel]
    assert guest.run("sh", "-c", "grep -c virtiofs /proc/mounts || true") == "0"


def test_a_writable_share_is_written_and_a_missing_required_one_withholds_readiness(
    lab: Lab,
) -> None:
    guest = lab.strict
    lines = guest.lines(SHARE_PREFIX)  # in mount point order
    assert len(lines) == 4, lines
    assert lines[0] == "seed mounted read-only at /etc/reconcile-seed"
    assert lines[1].startswith("error: need missing (required at /mnt/need): ")
    assert lines[2] == "rw mounted read-write at /mnt/rw"
    assert lines[3] == "error: required shares missing: need; the guest does not get ready"
    assert guest.lines(READY_PREFIX) == []  # the service never returns
    # sshd came first, so the guest can still be looked at.
    guest.run("sh", "-c", "echo from-the-guest > /mnt/rw/hello")
    assert (lab.rw / "hello").read_text() == "from-the-guest\n"
