"""Checks the schema cannot express: references, uniqueness, combinations.

One pure function over a schema-valid document with defaults applied; it returns every
finding at once so that a user fixes a manifest in one pass.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Any

from reconcile.core.desired import Manifest, PrebuiltKernel
from reconcile.core.gitops.git_url import Transport, transport
from reconcile.core.guests.libvirt_uri import Transport as HypervisorTransport
from reconcile.core.guests.libvirt_uri import UriRefused, parse_uri
from reconcile.core.manifest.guest_limits import modules_problem, param_problem, share_problem
from reconcile.core.manifest.schema import Finding
from reconcile.core.sshkeys import host_key_problem
from reconcile.core.statedir import location_problem
from reconcile.core.units import parse_duration

Json = Any

RESERVED_SHARE_TAGS = ("store", "modules")
BUILD_KEYS = ("ref", "config", "fragments", "set", "builder")
PREBUILT_KEYS = ("image", "modules", "initrd_modules")
DISK_ONLY_KEYS = ("disk", "ssh", "data_disks", "config_shares")
NETWORK_KINDS = ("libvirt", "bridge", "user")


def check_built(manifest: Manifest) -> list[Finding]:
    """Findings that need resolved paths (relative ones are relative to the manifest)."""
    findings = []
    if problem := location_problem(manifest.lab.state_dir):
        findings.append(
            Finding(
                ("lab", "state_dir"),
                problem,
                "give the lab a directory of its own, e.g. /var/lib/reconcile/<lab name>",
            )
        )
    state_dir = manifest.lab.state_dir
    for name, guest in manifest.guests.items():
        for index, share in enumerate(guest.shares):
            if problem := share_problem(share.source, state_dir):
                findings.append(
                    Finding(
                        ("guests", name, "shares", index, "source"),
                        problem,
                        "share a directory made for the guest, e.g. /srv/<lab>/<guest>",
                    )
                )
    for name, kernel in manifest.kernels.items():
        modules = kernel.source.modules if isinstance(kernel.source, PrebuiltKernel) else None
        if modules is not None and (problem := modules_problem(modules, state_dir)):
            findings.append(
                Finding(
                    ("kernels", name, "modules"),
                    problem,
                    "the image's own modules, e.g. /lib/modules/6.1.0-18-amd64",
                )
            )
    return findings


def _unknown(kind: str, name: str, known: list[str]) -> str:
    if not known:
        return f"no {kind} is defined: add a [{kind}.{name}] table"
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else f"defined {kind}: {', '.join(known)}"


def check(doc: dict[str, Json], raw: dict[str, Json]) -> list[Finding]:
    """Findings over `doc` (defaults applied); keys' presence is judged on `raw`."""
    return [
        *_check_hypervisors(doc, raw),
        *_check_kernels(raw),
        *_check_kernel_builders(doc),
        *_check_guests(doc),
        *_check_hosts(doc),
        *_check_after(doc),
        *_check_builders(doc),
        *_check_host_keys(raw),
        *_check_gitops(doc),
    ]


