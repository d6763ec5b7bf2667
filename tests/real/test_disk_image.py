"""The demo flake's bootable disk image (nix/disk-image.nix), booted for real.

Two guests boot from one image of `demo-disk` (plain QEMU under TCG, each on its own qcow2
overlay, SSH forwarded by QEMU's user networking to a loopback port): each prints its own
SSH host key, made at its first boot, then the readiness line. Over OpenSSH, pinning exactly
that key, `demo-disk-b` is copied with `nix copy` and activated the way reconcile's deploy
does it (detached, its exit code in a file), which also points GRUB at it: after a reboot
the guest runs demo-disk-b with the same host key.

Only 127.0.0.1 is connected to (the forwarded ports). QEMU is started here and killed by
its pid; everything else lives in a temporary directory.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconcile.adapters.deploy import AWAIT, DETACH, RUNNER
from reconcile.core.hosts.baremetal import STATE_DIR, SYSTEM_PROFILE
from tests.conftest import ROOT

pytestmark = pytest.mark.real

FLAKE = f"path:{ROOT / 'nix'}"
SYSTEM = "nixosConfigurations.{}.config.system.build.{}"
IDENTITY = Path("/var/lib/reconcile/demo-ssh/id_ed25519")  # scripts/setup.sh
BOOT_TIMEOUT_S = 240
HOST_KEY_PREFIX = "reconcile-ssh-host-key: "
READY_PREFIX = "reconcile-ready: "


def build(*attrs: str) -> list[str]:
    """Builds the attributes in one call; their outputs, in the order given (the --json
    answer's order is not the installables')."""
    argv = ["nix", "build", "--no-link", "--json", *(f"{FLAKE}#{a}" for a in attrs)]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr
    built = {entry["outputs"]["out"] for entry in json.loads(proc.stdout)}
    outs = []
    for attr in attrs:
        argv = ["nix", "eval", "--raw", f"{FLAKE}#{attr}.outPath"]
        outs.append(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
    assert set(outs) == built
    return outs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def console_lines(log: Path) -> list[str]:
    if not log.exists():
        return []
    return log.read_bytes().decode(errors="replace").replace("\r", "").splitlines()


@dataclass
class Guest:
    dir: Path
    port: int
    qemu: subprocess.Popen[bytes]
    boot_s: float = 0.0

    @property
    def log(self) -> Path:
        return self.dir / "serial.log"

    def lines(self, prefix: str) -> list[str]:
        return [line[len(prefix) :] for line in console_lines(self.log) if line.startswith(prefix)]

    def wait_ready(self, count: int = 1) -> str:
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while len(self.lines(READY_PREFIX)) < count:
            assert self.qemu.poll() is None, f"QEMU exited: {self.log.read_text(errors='replace')}"
            assert time.monotonic() < deadline, "\n".join(console_lines(self.log)[-40:])
            time.sleep(0.2)
        return self.lines(READY_PREFIX)[-1]

    @property
    def host_key(self) -> str:
        return self.lines(HOST_KEY_PREFIX)[-1]

    def known_hosts(self, key: str) -> Path:
        path = self.dir / "known_hosts"
        path.write_text(f"[127.0.0.1]:{self.port} {key}\n")
        return path

    def ssh_options(self, key: str | None = None) -> list[str]:
        return [
            "-F", "/dev/null",
            "-o", "BatchMode=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts(key or self.host_key)}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", "ConnectTimeout=10",
            "-i", str(IDENTITY),
            "-p", str(self.port),
        ]  # fmt: skip

    def ssh(self, *argv: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
        # OpenSSH hands the remote shell one string: quote each word.
        command = ["ssh", *self.ssh_options(key), "root@127.0.0.1", shlex.join(argv)]
        return subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)

    def run(self, *argv: str) -> str:
        proc = self.ssh(*argv)
        assert proc.returncode == 0, (argv, proc.stdout, proc.stderr)
        return proc.stdout.strip()


def start(image: str, dir: Path) -> Guest:
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
    qemu = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return Guest(dir, port, qemu)


@dataclass
class Lab:
    image: str
    toplevel: str  # demo-disk, on the image
    toplevel_b: str  # demo-disk-b, copied and switched to
    guests: list[Guest]
    build_s: float


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    assert IDENTITY.exists(), "run `make setup`: it makes the demo SSH key"
    began = time.monotonic()
    top, image_dir, top_b = build(
        SYSTEM.format("demo-disk", "toplevel"),
        SYSTEM.format("demo-disk", "images.qemu"),
        SYSTEM.format("demo-disk-b", "toplevel"),
    )
    build_s = time.monotonic() - began
    (image,) = [str(p) for p in Path(image_dir).glob("*.qcow2")]
    root = tmp_path_factory.mktemp("disk-image")
    guests: list[Guest] = []
    try:
        began = time.monotonic()
        guests = [start(image, root / name) for name in ("one", "two")]
        for guest in guests:
            guest.wait_ready()
            guest.boot_s = time.monotonic() - began
        yield Lab(image, top, top_b, guests, build_s)
    finally:
        for guest in guests:
            if guest.qemu.poll() is None:
                os.kill(guest.qemu.pid, signal.SIGKILL)
            guest.qemu.wait(timeout=30)


def test_the_image_is_one_qcow2_and_the_raw_variant_one_img() -> None:
    (qemu, raw) = build(
        SYSTEM.format("demo-disk", "images.qemu"), SYSTEM.format("demo-disk", "images.raw")
    )
    assert [p.suffix for p in Path(qemu).iterdir()] == [".qcow2"]
    assert [p.suffix for p in Path(raw).iterdir()] == [".img"]
    info = subprocess.run(
        ["qemu-img", "info", "--output=json", next(Path(raw).iterdir()).as_posix()],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(info.stdout)["virtual-size"] == 512 * 1024 * 1024  # reconcile.disk.size


def test_each_guest_boots_the_image_and_presents_its_own_host_key(lab: Lab) -> None:
    one, two = lab.guests
    for guest in lab.guests:
        assert guest.lines(READY_PREFIX) == [lab.toplevel]
        kind, data = guest.host_key.split()
        assert kind == "ssh-ed25519" and data
        # the key line comes before the readiness line
        lines = console_lines(guest.log)
        first = next(i for i, line in enumerate(lines) if line.startswith(HOST_KEY_PREFIX))
        assert first < next(i for i, line in enumerate(lines) if line.startswith(READY_PREFIX))
        assert guest.run("readlink", "/run/current-system") == lab.toplevel
        assert guest.run("readlink", "-f", SYSTEM_PROFILE) == lab.toplevel
        assert guest.ssh("nix-store", "--check-validity", "--", lab.toplevel).returncode == 0
    assert one.host_key != two.host_key  # made at first boot, not in the image
    boots = [round(g.boot_s, 1) for g in lab.guests]
    print(f"image build {lab.build_s:.1f} s; boot to ready {boots} s")


def test_a_host_key_other_than_the_pinned_one_is_refused(lab: Lab) -> None:
    one, two = lab.guests
    proc = one.ssh("true", key=two.host_key)
    assert proc.returncode == 255
    assert "Host key verification failed" in proc.stderr


def test_a_copied_system_is_switched_to_and_booted_next_with_the_same_host_key(lab: Lab) -> None:
    guest = lab.guests[0]
    key = guest.host_key
    env = dict(os.environ, NIX_SSHOPTS=" ".join(guest.ssh_options()))
    began = time.monotonic()
    copy = subprocess.run(
        ["nix", "copy", "--no-check-sigs", "--to", "ssh-ng://root@127.0.0.1", lab.toplevel_b],
        capture_output=True, text=True, env=env, check=False, timeout=300,
    )  # fmt: skip
    copy_s = time.monotonic() - began
    assert copy.returncode == 0, copy.stderr
    assert guest.ssh("nix-store", "--check-validity", "--", lab.toplevel_b).returncode == 0
    guest.run("nix-env", "-p", SYSTEM_PROFILE, "--set", lab.toplevel_b)

    # Activation as reconcile's deploy starts it on a host without systemd.
    began = time.monotonic()
    guest.run("sh", "-c", DETACH, RUNNER, STATE_DIR, "switch", lab.toplevel_b, "activate-t1")
    code = guest.run("sh", "-c", AWAIT, "sh", f"{STATE_DIR}/activate-t1.status")
    switch_s = time.monotonic() - began
    assert code == "0", guest.run("cat", f"{STATE_DIR}/activate-t1.log")
    assert guest.run("readlink", "/run/current-system") == lab.toplevel_b
    grub = guest.run("cat", "/boot/grub/grub.cfg")
    assert f"init={lab.toplevel_b}/init" in grub

    # `test` activates without touching the boot loader.
    guest.run(f"{lab.toplevel}/bin/switch-to-configuration", "test")
    assert guest.run("readlink", "/run/current-system") == lab.toplevel
    assert guest.run("cat", "/boot/grub/grub.cfg") == grub
    print(f"nix copy {copy_s:.1f} s; detached switch {switch_s:.1f} s")

    # A reboot (the guest's own) boots what the switch installed, with the same host key.
    guest.ssh("sh", "-c", "sync; (sleep 1; reboot -f) </dev/null >/dev/null 2>&1 &")
    began = time.monotonic()
    assert guest.wait_ready(count=2) == lab.toplevel_b
    print(f"reboot to ready {time.monotonic() - began:.1f} s")
    assert guest.host_key == key
    assert guest.run("readlink", "/run/booted-system") == lab.toplevel_b
    assert guest.run("readlink", "-f", SYSTEM_PROFILE) == lab.toplevel_b
