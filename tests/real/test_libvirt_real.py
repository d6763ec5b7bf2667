"""An imageless domain really boots on qemu:///system (TCG), and reconcile stops and removes it.

The guest is the Debian kernel plus a busybox initrd made here for this test only: it loads
the virtio/virtiofs modules (the Debian kernel has them as modules), mounts the `store`
share read-only and a writable `scratch` share, reports on ttyS0, then powers off when the
ACPI power button is pressed. Facts found on this machine (libvirt 9.0, QEMU 7.2):
- virtiofs with memfd shared memory works under TCG (`type='qemu'`, machine q35) without
  NUMA; libvirt starts /usr/lib/qemu/virtiofsd as root, QEMU runs as libvirt-qemu.
- The serial log is created by virtlogd (root, 0600) and truncated at each start; its
  directory must exist.
- Without `<seclabel type='none' model='dac'/>` libvirt chowns the kernel and initrd to
  libvirt-qemu while the domain runs: it would do that to store paths. With it, QEMU (as
  libvirt-qemu) must be able to read them itself: pytest's 0700 tmp_path is not enough.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import libvirt
import pytest

from reconcile.adapters.libvirt import HostKeyError, HypervisorError, LibvirtHypervisor, Pin
from reconcile.core.desired import Accel, GuestMode, Share
from reconcile.core.guests.domain_xml import DomainFacts
from reconcile.core.guests.observed import DomainState
from tests.support.domains import build_domain_spec
from tests.support.stack import SYSTEM_URI, ensure_libvirtd

pytestmark = pytest.mark.real

KERNEL = Path("/vmlinuz")
MODULES = (
    *("virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci"),
    *("fuse", "virtiofs"),
    *("button", "evdev"),  # the ACPI power button, readable from /dev/input
)
READY = "RECONCILE-READY"
BOOT_TIMEOUT_S = 120.0

INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /store /scratch
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in {modules}; do insmod /lib/modules/$m.ko || echo "insmod $m failed"; done
mount -t virtiofs -o ro store /store || echo "mount store failed"
mount -t virtiofs scratch /scratch || echo "mount scratch failed"
touch /store/.reconcile-write-test 2>/dev/null && echo STORE-WRITABLE || echo STORE-READONLY
echo "written by the guest" > /scratch/hello && echo SCRATCH-WRITTEN
for e in /sys/class/input/event*; do
  grep -q "Power Button" $e/device/name && button=/dev/input/${{e##*/}}
done
echo "{ready} store-entries=$(ls /store | wc -l)"
head -c 1 $button > /dev/null
echo RECONCILE-POWER-BUTTON
poweroff -f
"""


def kernel_release() -> str:
    return KERNEL.resolve().name.removeprefix("vmlinuz-")


