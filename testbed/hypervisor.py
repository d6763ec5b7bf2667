"""A test host's own libvirt daemons (`TestHost(libvirtd=True)`, see testbed/hosts.py).

The machine's libvirtd runs in the root namespaces and other tests use it concurrently, so
everything the host's daemons keep is private to the host's mount namespace: directories
below `<dir>/libvirt/` are bind-mounted over libvirt's paths there (`LIBVIRT_PATHS`), and
/run (sockets, pid files, per-domain runtime state) is already the host's own tmpfs.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import tempfile
from pathlib import Path

# <dir>/libvirt/<name> -> the path it is bind-mounted over inside the host
LIBVIRT_PATHS = {
    "etc": "/etc/libvirt",
    "lib": "/var/lib/libvirt",
    "log": "/var/log/libvirt",
    "cache": "/var/cache/libvirt",
}
# libvirtd probes each QEMU binary (~4 s each, two here) before it first answers: the host
# starts from the probes already made (the machine's daemon's, then the last test host's).
# libvirtd checks each file (binary and daemon ctimes, kernel, ...) and probes again if stale.
MACHINE_CAPS = Path("/var/cache/libvirt/qemu/capabilities")
CAPS_SEED = Path("/var/cache/reconcile-tests/libvirt-qemu-capabilities")
_CAPS = Path("cache/qemu/capabilities")
VIRTLOGD = "/usr/sbin/virtlogd"
LIBVIRTD = "/usr/sbin/libvirtd"

# What the copy of /etc/libvirt must not carry over from the machine's daemon: its domains,
# networks, storage pools and secrets (their XML and autostart links).
_NOT_COPIED = (
    "qemu/*.xml",
    "qemu/autostart/*",
    "qemu/networks/*.xml",
    "qemu/networks/autostart/*",
    "storage/*.xml",
    "storage/autostart/*",
    "secrets/*",
    "lxc/*.xml",
    "lxc/autostart/*",
)

# Appended to the copy's libvirtd.conf: a log the test host can show when the daemon fails.
_LIBVIRTD_CONF = 'log_outputs = "3:file:/var/log/libvirt/libvirtd.log"\n'
_VIRTLOGD_CONF = 'log_outputs = "3:file:/var/log/libvirt/virtlogd.log"\n'


def prepare(root: Path) -> Path:
    """Make `root` (= `<dir>/libvirt`): the private directories, /etc/libvirt copied."""
    root.mkdir(mode=0o755)
    etc = root / "etc"
    src = Path(LIBVIRT_PATHS["etc"])
    if src.is_dir():
        shutil.copytree(src, etc, symlinks=True)
    else:
        etc.mkdir()
    for pattern in _NOT_COPIED:
        for path in etc.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    for conf, extra in (("libvirtd.conf", _LIBVIRTD_CONF), ("virtlogd.conf", _VIRTLOGD_CONF)):
        path = etc / conf
        base = path.read_text() if path.exists() else ""
        path.write_text(base + "\n# testbed/hypervisor.py\n" + extra)
    for name in ("lib", "log", "cache"):
        (root / name).mkdir(mode=0o755)
    caps = root / _CAPS
    caps.mkdir(parents=True)
    for seed in (MACHINE_CAPS, CAPS_SEED):
        for path in sorted(seed.glob("*.xml")) if seed.is_dir() else []:
            with contextlib.suppress(OSError):  # one being replaced: probed again
                shutil.copy2(path, caps / path.name)
    return root


def save_caps(root: Path) -> None:
    """Keep the host's QEMU probes for the next host (`CAPS_SEED`), one file at a time."""
    CAPS_SEED.mkdir(parents=True, exist_ok=True)
    for path in sorted((root / _CAPS).glob("*.xml")):
        kept = CAPS_SEED / path.name
        if kept.exists() and kept.read_bytes() == path.read_bytes():
            continue
        fd, tmp = tempfile.mkstemp(dir=CAPS_SEED, prefix=".new.")
        os.close(fd)
        shutil.copy2(path, tmp)
        os.replace(tmp, kept)


def mount_steps(root: Path) -> list[str]:
    """Shell steps (inside the host's mount namespace) putting `root`'s directories in place."""
    q = shlex.quote
    return [f"mount --bind {q(str(root / name))} {q(path)}" for name, path in LIBVIRT_PATHS.items()]


def daemon_steps() -> list[str]:
    """Shell steps starting virtlogd, then libvirtd; both daemonize (`-d`). A failure says
    which one on stderr (the host's sshd.log) and ends the start script."""
    return [
        f'{{ {daemon} -d || {{ echo "{Path(daemon).name} -d failed ($?)" >&2; false; }}; }}'
        for daemon in (VIRTLOGD, LIBVIRTD)
    ]


def log(root: Path) -> str:
    """libvirtd's log (and virtlogd's, when not empty) as the host's daemons wrote them."""
    parts = []
    for name in ("libvirtd.log", "virtlogd.log"):
        path = root / "log" / name
        text = path.read_text(errors="replace") if path.exists() else ""
        if text.strip() or name == "libvirtd.log":
            parts.append(f"--- {name} ---\n{text.rstrip()}")
    return "\n".join(parts)