def _check_hypervisors(doc: dict[str, Json], raw: dict[str, Json]) -> Iterator[Finding]:
    """The URI is one reconcile opens (the schema's pattern says so too; this says why),
    and a qemu+ssh hypervisor's host key is pinned; a qemu-driver hypervisor has neither,
    and its guests join no libvirt network."""
    for name, hypervisor in doc.get("hypervisors", {}).items():
        path = ("hypervisors", name)
        if hypervisor["driver"] == "qemu":
            given = raw.get("hypervisors", {}).get(name, {})
            if hypervisor.get("build_on") == "hypervisor":
                yield Finding(
                    (*path, "build_on"),
                    "a qemu-driver hypervisor is this machine: its guests are built here",
                    "remove build_on",
                )
            for key in ("uri", "host_key", "known_hosts", "identity"):
                if key in given:
                    yield Finding(
                        (*path, key),
                        "a qemu-driver hypervisor runs its guests on this machine: "
                        "it takes no libvirt URI or SSH keys",
                        'remove it, or use driver = "libvirt" for a libvirt hypervisor',
                    )
            for guest, spec in doc.get("guests", {}).items():
                on = spec.get("hypervisor") or (name if len(doc["hypervisors"]) == 1 else "")
                if on == name and "network" in spec:
                    yield Finding(
                        ("guests", guest, "network"),
                        f"guest '{guest}' is on hypervisor '{name}' (driver qemu), "
                        "which has no libvirt networks",
                        "remove the network, or put the guest on a libvirt hypervisor",
                    )
            continue
        try:
            uri = parse_uri(hypervisor["uri"])
        except UriRefused as refused:
            yield Finding((*path, "uri"), refused.message, refused.hint)
            continue
        yield from _check_remote_guests(doc, name, uri.transport)
        if (
            hypervisor.get("build_on") == "hypervisor"
            and uri.transport is not HypervisorTransport.SSH
        ):
            yield Finding(
                (*path, "build_on"),
                "only a qemu+ssh:// hypervisor builds its guests' systems itself",
                "remove build_on, or reach it as qemu+ssh://root@HOST/system",
            )
        pins = [key for key in ("host_key", "known_hosts") if key in hypervisor]
        if uri.transport is HypervisorTransport.SSH:
            if not pins:
                yield Finding(
                    path,
                    "a qemu+ssh hypervisor's host key must be pinned: unknown keys are refused",
                    'add host_key = "ssh-ed25519 AAAA..." (from `ssh-keyscan HOST`) '
                    'or known_hosts = "path/to/known_hosts"',
                )
            elif len(pins) == 2:
                yield Finding(path, "give either `host_key` or `known_hosts`, not both")
        else:
            for key in ("host_key", "known_hosts", "identity"):
                if key in hypervisor:
                    yield Finding(
                        (*path, key),
                        "only a qemu+ssh:// hypervisor takes this key",
                        "libvirt reaches this one without SSH: remove it",
                    )


def _check_remote_guests(
    doc: dict[str, Json], hypervisor: str, transport: HypervisorTransport
) -> Iterator[Finding]:
    """What a guest boots from is copied to a remote hypervisor over SSH: a qemu+tls one
    has no SSH, and a disk guest's overlay and base image are not copied yet."""
    if transport is HypervisorTransport.LOCAL:
        return
    only_one = len(doc["hypervisors"]) == 1
    for guest, spec in doc.get("guests", {}).items():
        if (spec.get("hypervisor") or (hypervisor if only_one else "")) != hypervisor:
            continue
        if transport is HypervisorTransport.TLS:
            yield Finding(
                ("guests", guest, "hypervisor"),
                f"guest '{guest}' is on hypervisor '{hypervisor}' (qemu+tls), and reconcile "
                "copies what a remote guest boots from over SSH",
                "reach the hypervisor as qemu+ssh://root@HOST/system with a pinned host_key",
            )
        elif spec.get("mode") == "disk":
            yield Finding(
                ("guests", guest, "hypervisor"),
                f"disk guest '{guest}' is on remote hypervisor '{hypervisor}': this version "
                "runs disk guests on this machine's libvirt only",
                "put it on a local hypervisor (qemu:///system), or make it imageless",
            )


def _check_kernels(doc: dict[str, Json]) -> Iterator[Finding]:
    for name, kernel in doc.get("kernels", {}).items():
        path = ("kernels", name)
        if "source" in kernel and "image" in kernel:
            yield Finding(path, "give either `source` (build it) or `image` (prebuilt), not both")
        elif "source" not in kernel and "image" not in kernel:
            yield Finding(
                path,
                "a kernel needs `source` (a tree to build) or `image` (a prebuilt bzImage)",
                'e.g. source = "/srv/linux" or image = "/vmlinuz"',
            )
        elif "image" in kernel:
            for key in BUILD_KEYS:
                if key in kernel:
                    yield Finding((*path, key), "only kernels built from `source` take this key")
        else:
            for key in PREBUILT_KEYS:
                if key in kernel:
                    yield Finding((*path, key), "only prebuilt kernels (`image`) take this key")


def _check_kernel_builders(doc: dict[str, Json]) -> Iterator[Finding]:
    """A kernel's `builder` names one of `builders` (a prebuilt one is refused above)."""
    builders = sorted(doc.get("builders", {}))
    for name, kernel in doc.get("kernels", {}).items():
        builder = kernel.get("builder")
        if builder is not None and "source" in kernel and builder not in builders:
            yield Finding(
                ("kernels", name, "builder"),
                f"unknown builder '{builder}'",
                _unknown("builders", builder, builders),
            )