def make_initrd(directory: Path) -> Path:
    """A gzip'd newc cpio with a static busybox, the modules, and INIT."""
    root = directory / "initrd-root"
    (root / "bin").mkdir(parents=True)
    (root / "lib" / "modules").mkdir(parents=True)
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    for module in MODULES:
        found = subprocess.run(
            ["modinfo", "-k", kernel_release(), "-F", "filename", module],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        shutil.copy(found, root / "lib" / "modules" / f"{module}.ko")
    init = root / "init"
    init.write_text(INIT.format(modules=" ".join(MODULES), ready=READY))
    init.chmod(0o755)
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    cpio = subprocess.run(
        ["cpio", "-o", "-H", "newc", "--quiet"],
        cwd=root,
        input="\n".join(files).encode(),
        capture_output=True,
        check=True,
    ).stdout
    initrd = directory / "initrd.gz"
    gzip = subprocess.run(["gzip", "-1"], input=cpio, capture_output=True, check=True)
    initrd.write_bytes(gzip.stdout)
    return initrd


def wait_for(path: Path, text: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    content = ""
    while time.monotonic() < deadline:
        # virtlogd writes the file as root, 0600: reading needs root, as reconcile runs.
        content = path.read_text(errors="replace") if path.exists() else ""
        if text in content:
            return content
        time.sleep(0.2)
    tail = "\n".join(content.splitlines()[-30:])
    raise AssertionError(f"{text!r} not on the console after {timeout_s:g}s:\n{tail}")


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory QEMU's user can read: the kernel and initrd are opened by QEMU itself."""
    with tempfile.TemporaryDirectory(prefix="reconcile-real-") as name:
        os.chmod(name, 0o755)
        yield Path(name)


@pytest.fixture(scope="module")
def lab() -> Iterator[str]:
    """A unique lab; its domains are destroyed and undefined afterwards, even on failure."""
    ensure_libvirtd()
    name = f"rtest{uuid.uuid4().hex[:6]}"
    yield name
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn: Any = libvirt.open(SYSTEM_URI)
    try:
        for dom in conn.listAllDomains(0):
            marked = "urn:reconcile:domain:1" in dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
            if dom.name().startswith(f"{name}-") and marked:
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
    finally:
        conn.close()


def test_imageless_domain_boots_and_is_stopped_gracefully(
    lab: str, tmp_path: Path, public_dir: Path
) -> None:
    assert os.geteuid() == 0, "the real stack runs as root"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    spec = build_domain_spec(
        lab=lab,
        guest="boot",
        mode=GuestMode.IMAGELESS,
        toplevel="/nix/store/0000000000000000000000000000000a-none",
        accel=Accel.QEMU,  # KVM guests hang on this machine (no nested virtualisation)
        memory_mib=256,
        vcpus=1,
        kernel=KERNEL,
        initrd=make_initrd(public_dir),
        cmdline="console=ttyS0,115200 panic=-1",
        modules=Path("/lib/modules") / kernel_release(),
        shares=(Share("scratch", scratch, writable=True),),
        network=None,
        mac=None,
        serial_log=tmp_path / "guests" / "boot" / "serial.log",
    )
    with LibvirtHypervisor(SYSTEM_URI) as hv:
        started = time.monotonic()
        hv.define(spec)
        defined = time.monotonic()
        hv.start(spec.name)
        console = wait_for(spec.serial_log, READY, BOOT_TIMEOUT_S)
        ready = time.monotonic()
        print(
            f"define {defined - started:.3f}s, start to ready {ready - defined:.1f}s "
            f"(TCG, {KERNEL.resolve().name})"
        )
        assert "STORE-READONLY" in console
        assert "SCRATCH-WRITTEN" in console
        assert (scratch / "hello").read_text() == "written by the guest\n"
        assert not Path("/nix/store/.reconcile-write-test").exists()
        assert oct(spec.serial_log.stat().st_mode & 0o777) == "0o600"

        observed = hv.observe()
        assert observed.error is None and observed.domains is not None
        running = observed.domains[spec.name]
        assert running.state is DomainState.RUNNING
        assert running.config == DomainFacts.from_spec(spec)
        assert running.live == DomainFacts.from_spec(spec)
        # No DAC relabelling: the initrd keeps its owner while QEMU runs.
        assert spec.initrd.stat().st_uid == 0

        # A redefinition of a running domain changes only the persistent definition.
        hv.define(replace(spec, definition=replace(spec.definition, memory_mib=384)))
        pending = hv.probe(spec.name)
        assert pending is not None and pending.uuid == spec.uuid
        assert pending.config.memory_mib == 384
        assert pending.live is not None and pending.live.memory_mib == 256

        stopping = time.monotonic()
        assert hv.shutdown(spec.name, timeout_s=60) is True
        print(f"graceful shutdown {time.monotonic() - stopping:.1f}s")
        assert "RECONCILE-POWER-BUTTON" in spec.serial_log.read_text()
        stopped = hv.probe(spec.name)
        assert stopped is not None and stopped.state is DomainState.SHUTOFF

        hv.undefine(spec.name)
        assert hv.probe(spec.name) is None


# --- a qemu+ssh hypervisor, pinned: libvirt's libssh2 transport against a real sshd ---------


@pytest.fixture(scope="module")
def ssh_host() -> Iterator[Any]:
    """A network-namespace host with a real sshd and a pinned key (testbed/hosts.py);
    it runs no libvirtd, so a connection that gets past SSH fails after it."""
    from testbed.hosts import TestHost  # noqa: PLC0415 (only these tests need it)

    with TestHost() as made:
        yield made


def _open_error(host: Any, pin: Pin) -> HypervisorError:
    uri = f"qemu+ssh://root@{host.address}:{host.port}/system"
    with LibvirtHypervisor(uri, pin=pin) as hv:
        observed = hv.observe()
        assert observed.domains is None and observed.error is not None
        with pytest.raises(HypervisorError) as caught:
            hv.start("rctest-never")
    return caught.value


def test_pinned_ssh_hypervisor_gets_past_host_key_verification(ssh_host: Any) -> None:
    error = _open_error(ssh_host, Pin(host_key=ssh_host.host_key_line, identity=ssh_host.identity))
    assert not isinstance(error, HostKeyError), error.message
    assert "HOST KEY" not in error.message and "host key" not in error.message, error.message
    assert "verify the session host key" not in error.message


def test_pinned_ssh_hypervisor_by_known_hosts_file(ssh_host: Any) -> None:
    pin = Pin(known_hosts=ssh_host.known_hosts, identity=ssh_host.identity)
    error = _open_error(ssh_host, pin)
    assert not isinstance(error, HostKeyError), error.message


def test_wrong_host_key_fails_before_anything_else(ssh_host: Any, tmp_path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")],
        check=True,
    )
    other = " ".join((tmp_path / "other.pub").read_text().split()[:2])
    error = _open_error(ssh_host, Pin(host_key=other, identity=ssh_host.identity))
    assert isinstance(error, HostKeyError), error.message
    assert "SSH HOST KEY VERIFICATION FAILED" in error.message
    assert error.hint is not None and "ssh-keyscan" in error.hint
