"""Where a guest's boot files are on its hypervisor: here, or copied to a remote one.

Pure. A guest on this machine's libvirt (or the qemu driver) boots from the controller's own
files. A guest on a `qemu+ssh://` hypervisor boots from that machine's: its closure is
copied into the hypervisor's store, and everything else lives in the lab's state directory
there, at the same paths as here (initrds, the read-only views, GC roots, the serial log).
The one path that differs is the kernel's: a prebuilt image is a controller file (its
digest is taken here), so a remote guest boots a copy kept by digest in
`placed-kernels/<digest>/` (`vmlinuz`, `modules/<release>`), and the definition names it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from reconcile.core.desired import Hypervisor, Ssh
from reconcile.core.guests.imageless import BootKernel
from reconcile.core.guests.libvirt_uri import Transport, UriRefused, parse_uri
from reconcile.core.guests.observed import HypervisorObservation
from reconcile.core.layout import StateLayout

# How long the hypervisor's own commands may take (copying a modules tree is one of them).
CONNECT_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 600.0


def is_remote(hypervisor: Hypervisor) -> bool:
    """Whether the guests of `hypervisor` run on another machine reached over SSH."""
    if hypervisor.driver != "libvirt":
        return False
    try:
        return parse_uri(hypervisor.uri).transport is Transport.SSH
    except UriRefused:
        return False


def hypervisor_ssh(hypervisor: Hypervisor) -> Ssh:
    """The pinned SSH login to a qemu+ssh hypervisor, as libvirt's own connection uses."""
    target = parse_uri(hypervisor.uri).ssh_target
    return Ssh(
        user=target.user,
        host=target.host,
        port=target.port,
        host_key=hypervisor.host_key,
        known_hosts=hypervisor.known_hosts,
        identity=hypervisor.identity,
        connect_timeout_s=CONNECT_TIMEOUT_S,
        command_timeout_s=COMMAND_TIMEOUT_S,
    )


def placed_kernel(layout: StateLayout, kernel: BootKernel) -> BootKernel:
    """`kernel` as a remote hypervisor holds it: copied under the state directory by digest."""
    home = layout.placed_kernel(kernel.digest)
    return BootKernel(
        image=home / "vmlinuz",
        digest=kernel.digest,
        modules=home / "modules" / kernel.modules.name,
        early_modules=kernel.early_modules,
    )


def stale_copies(
    layout: StateLayout,
    observation: HypervisorObservation,
    present: Iterable[str],
    wanted: Iterable[BootKernel],
) -> tuple[Path, ...]:
    """The kernel copies on a remote hypervisor (`present`: the names in its
    `placed-kernels/`) that no persistent or live definition there boots and no guest of
    the manifest will (for --prune). None while the hypervisor or any domain on it is
    unknown: a failed probe is never absence."""
    if observation.domains is None or observation.unknown:
        return ()
    home = layout.placed_kernels
    keep = {k.image.parent.name for k in wanted if k.image.parent.parent == home}
    for domain in observation.domains.values():
        for facts in (domain.config, domain.live):
            if facts is not None and facts.kernel and Path(facts.kernel).parent.parent == home:
                keep.add(Path(facts.kernel).parent.name)
    # an interrupted copy (`.part`) is booted by nothing: it goes too
    return tuple(home / name for name in sorted(present) if name not in keep)