def _check_guests(doc: dict[str, Json]) -> Iterator[Finding]:
    hypervisors = sorted(doc.get("hypervisors", {}))
    kernels = sorted(doc.get("kernels", {}))
    macs: dict[str, str] = {}
    ports: dict[tuple[str, int], str] = {}
    for name, guest in doc.get("guests", {}).items():
        path = ("guests", name)
        hypervisor = guest.get("hypervisor")
        if hypervisor is None and len(hypervisors) != 1:
            yield Finding(
                path,
                "no `hypervisor` given and the lab has "
                + ("no hypervisors" if not hypervisors else f"{len(hypervisors)} of them"),
                'add [hypervisors.local] with uri = "qemu:///system"'
                if not hypervisors
                else f"set hypervisor to one of: {', '.join(hypervisors)}",
            )
        elif hypervisor is not None and hypervisor not in hypervisors:
            yield Finding(
                (*path, "hypervisor"),
                f"unknown hypervisor '{hypervisor}'",
                _unknown("hypervisors", hypervisor, hypervisors),
            )
        kernel = guest.get("kernel")
        if guest["mode"] == "imageless":
            if kernel is None:
                yield Finding(path, "an imageless guest needs a `kernel`", _kernel_hint(kernels))
            elif kernel not in kernels:
                yield Finding(
                    (*path, "kernel"),
                    f"unknown kernel '{kernel}'",
                    _unknown("kernels", kernel, kernels),
                )
            for key in DISK_ONLY_KEYS:
                if key in guest:
                    yield Finding((*path, key), 'only disk guests (mode = "disk") take this key')
            for index, param in enumerate(guest["kernel_params"]):
                if problem := param_problem(param):
                    yield Finding(
                        (*path, "kernel_params", index),
                        problem,
                        "the imageless boot is root=tmpfs, console=ttyS0 and the closure's "
                        "init=; boot a disk guest to choose them",
                    )
        elif kernel is not None:
            yield Finding(
                (*path, "kernel"),
                "only imageless guests boot an external kernel",
                "a disk guest boots the kernel of its own image; remove `kernel`",
            )
        if guest["mode"] == "disk":
            yield from _check_disk_guest(doc, path, guest)
        yield from _check_network(path, guest)
        tags: set[str] = set()
        shares = [("shares", i, x) for i, x in enumerate(guest.get("shares", []))]
        shares += [("config_shares", i, x) for i, x in enumerate(guest.get("config_shares", []))]
        for key, index, share in shares:
            tag = share["tag"]
            if tag in RESERVED_SHARE_TAGS:
                yield Finding(
                    (*path, key, index, "tag"),
                    f"tag '{tag}' is reserved",
                    "reconcile shares the Nix store as `store` and kernel modules as `modules`",
                )
            elif tag in tags:
                yield Finding((*path, key, index, "tag"), f"duplicate share tag '{tag}'")
            tags.add(tag)
        port = guest.get("network", {}).get("ssh_port")
        if port is not None:
            where = (hypervisor or (hypervisors[0] if hypervisors else ""), port)
            if where in ports:
                yield Finding(
                    (*path, "network", "ssh_port"),
                    f"port {port} is already forwarded to guest '{ports[where]}' on this "
                    "hypervisor",
                    "give each guest its own ssh_port",
                )
            ports[where] = name
        mac = guest.get("network", {}).get("mac")
        if mac is not None:
            if mac in macs:
                yield Finding(
                    (*path, "network", "mac"),
                    f"MAC address {mac} is already guest '{macs[mac]}''s",
                )
            macs[mac] = name
            if int(mac[:2], 16) & 1:
                yield Finding(
                    (*path, "network", "mac"),
                    "a multicast MAC address cannot be a NIC's",
                    "the first octet must be even, e.g. 52:54:00:...",
                )


def _check_network(path: tuple[str, ...], guest: dict[str, Json]) -> Iterator[Finding]:
    """Exactly one kind of NIC, with its companion key; imageless guests join libvirt's."""
    network = guest.get("network")
    if network is None:
        return
    where = (*path, "network")
    kinds = [k for k in NETWORK_KINDS if k in network]
    if len(kinds) != 1:
        yield Finding(
            where,
            "give exactly one of `libvirt`, `bridge` or `user`"
            + (f" (found {', '.join(kinds)})" if kinds else ""),
            'e.g. network = { libvirt = "default" } or { user = true, ssh_port = 2222 }',
        )
        return
    kind = kinds[0]
    if guest["mode"] == "imageless" and kind != "libvirt":
        yield Finding(
            (*where, kind),
            "an imageless guest's NIC joins a libvirt network",
            'use network = { libvirt = "default" }; bridges and user networking are for disk '
            "guests",
        )
    companions = {"bridge": "address", "user": "ssh_port"}
    for other, companion in companions.items():
        if companion in network and kind != other:
            yield Finding(
                (*where, companion), f"`{companion}` goes with `{other}`, not with `{kind}`"
            )
    if kind in companions and companions[kind] not in network:
        example = {"bridge": 'address = "192.0.2.10/24"', "user": "ssh_port = 2222"}[kind]
        yield Finding(
            where,
            f"a `{kind}` network needs `{companions[kind]}`",
            f"e.g. {example}" + (" (a free port on 127.0.0.1)" if kind == "user" else ""),
        )


