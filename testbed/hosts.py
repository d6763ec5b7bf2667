"""Baremetal hosts for `real` tests and bench/: a network namespace, own /nix and /run, sshd.

One `TestHost` is one "machine" reachable over SSH from the root namespace:

- network: namespace `rctest-<n>`, a veth pair `rctest-<n>-h` (root side, 10.253.<n>.1/30)
  and `eth0` inside (10.253.<n>.2/30), `lo` up. `<n>` is claimed atomically: `ip netns add`
  fails when another test already holds that name.
- its own Nix: sshd runs under `ip netns exec rctest-<n> unshare --mount --propagation
  private sh -c ...`, which bind-mounts `<dir>/nix` over `/nix` (empty; `nix-store --init`
  creates the database), `<dir>/etc-nix` over `/etc/nix` (a copy of this machine's nix.conf
  plus `nix_conf_extra`) and a tmpfs over `/run` (`/run/sshd` for privilege separation,
  `/run/current-system` for the demo's switch-to-configuration). None of these mounts is
  visible outside; they vanish with the namespace's last process.
- sshd: openssh-server with a host key and a client key generated for this host, root login
  by key only, no PAM, listening on 10.253.<n>.2:22. `known_hosts` pins the host key.
- sshd as a unit: `/run/demo-units/sshd start|stop` inside the host (its pid in
  `/run/demo-units/sshd.pid`), which the demo's switch-to-configuration runs as NixOS's
  runs `systemctl start|stop sshd.service` (nix/switch-to-configuration.sh, `demo.sshd`).
  `stop` ends the listening daemon only, as systemd does for sshd.service
  (KillMode=process): open sessions stay. `start` starts a daemon again when none runs.
- private directories (opt-in, `private_dirs=(path, ...)`): each existing directory of the
  machine is, inside the host, an empty directory of the host's own (`<dir>/private/<i>`,
  0755, bind-mounted over it), so a path can mean one thing here and another there.
- libvirtd (opt-in, `TestHost(libvirtd=True)`): a second hypervisor. The same `sh -c` that
  execs sshd first starts `virtlogd -d` and `libvirtd -d` in the host's network and mount
  namespaces; `start()` returns once `virsh -c qemu:///system version` answers inside the
  host (else a RuntimeError with libvirtd's log, `libvirtd_timeout_s`). Its state is
  private: `<dir>/libvirt/{etc,lib,log,cache}` are bind-mounted over /etc/libvirt,
  /var/lib/libvirt, /var/log/libvirt and /var/cache/libvirt (readable from the root
  namespace there, `libvirt_dir`, `libvirtd_log()`), and its sockets, pid files and
  per-domain runtime state are in the host's /run (Debian's /var/run is a link to /run).
  etc/ is a copy of this machine's /etc/libvirt without the machine daemon's domains,
  networks, storage pools and secrets (their XML and autostart links), so nothing starts
  by itself. `libvirt_uri()` reaches it from the root namespace over pinned SSH
  (`qemu+libssh2://root@10.253.<n>.2/system?known_hosts=...&known_hosts_verify=normal&
  sshauth=privkey&keyfile=...`); the SSH session runs `virt-ssh-helper`, which connects to
  the host's /run/libvirt/libvirt-sock. QEMU runs under TCG (`<domain type='qemu'>`), as
  libvirt-qemu. A virtiofs share runs virtiofsd, which libvirtd daemonizes and whose
  sandbox unshares its own network, mount and pid namespaces: the host's namespaces no
  longer hold it, so such a host also has a cgroup of its own (`cgroup`, in the cgroup2
  hierarchy, /sys/fs/cgroup/unified/ here) that all its processes inherit, and `stop()`
  kills what is in it and removes it. libvirt makes no cgroups for domains on this
  machine (`virsh schedinfo`: "cgroup CPU controller is not mounted").
  QEMU's capability probes (~8 s) are copied in from the machine's daemon's cache and
  kept in /var/cache/reconcile-tests/libvirt-qemu-capabilities for the next host, so a
  start takes well under a second once one host has probed.

Nix 2.8 needs nothing more on the host: `ssh-ng://` runs `nix-daemon --stdio`, which with no
daemon socket in the host's /nix serves the host's local store directly; `ssh://` runs
`nix-store --serve`. Paths built here are unsigned and the host keeps `require-sigs = true`
(as a real NixOS host would), so `nix copy` needs `--no-check-sigs` (or the host
`nix_conf_extra="require-sigs = false"`).

Usage (one host per module keeps tests fast, setup takes well under a second):

    @pytest.fixture(scope="module")
    def host() -> Iterator[TestHost]:
        with TestHost() as h:
            yield h

    with TestHost(libvirtd=True) as h:
        conn = libvirt.open(h.libvirt_uri())  # that host's libvirtd, not the machine's
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from urllib.parse import urlencode

from testbed import ROOT, hypervisor
from testbed.mounts import mounts_below, remove_tree

PREFIX = "rctest-"
NETS = range(1, 255)  # 10.253.<n>.0/30
SSHD = "/usr/sbin/sshd"
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _run(argv: Sequence[str], timeout: float = 30, check: bool = True) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def netns_names() -> list[str]:
    """Names of all network namespaces (`ip netns list`), ours or not."""
    return [line.split()[0] for line in _run(["ip", "netns", "list"]).splitlines() if line]


def netns_pids(name: str) -> list[int]:
    """Processes inside network namespace `name` (empty when it does not exist)."""
    out = _run(["ip", "netns", "pids", name], check=False)
    return [int(p) for p in out.split()]


def pids_in_mount_ns(mnt_ns: str) -> list[int]:
    """Processes whose mount namespace is `mnt_ns` (as `readlink /proc/PID/ns/mnt` says)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "ns" / "mnt") == mnt_ns:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def cgroup2_dir() -> Path:
    """This process's own cgroup in the cgroup2 hierarchy (on this machine, with cgroup v1
    controllers beside it, /sys/fs/cgroup/unified/)."""
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[2] == "cgroup2"]
    own = [line[3:].strip() for line in Path("/proc/self/cgroup").read_text().splitlines()
           if line.startswith("0::")]  # fmt: skip
    if not points or not own:
        raise RuntimeError("no cgroup2 hierarchy mounted: cannot track a host's processes")
    return Path(points[0]) / own[0].lstrip("/")


