"""The machine a hypervisor runs on, as its guests' boot files need it: this one, or a remote
one over pinned SSH (adapters/remote_hypervisor.py).

An imageless guest's performer asks its hypervisor's machine to hold the closure, the
kernel and the initrd its definition names, to make its read-only views and GC roots, and
to show its serial log. On this machine the files are already where the definition says,
so only views, roots and the log are work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol

from reconcile.adapters import console, nix, views
from reconcile.core.desired import Hypervisor, Lab
from reconcile.core.guests.imageless import BootKernel
from reconcile.core.guests.placement import hypervisor_ssh, is_remote
from reconcile.core.guests.shares import View
from reconcile.core.layout import StateLayout
from reconcile.core.plan.diff import MachineFacts


class Machine(Protocol):
    remote: bool

    def observe(self, views: Sequence[View], layout: StateLayout) -> MachineFacts:
        """Its views' states, its guests' GC root links and its kernel copies."""
        ...

    def read_console(self, path: Path) -> str: ...

    def show_console(
        self,
        path: Path,
        *,
        lines: int,
        follow: bool,
        emit: Callable[[bytes], None],
        note: Callable[[str], None],
    ) -> None:
        """`reconcile console`: the last `lines` lines, then (with `follow`) what comes."""
        ...

    def put_closure(self, toplevel: str) -> None: ...

    def put_kernel(self, image: Path, modules: Path, placed: BootKernel) -> None: ...

    def put_file(self, path: Path) -> None: ...

    def ensure_views(self, views: Iterable[View], layout: StateLayout) -> None: ...

    def sync_gc_roots(self, directory: Path, targets: set[str]) -> None: ...

    def remove_kernel_copy(self, directory: Path) -> None: ...

    def fresh_console(self, path: Path) -> None: ...

    def close(self) -> None: ...


class LocalMachine:
    """This machine: the controller's store and state directory are the hypervisor's."""

    remote = False

    def __init__(self, views_lock: Path) -> None:
        self.views_lock = views_lock

    def observe(self, wanted: Sequence[View], layout: StateLayout) -> MachineFacts:
        return MachineFacts(views.observe(wanted), nix.observe_gc_roots(layout.gcroots))

    def read_console(self, path: Path) -> str:
        try:
            return path.read_text(errors="replace")
        except OSError:
            return ""

    def show_console(
        self,
        path: Path,
        *,
        lines: int,
        follow: bool,
        emit: Callable[[bytes], None],
        note: Callable[[str], None],
    ) -> None:
        console.follow(path, lines=lines, keep_following=follow, emit=emit, note=note)

    def put_closure(self, toplevel: str) -> None:
        pass  # built here

    def put_kernel(self, image: Path, modules: Path, placed: BootKernel) -> None:
        pass  # the definition names the controller's own files

    def put_file(self, path: Path) -> None:
        pass  # made here

    def ensure_views(self, wanted: Iterable[View], layout: StateLayout) -> None:
        views.ensure(self.views_lock, wanted)

    def sync_gc_roots(self, directory: Path, targets: set[str]) -> None:
        nix.sync_gc_roots(directory, targets)

    def remove_kernel_copy(self, directory: Path) -> None:
        raise AssertionError("this machine's guests boot the controller's kernels: no copies")

    def fresh_console(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)

    def close(self) -> None:
        pass


def machine_for(hypervisor: Hypervisor, lab: Lab) -> Machine:
    """The machine `hypervisor`'s guests run on (a remote one connects on first use)."""
    layout = lab.layout
    if not is_remote(hypervisor):
        return LocalMachine(layout.views_lock)
    # fabric and paramiko (~60 ms) only for a lab with a remote hypervisor
    from reconcile.adapters.deploy import known_hosts_file  # noqa: PLC0415
    from reconcile.adapters.remote_hypervisor import RemoteMachine  # noqa: PLC0415

    ssh = hypervisor_ssh(hypervisor)
    pin = known_hosts_file(ssh, layout.hypervisor_known_hosts(hypervisor.name))
    return RemoteMachine(hypervisor.name, ssh, pin)