def _check_disk_guest(
    doc: dict[str, Json], path: tuple[str, ...], guest: dict[str, Json]
) -> Iterator[Finding]:
    hypervisors = doc.get("hypervisors", {})
    name = guest.get("hypervisor") or (next(iter(hypervisors)) if len(hypervisors) == 1 else "")
    hypervisor = hypervisors.get(name, {})
    if hypervisor.get("driver", "libvirt") != "libvirt":
        yield Finding(
            (*path, "hypervisor"),
            f"disk guests run under libvirt; hypervisor '{name}' uses the "
            f"{hypervisor['driver']} driver",
            "give the guest a hypervisor with a libvirt `uri`",
        )
    if guest["update"] == "switch" and "ssh" not in guest:
        yield Finding(
            path,
            'a disk guest with update = "switch" needs `ssh`: a new system is copied and '
            "activated over it",
            'add ssh = { identity = "/path/to/key" }, or set update = "recreate"',
        )
    if "ssh" in guest and "network" not in guest and "target" not in guest["ssh"]:
        yield Finding(
            (*path, "ssh"),
            "a disk guest without `network` cannot be reached over SSH",
            "add network = { user = true, ssh_port = 2222 } (or a bridge or libvirt network), "
            "or give ssh.target",
        )
    seen: set[str] = set()
    for index, disk in enumerate(guest.get("data_disks", [])):
        if disk["name"] in seen:
            yield Finding(
                (*path, "data_disks", index, "name"), f"duplicate data disk '{disk['name']}'"
            )
        seen.add(disk["name"])


def _check_builders(doc: dict[str, Json]) -> Iterator[Finding]:
    if not doc["lab"].get("build_locally", True) and not doc.get("builders"):
        yield Finding(
            ("lab", "build_locally"),
            "nothing could build: build_locally is false and there are no builders",
            "add a [builders.<name>] table, or remove build_locally",
        )
    for name, builder in doc.get("builders", {}).items():
        if any(c.isspace() for c in builder.get("identity", "")):
            yield Finding(
                ("builders", name, "identity"),
                "a builder's identity path cannot hold whitespace (Nix splits its line on it)",
            )


def _check_after(doc: dict[str, Json]) -> Iterator[Finding]:
    """Each `after` names other guests and hosts of the manifest, and no order is a cycle."""
    kinds = {name: "hosts" for name in doc.get("hosts", {})}
    kinds.update((name, "guests") for name in doc.get("guests", {}))
    known = sorted(kinds)
    waits: dict[str, list[str]] = {}
    for kind in ("guests", "hosts"):
        for name, spec in doc.get(kind, {}).items():
            for index, other in enumerate(spec.get("after", [])):
                path = (kind, name, "after", index)
                if other == name:
                    yield Finding(
                        path, f"'{name}' cannot come after itself", "remove it from `after`"
                    )
                elif other not in kinds:
                    yield Finding(
                        path,
                        f"unknown guest or host '{other}'",
                        _unknown("guests and hosts", other, known),
                    )
                else:
                    waits.setdefault(name, []).append(other)
    for cycle in _cycles(waits):
        first = cycle[0]
        yield Finding(
            (kinds[first], first, "after"),
            "a cycle: " + " -> ".join([*cycle, first]),
            f"an order needs an end: remove '{cycle[1]}' from this `after`, "
            "or another link of the cycle",
        )


