"""The second-hypervisor fixture: a test host running its own virtlogd and libvirtd.

One host is shared across the module; from the root namespace it is reached only over
pinned SSH (`qemu+libssh2://`), and what its daemons keep stays inside its mount namespace.
The machine's own libvirtd is only ever read here (other tests use it concurrently).
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from testbed import hypervisor
from testbed.hosts import TestHost, cgroup_pids, netns_pids
from tests.support.waiting import wait_until

pytestmark = pytest.mark.real

SERIAL = "/var/lib/libvirt/reconcile-fixture-serial.log"
# where the machine's daemon keeps what a domain leaves behind (its name in file names)
MACHINE_LIBVIRT = ("/etc/libvirt", "/var/lib/libvirt", "/var/log/libvirt", "/run/libvirt")
CGROUPS = Path("/sys/fs/cgroup")


@pytest.fixture(scope="module", autouse=True)
def quiet_libvirt() -> Iterator[None]:
    """libvirt-python prints every error to stderr by default; the tests check them."""
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    yield
    libvirt.registerErrorHandler(None, None)


@pytest.fixture(scope="module")
def host() -> Iterator[TestHost]:
    with TestHost(libvirtd=True) as h:
        yield h
    assert h.leftovers() == []


@pytest.fixture
def conn(host: TestHost) -> Iterator[libvirt.virConnect]:
    c = libvirt.open(host.libvirt_uri())
    yield c
    c.close()


def token() -> str:
    """A word for domain names, searched for in file and cgroup names (no dash: systemd
    escapes one in a scope's name)."""
    return "rcfix" + uuid.uuid4().hex[:10]


def domain_xml(name: str, *, serial: str | None = None, virtiofs: bool = False) -> str:
    """A tiny TCG guest: the machine's kernel, no disk, no network interface."""
    backing = (
        "<memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>"
        if virtiofs
        else ""
    )
    devices = []
    if serial:
        devices += [
            f"<serial type='file'><source path='{serial}'/><target port='0'/></serial>",
            f"<console type='file'><source path='{serial}'/>"
            "<target type='serial' port='0'/></console>",
        ]
    if virtiofs:
        devices.append(
            "<filesystem type='mount' accessmode='passthrough'><driver type='virtiofs'/>"
            "<source dir='/nix/store'/><target dir='store'/></filesystem>"
        )
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  {backing}
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>/vmlinuz</kernel>
    <cmdline>console=ttyS0 panic=-1</cmdline>
  </os>
  <seclabel type='none' model='dac'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>{"".join(devices)}</devices>
</domain>"""


def machine_entries(word: str) -> list[str]:
    """Files and directories of the machine's libvirt whose name contains `word`."""
    found = []
    for top in MACHINE_LIBVIRT:
        for parent, dirs, files in os.walk(top):
            found += [os.path.join(parent, n) for n in dirs + files if word in n]
    return found


def cgroups_named(word: str) -> list[str]:
    found = []
    for parent, dirs, _files in os.walk(CGROUPS):
        found += [os.path.join(parent, n) for n in dirs if word in n]
    return found


def processes_mentioning(word: str) -> list[int]:
    """Every process on the machine whose command line contains `word`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            try:
                if word.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def running(pid: int) -> bool:
    """Whether `pid` runs (a zombie waits for PID 1 to reap it: it does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def namespace(pid: int, kind: str) -> str | None:
    """`net:[ino]` of `pid` (None once it is gone or exiting, as an ended session's shell)."""
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None


def machine_libvirtd_pid() -> int:
    return int(Path("/run/libvirtd.pid").read_text())


def test_virsh_over_libssh2_answers_from_the_hosts_daemon(
    host: TestHost, conn: libvirt.virConnect
) -> None:
    name = token()
    dom = conn.defineXML(domain_xml(name))
    try:
        listed = subprocess.run(
            ["virsh", "-c", host.libvirt_uri(), "list", "--all", "--name"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.split()  # fmt: skip
        assert name in listed
        machine = subprocess.run(
            ["virsh", "-c", "qemu:///system", "list", "--all", "--name"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.split()  # fmt: skip
        assert name not in machine
        # the persistent definition is in the host's /etc/libvirt only
        assert (
            host.run(["test", "-e", f"/etc/libvirt/qemu/{name}.xml"], check=False).returncode == 0
        )
        assert (host.libvirt_dir / "etc" / "qemu" / f"{name}.xml").exists()
        assert not Path(f"/etc/libvirt/qemu/{name}.xml").exists()
    finally:
        dom.undefine()
    assert name not in [d.name() for d in conn.listAllDomains()]
    # the open connection is an SSH session in the host running virt-ssh-helper (not nc)
    helpers = [p for p in netns_pids(host.netns) if comm(p) == "virt-ssh-helper"]
    assert helpers, "libvirt's libssh2 transport runs virt-ssh-helper on the host"
    cmdline = Path(f"/proc/{helpers[0]}/cmdline").read_bytes().split(b"\0")
    assert cmdline[:2] == [b"virt-ssh-helper", b"qemu:///system"]
    # the daemon that answered runs inside the host's network namespace
    pid = int(host.run(["cat", "/run/libvirtd.pid"]).stdout)
    assert pid != machine_libvirtd_pid()
    assert pid in netns_pids(host.netns)


def test_the_hosts_libvirt_state_is_private(host: TestHost, conn: libvirt.virConnect) -> None:
    assert conn.listAllNetworks() == []
    assert conn.listAllStoragePools() == []
    assert conn.listAllDomains() == []
    assert host.run("ls /etc/libvirt/qemu/networks/*.xml", check=False).returncode != 0
    mounted = host.run(["findmnt", "-rn", "-o", "TARGET"]).stdout.split()
    for path in ("/etc/libvirt", "/var/lib/libvirt", "/var/log/libvirt", "/var/cache/libvirt"):
        assert path in mounted
    assert "/run" in mounted
    # the sockets are other files than the machine's daemon's
    for sock in ("/run/libvirt/libvirt-sock", "/run/libvirt/virtlogd-sock"):
        inode = int(host.run(["stat", "-L", "-c", "%i", sock]).stdout)
        assert inode != os.stat(sock).st_ino
    # the machine's daemon is the one it was and still answers
    pid = machine_libvirtd_pid()
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "libvirtd"
    machine = libvirt.open("qemu:///system")
    try:
        assert machine.getLibVersion() > 0
    finally:
        machine.close()


def test_a_guest_boots_on_the_host_and_leaves_nothing_on_the_machine(
    host: TestHost, conn: libvirt.virConnect
) -> None:
    name = token()
    assert not Path(SERIAL).exists()
    dom = conn.defineXML(domain_xml(name, serial=SERIAL))
    try:
        started = time.monotonic()
        dom.create()

        def booted() -> bool:
            out = host.run(["cat", SERIAL], check=False).stdout
            return "Linux version" in out

        wait_until("the kernel's banner on the serial log inside the host", booted, 30)
        print(f"kernel banner after {time.monotonic() - started:.1f}s")
        assert dom.isActive()
        assert not Path(SERIAL).exists(), "the serial log must stay inside the host"
        assert (host.libvirt_dir / "lib" / Path(SERIAL).name).exists()
        assert host.run(["test", "-e", f"/var/log/libvirt/qemu/{name}.log"]).returncode == 0
        assert machine_entries(name) == []
        assert processes_mentioning(name), "QEMU runs (in the host's network namespace)"
        assert set(processes_mentioning(f"guest={name}")) <= set(netns_pids(host.netns))
    finally:
        if dom.isActive():
            dom.destroy()
        dom.undefine()
    wait_until("QEMU to end", lambda: not processes_mentioning(f"guest={name}"), 10)
    assert machine_entries(name) == []
    assert cgroups_named(name) == []


def test_a_wrong_pinned_key_is_refused_before_auth(host: TestHost, tmp_path: Path) -> None:
    key = tmp_path / "other"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30
    )
    known = tmp_path / "known_hosts"
    known.write_text(host.known_hosts_line(" ".join(Path(f"{key}.pub").read_text().split()[:2])))
    pinned = known.read_text()
    seen = len(host.log())
    with pytest.raises(libvirt.libvirtError) as refused:
        libvirt.open(host.libvirt_uri(known_hosts=known))
    assert "host key verification" in str(refused.value).lower()
    assert refused.value.get_error_domain() == libvirt.VIR_FROM_SSH
    assert known.read_text() == pinned, "libvirt must not rewrite the pinned key"
    wait_until("sshd to log the disconnect", lambda: "[preauth]" in host.log()[seen:], 5)
    assert "Accepted" not in host.log()[seen:]


def test_a_virtiofs_share_starts_virtiofsd(host: TestHost, conn: libvirt.virConnect) -> None:
    name = token()
    dom = conn.createXML(domain_xml(name, virtiofs=True), 0)
    try:
        assert dom.isActive()
        daemons = host.run("pgrep -a virtiofsd || true").stdout
        assert "source=/nix/store" in daemons, daemons
    finally:
        dom.destroy()
    wait_until("virtiofsd to end", lambda: not host.run("pgrep virtiofsd || true").stdout, 10)
    assert machine_entries(name) == []
    assert cgroups_named(name) == []


def test_stop_kills_the_daemons_and_their_guests() -> None:
    host = TestHost(libvirtd=True).start()
    try:
        conn = libvirt.open(host.libvirt_uri())
        name = token()
        conn.createXML(domain_xml(name, virtiofs=True), 0)
        conn.createXML(domain_xml(name + "b", serial=SERIAL), 0)
        conn.close()
        assert len(processes_mentioning(name)) == 2  # the two QEMUs
        pids = cgroup_pids(host.cgroup)
        names = sorted(comm(p) for p in pids)
        for daemon in ("libvirtd", "virtlogd", "sshd"):
            assert daemon in names
        assert names.count("qemu-system-x86") == 2
        # virtiofsd (and its sandbox's child) left the host's namespaces: only the cgroup
        # and the virtiofsd that libvirt daemonized knows them
        inside = namespace(host.sshd_pid, "net")
        outside = [p for p in pids if namespace(p, "net") not in (None, inside)]
        assert sorted(comm(p) for p in outside) == ["virtiofsd", "virtiofsd"], names
    finally:
        host.stop()
    assert host.leftovers() == []
    assert processes_mentioning(name) == []
    assert [p for p in pids if running(p)] == []
    assert machine_entries(name) == []
    assert cgroups_named(name) == []
    assert not Path(SERIAL).exists()
    assert not host.cgroup.exists()


def test_a_daemon_that_never_answers_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hypervisor, "LIBVIRTD", "/bin/true")
    host = TestHost(libvirtd=True, libvirtd_timeout_s=1)
    with pytest.raises(RuntimeError, match="libvirtd not answering") as failed:
        host.start()
    assert "--- libvirtd.log ---" in str(failed.value)
    assert host.leftovers() == []


def test_a_private_dir_is_the_hosts_own(tmp_path: Path) -> None:
    shared = tmp_path / "state"
    shared.mkdir()
    (shared / "here").write_text("the machine's\n")
    with TestHost(private_dirs=(shared,)) as other:
        assert other.run(["ls", "-A", str(shared)]).stdout == ""
        other.run(["sh", "-c", f"echo the host\\'s > {shared}/there"])
        assert not (shared / "there").exists()
        assert (other.dir / "private" / "0" / "there").read_text() == "the host's\n"
        assert (shared / "here").read_text() == "the machine's\n"
    assert other.leftovers() == []
