"""Bringing up the real stack for `real` tests; no systemd here, so daemons start by hand."""

from __future__ import annotations

import shutil
import subprocess
import time

SYSTEM_URI = "qemu:///system"


def _answers(uri: str) -> bool:
    virsh = shutil.which("virsh")
    if virsh is None:
        raise RuntimeError("virsh not found: run scripts/setup.sh (libvirt-clients)")
    proc = subprocess.run(
        [virsh, "-c", uri, "list", "--all"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return proc.returncode == 0


def _running(program: str) -> bool:
    found = subprocess.run(["pgrep", "-x", program], capture_output=True, check=False)
    return found.returncode == 0


def ensure_libvirtd(uri: str = SYSTEM_URI, timeout_s: float = 15.0) -> None:
    """Make `virsh -c uri list` answer, starting virtlogd and libvirtd (`-d`) when needed.

    virtlogd first: QEMU domains cannot start without it. Raises RuntimeError when the
    daemon does not answer within `timeout_s`: a real test must fail, not skip.
    """
    if _answers(uri):
        return
    for daemon in ("virtlogd", "libvirtd"):
        if not _running(daemon):
            subprocess.run([daemon, "-d"], check=True, capture_output=True, timeout=30)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _answers(uri):
            return
        time.sleep(0.2)
    raise RuntimeError(f"libvirtd does not answer on {uri} after {timeout_s:g}s")