def cgroup_pids(cgroup: Path) -> list[int]:
    """Processes in `cgroup` (empty when it does not exist)."""
    try:
        return [int(p) for p in (cgroup / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name: [state, ppid, ...] (None once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def with_descendants(pids: Sequence[int]) -> list[int]:
    """`pids` and every process descending from one of them (a child that unshared its
    namespaces is still found, unless it was daemonized: see `TestHost.cgroup`)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), list(pids)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo += children.get(pid, [])
    return sorted(found)


def _start_time(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[19] if fields and fields[0] != "Z" else None  # field 22 of stat(5)


def _kill_and_wait(pids: Sequence[int], timeout_s: float = 3.0) -> None:
    """SIGTERM the given processes, SIGKILL what is left after `timeout_s`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not [p for p in pids if Path(f"/proc/{p}").exists() and not _zombie(p)]:
                return
            time.sleep(0.05)


def _zombie(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is None or fields[0] == "Z"


def build_demo_closure(system: str = "demo-a", flake: Path | None = None) -> str:
    """`nix build` a demo flake system (path: flake, so the untracked busybox is seen)."""
    flake = flake or ROOT / "nix"
    busybox = flake / "bb" / "busybox"
    if not busybox.exists():
        busybox.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2("/bin/busybox", busybox)
        busybox.chmod(0o755)
    out = _run(
        ["nix", "build", "--no-link", "--json", f"path:{flake}#packages.x86_64-linux.{system}"],
        timeout=300,
    )
    path: str = json.loads(out)[0]["outputs"]["out"]
    return path


class TestHost:
    """One baremetal host: `with TestHost() as host:` or `host.start()` ... `host.stop()`.

    Attributes once started: `index`, `netns`, `address` (10.253.n.2), `gateway`
    (10.253.n.1, the root side), `port`, `user`, `dir`, `host_key_line`
    (`ssh-ed25519 AAAA...`), `known_hosts`, `identity` (client private key),
    `client_key_line`, `sshd_pid`, `mount_ns` (`mnt:[ino]` of the host's processes);
    with `libvirtd=True` also `libvirt_dir` (`<dir>/libvirt`), `cgroup` and `libvirt_uri()`.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        index: int | None = None,
        *,
        nix_conf_extra: str = "",
        base_dir: Path | None = None,
        ready_timeout_s: float = 10.0,
        fake_reboot: bool = False,
        boot_loader: bool = False,
        libvirtd: bool = False,
        libvirtd_timeout_s: float = 30.0,
        private_dirs: Sequence[Path] = (),
    ) -> None:
        self.requested_index = index
        self.private_dirs = [Path(p) for p in private_dirs]
        self.fake_reboot = fake_reboot or boot_loader
        self.boot_loader = boot_loader
        self.libvirtd = libvirtd
        self.libvirtd_timeout_s = libvirtd_timeout_s
        self.nix_conf_extra = nix_conf_extra
        self.base_dir = base_dir
        self.ready_timeout_s = ready_timeout_s
        self.index = -1
        self.netns = ""
        self.veth = ""
        self.address = ""
        self.gateway = ""
        self.port = 22
        self.user = "root"
        self.dir = Path()
        self.host_key_line = ""
        self.client_key_line = ""
        self.known_hosts = Path()
        self.identity = Path()
        self.sshd_pid = -1
        self.mount_ns = ""
        self.libvirt_dir = Path()
        self.cgroup = Path()
        self._killed: dict[int, str] = {}  # pid -> start time, of what stop() killed
        self._sshd: subprocess.Popen[bytes] | None = None
        self._log: int | None = None
        self._started = False

    # --- life cycle -------------------------------------------------------------------

    def __enter__(self) -> TestHost:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> TestHost:
        if self._started:
            raise RuntimeError("TestHost already started")
        self._started = True
        try:
            self._claim_netns()
            self.dir = Path(tempfile.mkdtemp(prefix=f"{self.netns}.", dir=self.base_dir))
            if any(c.isspace() for c in str(self.dir)):
                raise RuntimeError(f"{self.dir}: NIX_SSHOPTS cannot carry whitespace")
            self._network()
            self._keys()
            self._start_sshd()
            if self.libvirtd:
                self._await_libvirtd()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Kill every process of the host, remove its network and its directory. Idempotent.

        Refuses (RuntimeError) to remove the directory while a process still holds the
        host's mount namespace or anything is mounted below the directory.
        """
        if not self._started:
            return
        errors: list[str] = []
        for _ in range(3):  # again for what forked while the others died
            everything = self._processes()
            if not everything:
                break
            self._killed |= {p: t for p in everything if (t := _start_time(p))}
            _kill_and_wait(everything)
        if self._sshd is not None:
            try:
                self._sshd.wait(timeout=5)
            except subprocess.TimeoutExpired:
                errors.append(f"sshd {self._sshd.pid} did not exit")
            self._sshd = None
        if self._log is not None:
            os.close(self._log)
            self._log = None
        if self._survivors():
            errors.append(f"processes survived SIGKILL: {self._survivors()}")
        if self.cgroup != Path() and self.cgroup.exists():
            try:
                self.cgroup.rmdir()
            except OSError as exc:
                errors.append(f"cgroup {self.cgroup} not removed: {exc}")
        if self.veth:
            _run(["ip", "link", "del", self.veth], check=False)
        if self.netns:
            left = netns_pids(self.netns)
            if left:
                errors.append(f"processes left in {self.netns}: {left}")
            else:
                _run(["ip", "netns", "del", self.netns], check=False)
        if self.mount_ns and pids_in_mount_ns(self.mount_ns):
            errors.append(f"processes left in {self.mount_ns}: not removing {self.dir}")
        elif self.dir != Path() and self.dir.exists():
            if mounts_below(self.dir):
                errors.append(f"mounted below {self.dir}: not removing it")
            else:
                remove_tree(self.dir)
        self._started = False
        if errors:
            raise RuntimeError("; ".join(errors))

    # --- set-up steps -----------------------------------------------------------------

    def _claim_netns(self) -> None:
        if self.requested_index is not None:
            candidates = [self.requested_index]
        else:
            start = random.randrange(len(NETS))
            candidates = [NETS[(start + i) % len(NETS)] for i in range(len(NETS))]
        used = _run(["ip", "-o", "addr", "show"])
        for n in candidates:
            if f" 10.253.{n}." in used:
                continue
            proc = subprocess.run(
                ["ip", "netns", "add", f"{PREFIX}{n}"], capture_output=True, text=True, check=False
            )
            if proc.returncode == 0:  # `ip netns add` is the atomic claim
                self.index = n
                self.netns = f"{PREFIX}{n}"
                self.address = f"10.253.{n}.2"
                self.gateway = f"10.253.{n}.1"
                return
        raise RuntimeError(f"no free {PREFIX}<n> namespace among {candidates[:5]}...")

    def _network(self) -> None:
        self.veth = f"{PREFIX}{self.index}-h"  # at most 12 characters (IFNAMSIZ is 16)
        ns = self.netns
        _run(["ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
        _run(["ip", "addr", "add", f"{self.gateway}/30", "dev", self.veth])
        _run(["ip", "link", "set", self.veth, "up"])
        _run(["ip", "-n", ns, "addr", "add", f"{self.address}/30", "dev", "eth0"])
        _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])

    def _keys(self) -> None:
        ssh = self.dir / "ssh"
        ssh.mkdir(mode=0o700)
        for name, comment in (("host_key", "host"), ("client_key", "client")):
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{self.netns}-{comment}",
                  "-f", str(ssh / name)])  # fmt: skip
        self.host_key_line = " ".join((ssh / "host_key.pub").read_text().split()[:2])
        self.client_key_line = " ".join((ssh / "client_key.pub").read_text().split()[:2])
        self.identity = ssh / "client_key"
        (ssh / "authorized_keys").write_text(self.client_key_line + "\n")
        self.known_hosts = self.dir / "known_hosts"
        self.known_hosts.write_text(self.known_hosts_line(self.host_key_line) + "\n")
        (ssh / "sshd_config").write_text(
            "\n".join(
                [
                    f"ListenAddress {self.address}:{self.port}",
                    f"HostKey {ssh / 'host_key'}",
                    f"AuthorizedKeysFile {ssh / 'authorized_keys'}",
                    "PermitRootLogin prohibit-password",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    "UseDNS no",
                    "PidFile none",
                    "PrintMotd no",
                    "MaxStartups 100",
                    "MaxSessions 100",
                    "Subsystem sftp internal-sftp",
                    "",
                ]
            )
        )

    def _start_sshd(self) -> None:
        (self.dir / "nix").mkdir()
        etc_nix = self.dir / "etc-nix"
        etc_nix.mkdir()
        conf = Path("/etc/nix/nix.conf")
        base = conf.read_text() if conf.exists() else ""
        (etc_nix / "nix.conf").write_text(base + "\n" + self.nix_conf_extra + "\n")
        d = shlex.quote(str(self.dir))
        self._sshd_unit()
        steps = [
            f"mount --bind {d}/nix /nix",
            f"mount --bind {d}/etc-nix /etc/nix",
            "mount -t tmpfs -o mode=0755 tmpfs /run",
            "mkdir -p /run/sshd /run/demo-units",
            f"cp {d}/sshd-unit /run/demo-units/sshd",
            "echo $$ > /run/demo-units/sshd.pid",  # sh execs sshd: the same pid
            "nix-store --init",
        ]
        if Path("/root/.bashrc").exists():
            # The host's root is this machine's root, whose ~/.bashrc (a developer's: pyenv
            # init, ~150 ms) bash would source for every command sshd runs: a host of its
            # own has its own, here an empty one.
            (self.dir / "bashrc").write_text("")
            steps.append(f"mount --bind {d}/bashrc /root/.bashrc")
        if self.fake_reboot:
            steps += self._fake_reboot_steps()
        steps += self._private_dir_steps()
        if self.libvirtd:
            self.libvirt_dir = hypervisor.prepare(self.dir / "libvirt")
            steps += hypervisor.mount_steps(self.libvirt_dir) + hypervisor.daemon_steps()
        script = " && ".join([*steps, f"exec {SSHD} -D -e -f {d}/ssh/sshd_config"])
        argv = ["ip", "netns", "exec", self.netns,
                "unshare", "--mount", "--propagation", "private", "sh", "-c", script]  # fmt: skip
        if self.libvirtd:
            # libvirtd daemonizes what it spawns and virtiofsd's sandbox leaves the host's
            # namespaces: a cgroup of the host's own keeps track of all of them for stop()
            self.cgroup = cgroup2_dir() / self.dir.name
            self.cgroup.mkdir()
            enter = 'echo $$ > "$0" && exec "$@"'
            argv = ["sh", "-c", enter, str(self.cgroup / "cgroup.procs"), *argv]
        self._log = os.open(self.dir / "sshd.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        env = {"PATH": CLEAN_PATH, "LANG": "C.UTF-8", "HOME": "/root"}
        # (sh,) ip netns exec, unshare (no --fork) and sh all exec: the Popen pid is sshd's
        self._sshd = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
            env=env, start_new_session=True,
        )  # fmt: skip
        self.sshd_pid = self._sshd.pid
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            if self._sshd.poll() is not None:
                what = "sshd (or the libvirt daemons before it)" if self.libvirtd else "sshd"
                extra = f"\n{self.libvirtd_log()}" if self.libvirtd else ""
                raise RuntimeError(f"{what} exited ({self._sshd.returncode}): {self.log()}{extra}")
            if "Server listening on" in self.log() and self._port_open():
                break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"sshd not listening after {self.ready_timeout_s}s: {self.log()}"
                )
            time.sleep(0.02)
        self.mount_ns = os.readlink(f"/proc/{self.sshd_pid}/ns/mnt")
        if self.mount_ns == os.readlink("/proc/self/ns/mnt"):
            raise RuntimeError("sshd shares the root mount namespace")

    def _private_dir_steps(self) -> list[str]:
        """Bind `<dir>/private/<i>` (empty, 0755) over each of `private_dirs` in the host."""
        steps = []
        for i, point in enumerate(self.private_dirs):
            if not point.is_absolute() or not point.is_dir():
                raise RuntimeError(f"private dir {point}: not an existing absolute directory")
            own = self.dir / "private" / str(i)
            own.mkdir(parents=True)
            own.chmod(0o755)
            steps.append(f"mount --bind {shlex.quote(str(own))} {shlex.quote(str(point))}")
        return steps

    def _sshd_unit(self) -> None:
        """The unit script for sshd (the module's docstring): start and stop it."""
        q = shlex.quote
        config, log = q(str(self.dir / "ssh" / "sshd_config")), q(str(self.dir / "sshd.log"))
        script = self.dir / "sshd-unit"
        script.write_text(
            "#!/bin/sh\n"
            "# the test host's SSH daemon as a unit: start|stop (testbed/hosts.py)\n"
            "pidfile=/run/demo-units/sshd.pid\n"
            "running() {\n"
            '  pid=$(cat "$pidfile" 2>/dev/null) && [ -n "$pid" ] || return 1\n'
            '  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1\n'
            '  stat=${stat##*) }; [ "${stat%% *}" != Z ]\n'
            "}\n"
            'case "$1" in\n'
            "  start)\n"
            "    running && exit 0\n"
            f'    exec {SSHD} -f {config} -E {log} -o PidFile="$pidfile" ;;\n'
            "  stop)\n"
            "    running || exit 0\n"
            '    kill "$pid"\n'
            "    for _ in $(seq 50); do running || exit 0; sleep 0.1; done\n"
            "    exit 1 ;;\n"
            '  *) echo "usage: $0 start|stop" >&2; exit 2 ;;\n'
            "esac\n"
        )
        script.chmod(0o755)

    def sshd_running(self) -> bool:
        """Whether an sshd of this host listens (the first, or one its unit started)."""
        return self._port_open()

    def _fake_reboot_steps(self) -> list[str]:
        """Mounts that make `reboot` on this host a reboot of its user space only.

        The host shares this machine's kernel: a real reboot would reboot the machine. Here
        `reboot` (and `systemctl`, which Debian's `reboot` links to) is a script that gives
        the host a new boot id (a file bind-mounted over /proc/sys/kernel/random/boot_id),
        boots the system profile (/run/booted-system and /run/current-system) and forgets
        /run/reconcile, as a real reboot's fresh /run would. With `boot_loader`, it boots
        what a systemd-boot would (`_loader_choice`), and the booted system's activation
        starts or stops the host's sshd as that system says: a system without sshd is a
        boot that never comes back.
        """
        boot_id = self.dir / "boot_id"
        boot_id.write_text(Path("/proc/sys/kernel/random/boot_id").read_text())
        script = self.dir / "reboot"
        script.write_text(
            "#!/bin/sh\n"
            "# the test host's reboot: see testbed/hosts.py\n"
            f"cat /proc/sys/kernel/random/uuid > {shlex.quote(str(boot_id))}\n"
            + (self._loader_choice() if self.boot_loader else "")
            + "target=${target:-$(readlink -f /nix/var/nix/profiles/system)}\n"
            'ln -sfn "$target" /run/booted-system\n'
            'ln -sfn "$target" /run/current-system\n'
            "rm -rf /run/reconcile /run/next-boot-system\n"
            f"echo rebooted >> {shlex.quote(str(self.dir / 'reboots'))}\n"
            # with a boot loader, the booted system's services come up as it says (sshd)
            + (
                f'"$target/bin/switch-to-configuration" test < /dev/null '
                f">> {self._boots_log()} 2>&1\n"
                if self.boot_loader
                else ""
            )
        )
        script.chmod(0o755)
        b, r = shlex.quote(str(boot_id)), shlex.quote(str(script))
        steps = [
            f"mount --bind {b} /proc/sys/kernel/random/boot_id",
            f"mount --bind {r} $(readlink -f /usr/sbin/reboot)",
        ]
        if self.boot_loader:
            steps += self._boot_loader_steps()
        return steps

    def _loader_choice(self) -> str:
        """The reboot script's systemd-boot: the one-shot entry (used up as it boots), else
        the default entry, else (as NixOS's loader.conf names the profile's newest
        generation) the profile; entry `nixos-generation-N.conf` is profile generation N."""
        efi = shlex.quote(str(self.dir / "efi"))
        return (
            f"efi={efi}; entry=\n"
            'if [ -s "$efi/LoaderEntryOneShot" ]; then entry=$(cat "$efi/LoaderEntryOneShot"); '
            'rm -f "$efi/LoaderEntryOneShot"\n'
            'elif [ -s "$efi/LoaderEntryDefault" ]; then\n'
            '  entry=$(cat "$efi/LoaderEntryDefault"); fi\n'
            'target=; if [ -n "$entry" ]; then n=${entry#nixos-generation-}; n=${n%.conf}\n'
            '  target=$(readlink -f "/nix/var/nix/profiles/system-$n-link"); fi\n'
            f'echo "boot: entry ${{entry:-(loader.conf)}}" >> {self._boots_log()}\n'
        )

    def _boot_loader_steps(self) -> list[str]:
        """A `bootctl` on the host's PATH (over /usr/local/sbin) that keeps systemd-boot's
        two EFI variables in `<dir>/efi`, which outlive the host's reboots as NVRAM does;
        and a process that keeps the host's namespaces while no sshd runs in them (a new
        system that never comes up), so `power_cycle()` can still reset it."""
        efi, sbin = self.dir / "efi", self.dir / "sbin"
        efi.mkdir()
        sbin.mkdir()
        (sbin / "bootctl").write_text(
            "#!/bin/sh\n"
            "# the test host's bootctl: see testbed/hosts.py\n"
            f"efi={shlex.quote(str(efi))}\n"
            'case "$1" in\n'
            "  is-installed) echo yes ;;\n"
            "  set-default | set-oneshot)\n"
            '    [ $# -eq 2 ] || { echo "usage: bootctl $1 ID" >&2; exit 1; }\n'
            '    [ "$1" = set-default ] && v=LoaderEntryDefault || v=LoaderEntryOneShot\n'
            '    if [ -z "$2" ]; then rm -f "$efi/$v"\n'
            '    else printf "%s\\n" "$2" > "$efi/$v"; fi ;;\n'
            '  *) echo "bootctl (test host): $1 is not emulated" >&2; exit 1 ;;\n'
            "esac\n"
        )
        (sbin / "bootctl").chmod(0o755)
        return [
            f"mount --bind {shlex.quote(str(sbin))} /usr/local/sbin",
            "setsid -f sleep infinity < /dev/null > /dev/null 2>&1",
        ]

    def efi_variable(self, name: str) -> str | None:
        """An EFI variable of the host's boot loader (`boot_loader`), None when unset."""
        path = self.dir / "efi" / name
        return path.read_text().strip() if path.exists() else None

    def power_cycle(self) -> None:
        """Reset the host, as a watchdog or a person would: its boot loader boots what its
        EFI variables say (`boot_loader`). Works while no sshd of it runs."""
        inside = pids_in_mount_ns(self.mount_ns)
        if not inside:
            raise RuntimeError(f"{self.netns}: no process left in its namespaces")
        detached = f"setsid -f {shlex.quote(str(self.dir / 'reboot'))} < /dev/null > /dev/null 2>&1"
        argv = ["nsenter", f"--target={inside[0]}", "--mount", "--net", "--", "sh", "-c", detached]
        subprocess.run(argv, check=True, timeout=30)

    def _boots_log(self) -> str:
        return shlex.quote(str(self.dir / "boots.log"))

    def boots_log(self) -> str:
        """What the boot loader booted, and the booted systems' activations."""
        path = self.dir / "boots.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def reboots(self) -> int:
        """How many times `reboot` ran on this host (with `fake_reboot`)."""
        path = self.dir / "reboots"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def boot_id(self) -> str:
        return self.run(["cat", "/proc/sys/kernel/random/boot_id"]).stdout.strip()

    def _await_libvirtd(self) -> None:
        """Wait until the host's libvirtd answers `virsh version` inside the host."""
        deadline = time.monotonic() + self.libvirtd_timeout_s
        argv = self._inside_argv(["virsh", "-c", "qemu:///system", "version"])
        while True:
            left = max(deadline - time.monotonic(), 1.0)
            try:
                proc = subprocess.run(
                    argv, capture_output=True, text=True, timeout=left, check=False
                )
                answer = proc.stderr.strip()
                if proc.returncode == 0:
                    with contextlib.suppress(OSError):  # only the next host starts slower
                        hypervisor.save_caps(self.libvirt_dir)
                    return
            except subprocess.TimeoutExpired:
                answer = f"virsh version hung for {left:.0f}s"
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.netns}: libvirtd not answering after {self.libvirtd_timeout_s}s "
                    f"({answer}):\n{self.libvirtd_log()}"
                )
            time.sleep(0.05)

    def _inside_argv(self, argv: Sequence[str]) -> list[str]:
        """argv run in the first sshd's network and mount namespaces (nsenter, no ssh)."""
        return ["nsenter", f"--target={self.sshd_pid}", "--mount", "--net", "--", *argv]

    def _port_open(self) -> bool:
        try:
            with socket.create_connection((self.address, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    # --- what tests use ---------------------------------------------------------------

    def log(self) -> str:
        """sshd's own log (`-e`: to stderr, kept in `<dir>/sshd.log`)."""
        path = self.dir / "sshd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def libvirtd_log(self) -> str:
        """The host's libvirtd's (and virtlogd's) log, read from the root namespace."""
        return hypervisor.log(self.libvirt_dir) if self.libvirt_dir != Path() else ""

    def libvirt_uri(self, known_hosts: Path | None = None, *, keyfile: Path | None = None) -> str:
        """The host's libvirtd over pinned SSH (libvirt's libssh2 transport, key auth)."""
        query = urlencode(
            {
                "known_hosts": str(known_hosts or self.known_hosts),
                "known_hosts_verify": "normal",
                "sshauth": "privkey",
                "keyfile": str(keyfile or self.identity),
            },
            safe="/",
        )
        port = "" if self.port == 22 else f":{self.port}"
        return f"qemu+libssh2://{self.user}@{self.address}{port}/system?{query}"

    def known_hosts_line(self, key_line: str) -> str:
        host = self.address if self.port == 22 else f"[{self.address}]:{self.port}"
        return f"{host} {key_line}"

    def ssh_options(self, known_hosts: Path | None = None, connect_timeout_s: int = 5) -> list[str]:
        """ssh options that pin the host key and use only the test's identity."""
        return [
            "-F", "/dev/null",
            "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", "IdentityAgent=none",
            "-o", f"UserKnownHostsFile={known_hosts or self.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"ConnectTimeout={connect_timeout_s}",
            "-o", "LogLevel=ERROR",
            "-i", str(self.identity),
            "-p", str(self.port),
        ]  # fmt: skip

    def nix_sshopts(self, known_hosts: Path | None = None) -> str:
        """A value for NIX_SSHOPTS (Nix 2.8 splits it on whitespace, no quoting)."""
        return " ".join(self.ssh_options(known_hosts))

    def nix_env(self, known_hosts: Path | None = None) -> dict[str, str]:
        """os.environ plus NIX_SSHOPTS for `nix copy --to <store_uri>`."""
        return {**os.environ, "NIX_SSHOPTS": self.nix_sshopts(known_hosts)}

    def store_uri(self, scheme: str = "ssh-ng") -> str:
        return f"{scheme}://{self.user}@{self.address}"

    def ssh_argv(self, command: str | Sequence[str], known_hosts: Path | None = None) -> list[str]:
        """ssh argv running `command` on the host (a list is quoted with shlex.join)."""
        remote = command if isinstance(command, str) else shlex.join(command)
        return ["ssh", *self.ssh_options(known_hosts), f"{self.user}@{self.address}", "--", remote]

    def run(
        self,
        command: str | Sequence[str],
        *,
        check: bool = True,
        timeout: float = 30,
        known_hosts: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `command` on the host over ssh; check=True raises on a non-zero exit."""
        proc = subprocess.run(
            self.ssh_argv(command, known_hosts),
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"on {self.netns}: {command!r} exited {proc.returncode}: {proc.stderr.strip()}"
            )
        return proc

    def current_system(self) -> str | None:
        """Where /run/current-system points inside the host (None if it does not exist)."""
        proc = self.run("readlink /run/current-system || true")
        return proc.stdout.strip() or None

    def has_path(self, store_path: str) -> bool:
        """`nix-store --check-validity` in the host's own store."""
        return self.run(["nix-store", "--check-validity", store_path], check=False).returncode == 0

    def kill_network(self) -> None:
        """Make the host unreachable: its eth0 goes down inside the namespace.

        The root side stays up, so its /30 route stays and nothing to 10.253.<n>.2 leaves
        by the default route: connections time out (ConnectTimeout) like a dead host.
        """
        _run(["ip", "-n", self.netns, "link", "set", "eth0", "down"])

    def restore_network(self) -> None:
        _run(["ip", "-n", self.netns, "link", "set", "eth0", "up"])
        deadline = time.monotonic() + 5
        while not self._port_open() and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop_sshd(self) -> None:
        """Kill sshd only (the host refuses connections); `stop()` still cleans up."""
        if self._sshd is not None:
            _kill_and_wait([self._sshd.pid])
            self._sshd.wait(timeout=5)

    def _processes(self) -> list[int]:
        """The host's processes: in its network or mount namespace or its cgroup, and their
        descendants (zombies left out)."""
        pids = set(netns_pids(self.netns)) if self.netns else set()
        if self.mount_ns:
            pids |= set(pids_in_mount_ns(self.mount_ns))
        if self.cgroup != Path():
            pids |= set(cgroup_pids(self.cgroup))
        if self._sshd is not None and self._sshd.poll() is None:
            pids.add(self._sshd.pid)
        return [p for p in with_descendants(sorted(pids)) if not _zombie(p)]

    def _survivors(self) -> list[int]:
        """What stop() killed that still runs (the same pid and start time)."""
        return [p for p, t in self._killed.items() if _start_time(p) == t]

    def leftovers(self) -> list[str]:
        """What is left of this host on the machine (empty after `stop()`)."""
        left = []
        if self.netns and self.netns in netns_names():
            left.append(f"netns {self.netns}")
        if self.veth and _run(["ip", "link", "show", self.veth], check=False):
            left.append(f"link {self.veth}")
        if self.sshd_pid > 0 and Path(f"/proc/{self.sshd_pid}").exists():
            left.append(f"sshd pid {self.sshd_pid}")
        if self.mount_ns:
            left += [f"pid {p} in {self.mount_ns}" for p in pids_in_mount_ns(self.mount_ns)]
        if self.cgroup != Path() and self.cgroup.exists():
            left.append(f"cgroup {self.cgroup} {cgroup_pids(self.cgroup)}")
        left += [f"pid {p} (killed by stop)" for p in self._survivors()]
        if self.dir != Path():
            left += [f"mount {m}" for m in mounts_below(self.dir)]
            if self.dir.exists():
                left.append(f"dir {self.dir}")
        return left
