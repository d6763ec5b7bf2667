"""The desired state: what the manifest asks for, frozen, defaults applied, paths resolved."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from reconcile.core.layout import StateLayout
from reconcile.core.ssh_target import SshTarget


class GuestMode(StrEnum):
    IMAGELESS = "imageless"
    DISK = "disk"


class Accel(StrEnum):
    KVM = "kvm"
    QEMU = "qemu"


class GuestState(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"


class RestartPolicy(StrEnum):
    ON_CHANGE = "on-change"
    NEVER = "never"


class DiskUpdate(StrEnum):
    SWITCH = "switch"
    RECREATE = "recreate"


class Activation(StrEnum):
    SWITCH = "switch"
    BOOT = "boot"
    TEST = "test"


class BuildOn(StrEnum):
    CONTROLLER = "controller"  # in the plan's one `nix build`, then copied
    HOST = "host"  # built in the host's own store (colmena's buildOnTarget)
    HYPERVISOR = "hypervisor"  # a guest's system, built in its hypervisor's own store


class GitOpsApply(StrEnum):
    AUTO = "auto"
    PLAN_ONLY = "plan-only"


@dataclass(frozen=True)
class Lab:
    name: str
    flake: str
    state_dir: Path
    description: str = ""
    eval_timeout_s: float = 600.0
    build_timeout_s: float = 6 * 3600.0
    lock_warn_after_s: float = 2 * 3600.0
    generations: int = 5  # systems each guest keeps (the schema's default)
    build_locally: bool = True  # with builders: whether this machine builds too

    @functools.cached_property
    def layout(self) -> StateLayout:
        """Every path under `state_dir` (core/layout.py): nothing else joins them."""
        return StateLayout(self.state_dir)


@dataclass(frozen=True)
class Hypervisor:
    name: str
    uri: str
    accel: Accel
    driver: str  # a key of DRIVERS (orchestration/drivers.py)
    # qemu+ssh only: the pinned host key (one of the two) and the key to log in with.
    host_key: str | None = None
    known_hosts: Path | None = None
    identity: Path | None = None
    build_on: BuildOn = BuildOn.CONTROLLER  # or HYPERVISOR: its guests' systems built there


@dataclass(frozen=True)
class KernelBuild:
    """A kernel built by reconcile from a source tree."""

    source: Path
    ref: str | None
    config: str
    fragments: tuple[Path, ...]
    options: tuple[tuple[str, str], ...]
    builder: str | None = None  # a [builders] name: make runs there (adapters/kernel_builder.py)


@dataclass(frozen=True)
class PrebuiltKernel:
    """A kernel image used as it is; `modules` None means `/lib/modules/<release of image>`."""

    image: Path
    modules: Path | None
    initrd_modules: tuple[str, ...]


@dataclass(frozen=True)
class Kernel:
    name: str
    source: KernelBuild | PrebuiltKernel


@dataclass(frozen=True)
class Share:
    tag: str
    source: Path
    writable: bool


class NetworkKind(StrEnum):
    LIBVIRT = "libvirt"  # a libvirt network (`default`: NAT and DHCP)
    BRIDGE = "bridge"  # a host bridge; the guest's system sets the static address
    USER = "user"  # QEMU user networking, SSH forwarded to a loopback port


@dataclass(frozen=True)
class Network:
    kind: NetworkKind
    name: str  # the libvirt network or the bridge ("" for user networking)
    mac: str | None
    address: str | None = None  # bridge: the guest's static address, as `a.b.c.d/len`
    ssh_port: int | None = None  # user: the loopback port forwarded to the guest's port 22

    @property
    def libvirt(self) -> str:
        """The libvirt network (imageless guests join only these)."""
        return self.name


class DiskFormat(StrEnum):
    QCOW2 = "qcow2"
    RAW = "raw"


@dataclass(frozen=True)
class ConfigShare:
    tag: str
    source: str  # an installable: its output is shared read-only


@dataclass(frozen=True)
class DataDisk:
    name: str
    size_bytes: int


@dataclass(frozen=True)
class Disk:
    size_bytes: int
    image: str | None
    format: DiskFormat = DiskFormat.QCOW2


@dataclass(frozen=True)
class Ssh:
    user: str
    host: str
    port: int
    host_key: str | None
    known_hosts: Path | None
    identity: Path | None
    connect_timeout_s: float
    command_timeout_s: float
    total_timeout_s: float = 1800.0
    passphrase_env: str | None = None  # the variable's name; its value is a secret

    @property
    def target(self) -> SshTarget:
        """Where to connect, with every spelling of it (OpenSSH, known_hosts, Nix)."""
        return SshTarget(self.user, self.host, self.port)


@dataclass(frozen=True)
class Guest:
    name: str
    mode: GuestMode
    system: str
    hypervisor: str
    kernel: str | None
    kernel_params: tuple[str, ...]
    memory_mib: int
    vcpus: int
    tags: tuple[str, ...]
    shares: tuple[Share, ...]
    network: Network | None
    disk: Disk | None
    update: DiskUpdate
    ssh: Ssh | None
    restart: RestartPolicy
    state: GuestState
    boot_timeout_s: float
    shutdown_timeout_s: float
    protect: bool
    after: tuple[str, ...] = ()  # guests and hosts whose changes come first (`after`)
    data_disks: tuple[DataDisk, ...] = ()  # disk guests: kept across a recreate
    config_shares: tuple[ConfigShare, ...] = ()  # disk guests: built store paths, read-only


@dataclass(frozen=True)
class HealthCheck:
    kind: str  # "systemd", "tcp" or "command"
    value: str | int | tuple[str, ...]


@dataclass(frozen=True)
class Host:
    name: str
    system: str
    ssh: Ssh
    activation: Activation
    reboot: bool
    health: tuple[HealthCheck, ...]
    health_timeout_s: float
    confirm_timeout_s: float  # how long the host's guard waits for the confirmation
    tags: tuple[str, ...]
    after: tuple[str, ...] = ()  # guests and hosts whose changes come first (`after`)
    build_on: BuildOn = BuildOn.CONTROLLER
    boot_once: bool = True  # reboot: boot the new system once, the old staying the default


@dataclass(frozen=True)
class GitOps:
    repo: str
    branch: str
    manifest: str
    interval_s: float
    apply: GitOpsApply
    allow_rewrites: bool
    require_signed: bool
    allowed_signers: Path | None = None
    # Roots the repository's manifest may name paths under (the controller's manifest only).
    allowed_paths: tuple[Path, ...] = ()
    # For an ssh repository: its pinned key (one of the two), a deploy key, a timeout.
    host_key: str | None = None
    known_hosts: Path | None = None
    identity: Path | None = None
    connect_timeout_s: float = 10.0


@dataclass(frozen=True)
class Builder:
    """A Nix remote builder (`[builders.<name>]`), reached over pinned SSH on port 22."""

    name: str
    user: str
    host: str
    host_key: str
    identity: Path | None
    systems: tuple[str, ...]
    max_jobs: int
    speed: int
    features: tuple[str, ...]


@dataclass(frozen=True)
class Manifest:
    path: Path
    digest: str  # sha256 of the manifest's bytes
    lab: Lab
    hypervisors: Mapping[str, Hypervisor] = field(default_factory=dict)
    kernels: Mapping[str, Kernel] = field(default_factory=dict)
    guests: Mapping[str, Guest] = field(default_factory=dict)
    hosts: Mapping[str, Host] = field(default_factory=dict)
    builders: Mapping[str, Builder] = field(default_factory=dict)
    gitops: GitOps | None = None
    drift_ignore: tuple[str, ...] = ()  # KIND.NAME.FIELD patterns: accepted drift