def _cycles(waits: dict[str, list[str]]) -> list[list[str]]:
    """The cycles a depth-first walk meets (one per edge back into its path), each from
    its smallest member. Iterative: a chain of thousands of machines is no recursion."""
    state: dict[str, int] = {}  # 1: on the current path, 2: walked
    found: list[list[str]] = []
    for root in sorted(waits):
        if root in state:
            continue
        path, state[root] = [root], 1
        stack = [iter(waits[root])]
        while stack:
            step = next(stack[-1], None)
            if step is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(step) == 1:
                cycle = path[path.index(step) :]
                start = cycle.index(min(cycle))
                found.append(cycle[start:] + cycle[:start])
            elif step not in state:
                path.append(step)
                state[step] = 1
                stack.append(iter(waits.get(step, ())))
    return found


def _kernel_hint(kernels: list[str]) -> str:
    if kernels:
        return f"set kernel to one of: {', '.join(kernels)}"
    return 'define one, e.g. [kernels.host] image = "/vmlinuz", and set kernel = "host"'


def _check_hosts(doc: dict[str, Json]) -> Iterator[Finding]:
    guests = doc.get("guests", {})
    for name, host in doc.get("hosts", {}).items():
        path = ("hosts", name)
        if name in guests:
            yield Finding(
                path,
                f"'{name}' is also a guest's name",
                "names must be unique across guests and hosts",
            )
        ssh = host["ssh"]
        if "passphrase_env" in ssh and "identity" not in ssh:
            yield Finding(
                (*path, "ssh", "passphrase_env"),
                "a passphrase is for an identity: give `identity` too",
            )
        if "host_key" in ssh and "known_hosts" in ssh:
            yield Finding((*path, "ssh"), "give either `host_key` or `known_hosts`, not both")
        elif "host_key" not in ssh and "known_hosts" not in ssh:
            yield Finding(
                (*path, "ssh"),
                "the host key must be pinned: unknown keys are refused",
                'add host_key = "ssh-ed25519 AAAA..." (from `ssh-keyscan HOST`) '
                'or known_hosts = "path/to/known_hosts"',
            )
        # The guard's wait covers the health checks' retries and the confirming login.
        needed = parse_duration(host["health_timeout"]) + parse_duration(ssh["connect_timeout"])
        if parse_duration(host["confirm_timeout"]) <= needed:
            yield Finding(
                (*path, "confirm_timeout"),
                f"must be longer than health_timeout plus ssh.connect_timeout ({needed:g}s): "
                "the host would roll back while its health checks are still being tried",
                f'e.g. confirm_timeout = "{int(needed) + 60}s"',
            )


def _check_gitops(doc: dict[str, Json]) -> Iterator[Finding]:
    gitops = doc.get("gitops")
    if not gitops:
        return
    if gitops["require_signed"] and "allowed_signers" not in gitops:
        yield Finding(
            ("gitops", "require_signed"),
            "commits must be signed (the default), so the keys to trust are needed: "
            "give `allowed_signers`",
            'allowed_signers = "allowed_signers" (lines of `PRINCIPAL ssh-ed25519 AAAA...`); '
            "or, to follow unsigned commits, say so: require_signed = false",
        )
    kind = transport(gitops["repo"])
    if kind is None:
        yield Finding(
            ("gitops", "repo"),
            f"not a repository address reconcile uses: {gitops['repo']!r}",
            "a path, or a file://, https://, http://, git:// or ssh:// URL, or user@host:path "
            "(remote helpers such as ext:: run commands and are refused)",
        )
    pins = [key for key in ("host_key", "known_hosts") if key in gitops]
    if kind is Transport.SSH and not pins:
        yield Finding(
            ("gitops", "repo"),
            "an ssh repository's host key must be pinned: unknown keys are refused",
            'add host_key = "ssh-ed25519 AAAA..." (from `ssh-keyscan HOST`) '
            'or known_hosts = "path/to/known_hosts" to [gitops]',
        )
    if len(pins) == 2:
        yield Finding(("gitops",), "give either `host_key` or `known_hosts`, not both")
    if kind is not Transport.SSH:
        for key in ("host_key", "known_hosts", "identity"):
            if key in gitops:
                yield Finding(("gitops", key), "only for an ssh repository (ssh:// or host:path)")


def _check_host_keys(node: Json, path: tuple[str | int, ...] = ()) -> Iterator[Finding]:
    """Every `host_key` anywhere in the manifest (hosts, guests, hypervisors, gitops)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "host_key" and isinstance(value, str):
                if problem := host_key_problem(value):
                    yield Finding(
                        (*path, key), problem, "copy the line from `ssh-keyscan HOST` whole"
                    )
            else:
                yield from _check_host_keys(value, (*path, key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _check_host_keys(item, (*path, index))
