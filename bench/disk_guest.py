"""Benchmark: a disk guest's image build, first boot and switch, each beside its floor.

- image build: `nix build` of the image of a system no earlier run built (its toplevel
  built first, apart), against the floor: the same closure copied into a directory, made
  into an ext4 image with `mke2fs -d` and converted to qcow2 by hand (no Nix, no GRUB).
- first boot: `reconcile apply` creating the guest (overlay, define, start, readiness),
  against the floor: plain `qemu-system-x86_64` on a throwaway overlay of the same image
  until the same readiness line (no libvirt, no reconcile).
- switch: `reconcile apply` of a new system (copy, profile, activation, health), against
  the floor: the same by hand with `nix copy` and one `ssh` (a third system, so that each
  copies one new closure).

Run: `.venv/bin/python bench/disk_guest.py` (as root, set-up done, about two minutes).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE = Path("/var/lib/reconcile-bench-disk")
KEY = Path("/var/lib/reconcile/demo-ssh/id_ed25519")
PORT, FLOOR_PORT = 22201, 22202
LAB = "benchdisk"
URI = "qemu:///system"


def run(*argv: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
        timeout=600,  # a build or a boot under TCG takes well under a minute here
    )
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def timed(*argv: str, env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    run(*argv, env=env)
    return time.perf_counter() - started


def reconcile(*args: str) -> float:
    return timed(sys.executable, "-m", "reconcile", *args)


def attr(flake: Path, system: str, what: str) -> str:
    return f"path:{flake}#nixosConfigurations.{system}.config.system.build.{what}"


def out_path(installable: str) -> str:
    return run("nix", "eval", "--raw", installable + ".outPath").strip()


def manifest(flake: Path, system: str) -> Path:
    path = STATE / "lab.toml"
    path.write_text(f"""
[lab]
name = "{LAB}"
flake = "{flake}"
state_dir = "{STATE / "state"}"
[hypervisors.local]
uri = "{URI}"
accel = "qemu"
[guests.g]
mode = "disk"
system = "{system}"
memory = "384MiB"
disk = {{ size = "1GiB" }}
network = {{ user = true, ssh_port = {PORT} }}
ssh = {{ identity = "{KEY}" }}
""")
    return path


def floor_image(toplevel: str, work: Path) -> float:
    """The closure into a directory, an ext4 image of it, converted to qcow2."""
    started = time.perf_counter()
    root = work / "root"
    (root / "nix" / "store").mkdir(parents=True)
    paths = run("nix", "path-info", "--recursive", toplevel).split()
    run("cp", "-a", *paths, str(root / "nix" / "store"))
    run("mke2fs", "-q", "-t", "ext4", "-d", str(root), str(work / "root.img"), "512M")
    run("qemu-img", "convert", "-O", "qcow2", str(work / "root.img"), str(work / "root.qcow2"))
    return time.perf_counter() - started


def floor_boot(image: Path, work: Path) -> float:
    """Plain QEMU on a throwaway overlay until the readiness line."""
    overlay, log = work / "floor.qcow2", work / "floor.log"
    run("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(image), str(overlay))
    started = time.perf_counter()
    qemu = subprocess.Popen(
        ["qemu-system-x86_64", "-accel", "tcg", "-m", "384", "-display", "none",
         "-serial", f"file:{log}", "-drive", f"file={overlay},if=virtio,format=qcow2",
         "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{FLOOR_PORT}-:22",
         "-device", "virtio-net-pci,netdev=n0,addr=0x9"],
    )  # fmt: skip
    try:
        while "reconcile-ready: " not in (log.read_text(errors="replace") if log.exists() else ""):
            if qemu.poll() is not None or time.perf_counter() - started > 300:
                sys.exit(f"the floor's QEMU did not get ready:\n{log.read_text()}")
            time.sleep(0.1)
        return time.perf_counter() - started
    finally:
        qemu.send_signal(signal.SIGKILL)
        qemu.wait()


def floor_switch(toplevel: str) -> float:
    """nix copy and one ssh running the activation, trusting the pinned key only."""
    key = (STATE / "state" / "guests" / "g" / "ssh_host_key.pub").read_text().strip()
    known = STATE / "known_hosts"
    known.write_text(f"[127.0.0.1]:{PORT} {key}\n")
    opts = [
        "-F", "/dev/null", "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", str(KEY), "-p", str(PORT),
    ]  # fmt: skip
    started = time.perf_counter()
    run("nix", "copy", "--no-check-sigs", "--to", "ssh-ng://root@127.0.0.1", toplevel,
        env={"NIX_SSHOPTS": " ".join(opts)})  # fmt: skip
    profile = "/nix/var/nix/profiles/system"
    command = (
        f"nix-env -p {profile} --set {toplevel} && {toplevel}/bin/switch-to-configuration switch"
    )
    run("ssh", *opts, "root@127.0.0.1", command)
    return time.perf_counter() - started


def cleanup() -> None:
    for name in run("virsh", "-c", URI, "list", "--all", "--name").split():
        if name.startswith(f"{LAB}-"):
            subprocess.run(["virsh", "-c", URI, "destroy", name], capture_output=True, check=False)
            subprocess.run(["virsh", "-c", URI, "undefine", name], capture_output=True, check=False)
    shutil.rmtree(STATE, ignore_errors=True)


def main() -> None:
    cleanup()
    STATE.mkdir(parents=True)
    flake = STATE / "flake"
    shutil.copytree(ROOT / "nix", flake, ignore=shutil.ignore_patterns("result*"))
    tag = uuid.uuid4().hex[:8]  # systems no earlier run built
    entries = "".join(
        f'  bench-disk{s} = {{ backend = "disk"; message = "bench {tag}{s}"; }};\n'
        for s in ("", "-b", "-c")
    )
    systems = flake / "systems.nix"
    systems.write_text(re.sub(r"\}\s*$", entries + "}\n", systems.read_text()))
    try:
        top = attr(flake, "bench-disk", "toplevel")
        run("nix", "build", "--no-link", top)
        image_s = timed("nix", "build", "--no-link", attr(flake, "bench-disk", "images.qemu"))
        with tempfile.TemporaryDirectory(dir=STATE) as work:
            floor_image_s = floor_image(out_path(top), Path(work))
        image = next(Path(out_path(attr(flake, "bench-disk", "images.qemu"))).glob("*.qcow2"))
        with tempfile.TemporaryDirectory(dir=STATE) as work:
            floor_boot_s = floor_boot(image, Path(work))
        boot_s = reconcile("apply", str(manifest(flake, "bench-disk")), "--yes")
        for system in ("bench-disk-b", "bench-disk-c"):
            run("nix", "build", "--no-link", attr(flake, system, "toplevel"))
        switch_s = reconcile("apply", str(manifest(flake, "bench-disk-b")), "--yes")
        floor_switch_s = floor_switch(out_path(attr(flake, "bench-disk-c", "toplevel")))
    finally:
        cleanup()
    print(f"{'work':<40} {'reconcile':>10} {'floor':>8} {'ratio':>6}")
    for name, ours, floor in (
        ("image build (nix build images.qemu)", image_s, floor_image_s),
        ("first boot (apply: create to ready)", boot_s, floor_boot_s),
        ("switch (apply: copy..health)", switch_s, floor_switch_s),
    ):
        print(f"{name:<40} {ours:>9.2f}s {floor:>7.2f}s {ours / floor:>5.2f}x")


if __name__ == "__main__":
    main()
