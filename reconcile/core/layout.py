"""Where everything in a lab's state directory lives: the one value that names its paths.

Pure: `StateLayout(root)` names paths and touches nothing. Every module that reads or
writes under the state directory takes its paths from here (`Lab.layout`), never joins
them itself, so moving a file is a change of this module, and `tests/core/test_layout.py`
shows it. A path, once released, stays where it is: a running lab's files (its lock, GC
roots, views, console logs) must be found where an earlier reconcile left them.

Some entries are directories whose insides belong to the module that fills them, named
there: a kernel build's tree (`adapters/kernel_build.KernelJob`), the content-addressed
initrds (`adapters/initrd`), a guest's root links, one per closure and named by it
(`adapters/nix`), the GitOps copy (`adapters/git`), each run's ssh-agent (`adapters/agent`).
A file's own companions sit beside it, named by their owner: SQLite's `-wal` and `-shm`
and the history's open lock `history.sqlite.lock` (`adapters/history`), the atomic writes'
temporaries (`adapters/files`).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

NIX_STORE = Path("/nix/store")  # shared read-only with every guest (core/guests/shares.py)


@dataclass(frozen=True)
class StateLayout:
    """Every path under one lab's state directory `root`. Each directory is joined once per
    layout (`Lab.layout` is one per lab), and a view once per source: a no-op plan of 1000
    guests asks for a console log, GC roots and shares per guest."""

    root: Path

    @functools.cached_property
    def mark(self) -> Path:
        # the lab's name: written when reconcile makes the directory, proof that it is its own
        return self.root / ".reconcile-lab"

    @functools.cached_property
    def lock(self) -> Path:
        # the lab's lock (flock) for apply and GitOps, holding pid, host, start and argv
        return self.root / "lock"

    @functools.cached_property
    def history(self) -> Path:
        # the run history (SQLite): runs, drift observations, since-when timestamps
        return self.root / "history.sqlite"

    @functools.cached_property
    def eval_cache(self) -> Path:
        # installable -> toplevel out path, valid for one flake narHash (JSON)
        return self.root / "eval-cache.json"

    @functools.cached_property
    def kernel_digests(self) -> Path:
        # each prebuilt kernel image's sha256, by device, inode, size, mtime and ctime (JSON)
        return self.root / "kernel-digests.json"

    def parsed_domains(self, hypervisor: str) -> Path:
        # the facts of the hypervisor's domain XML already parsed, by its sha256 (marshal)
        return self.root / "parsed-domains" / hypervisor

    @functools.cached_property
    def kernels(self) -> Path:
        # the kernel builds, one directory per kernel and inputs key, each with its lock
        return self.root / "kernels"

    def kernel_build(self, name: str, key: str) -> Path:
        # kernel `name` built from the inputs that hash to `key` (src, build/, bzImage, ...)
        return self.kernels / f"{name}-{key}"

    def kernel_build_lock(self, build: Path) -> Path:
        # the lock of build directory `build`: beside it, so removing it never removes a held lock
        return self.kernels / f".{build.name}.lock"

    @functools.cached_property
    def placed_kernels(self) -> Path:
        # on a remote hypervisor only: the kernels its guests boot, copied there from the
        # controller, one directory per kernel digest (core/guests/placement.py)
        return self.root / "placed-kernels"

    def placed_kernel(self, digest: str) -> Path:
        # a kernel as placed on a remote hypervisor: `vmlinuz` and `modules/<release>`
        return self.placed_kernels / digest[:32]

    @functools.cached_property
    def gcroots(self) -> Path:
        # the guests' GC roots, one directory per guest
        return self.root / "gcroots"

    def gcroot(self, guest: str) -> Path:
        # guest's root links, one per closure its definitions boot, each registered with Nix
        return self.gcroots / guest

    @functools.cached_property
    def guests(self) -> Path:
        # the guests' own files, one directory per guest
        return self.root / "guests"

    def guest_dir(self, guest: str) -> Path:
        # guest's own files
        return self.guests / guest

    def serial_log(self, guest: str) -> Path:
        # guest's serial console, written by virtlogd, read for the readiness line
        return self.guests.joinpath(guest, "serial.log")

    def overlay(self, guest: str) -> Path:
        # a disk guest's system disk: a qcow2 overlay on its base image (wiped by a recreate)
        return self.guests.joinpath(guest, "disk.qcow2")

    def data_disk(self, guest: str, disk: str) -> Path:
        # a disk guest's data disk: kept across a recreate, removed when the guest is pruned
        return self.guests.joinpath(guest, f"data-{disk}.qcow2")

    def guest_host_key(self, guest: str) -> Path:
        # the SSH host key a disk guest printed on its console at its first boot (pinned)
        return self.guests.joinpath(guest, "ssh_host_key.pub")

    @functools.cached_property
    def initrd_dir(self) -> Path:
        # the early-module initrds, content-addressed: `<key>.img` and `<key>.img.sha256`
        return self.root / "initrd"

    @functools.cached_property
    def store_view(self) -> Path:
        # the read-only view of /nix/store (where earlier versions kept it: their bind is checked)
        return self.root / "store"

    @functools.cached_property
    def views_dir(self) -> Path:
        # the read-only views of every other read-only share, one per source directory
        return self.root / "views"

    def view(self, source: Path) -> Path:
        # where the read-only view of `source` is mounted (a mount point)
        return _view(self, source)

    @functools.cached_property
    def views_lock(self) -> Path:
        # flock held while views are made (plan and drift take no lab lock)
        return self.root / "views.lock"

    @functools.cached_property
    def generations(self) -> Path:
        # each guest's generations: <guest>.json (number, toplevel, since) and <guest>/<n>
        # GC roots (adapters/generations.py)
        return self.root / "generations"

    @functools.cached_property
    def pins(self) -> Path:
        # guests `reconcile rollback` pinned to a generation: guest -> toplevel
        return self.root / "pins.json"

    def qemu_dir(self, hypervisor: str) -> Path:
        # a qemu-driver hypervisor's guests, one run directory each (adapters/qemu.py)
        return self.root / "qemu" / hypervisor

    @functools.cached_property
    def ssh_dir(self) -> Path:
        # OpenSSH's files for hosts: pinned keys and each run's ssh-agent (`agent.*/`)
        return self.root / "ssh"

    def host_known_hosts(self, host: str) -> Path:
        # the known_hosts line pinning host's `host_key`, for nix copy; `reconcile ssh` writes
        # the same line here (or the host's own lines of its `known_hosts`) for OpenSSH
        return self.ssh_dir / f"{host}.known_hosts"

    def hypervisor_known_hosts(self, hypervisor: str) -> Path:
        # the known_hosts line pinning a qemu+ssh hypervisor's `host_key`, for OpenSSH and Nix
        return self.ssh_dir / f"hypervisor.{hypervisor}.known_hosts"

    def builder_known_hosts(self, builder: str) -> Path:
        # the known_hosts line pinning a builder's `host_key`, for OpenSSH (kernel builds there)
        return self.ssh_dir / f"builder.{builder}.known_hosts"

    @functools.cached_property
    def gitops_dir(self) -> Path:
        # the GitOps copy of the lab's repository: `git/` (bare), `tree/`, `ssh_known_hosts`
        return self.root / "gitops"

    @functools.cached_property
    def reports_dir(self) -> Path:
        # drift reports of GitOps cycles: the installed timer's default --report-dir
        return self.root / "reports"

    @functools.cached_property
    def signatures(self) -> tuple[Path, ...]:
        # entries only reconcile makes: one in a directory without the mark is an older reconcile's
        return (self.history, self.gcroots, self.kernels, self.eval_cache)


@functools.lru_cache(maxsize=4096)
def _view(layout: StateLayout, source: Path) -> Path:
    """One per source directory, named by a digest of its path: a no-op plan of 1000 guests
    asks once per share."""
    if source == NIX_STORE:
        return layout.store_view
    return layout.views_dir / hashlib.sha256(str(source).encode()).hexdigest()[:16]
