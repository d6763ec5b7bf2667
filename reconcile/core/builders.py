"""Nix remote builders as Nix spells them: one `--builders` line per machine.

Pure. Nix's machine format is whitespace-separated fields: the store URI, systems, the SSH
key, max jobs, speed, supported and mandatory features (`-` for none), and the builder's
public host key in base64, which Nix pins (it writes its own known_hosts for the machine).
A kernel with a `builder` is compiled there by reconcile itself, over its own pinned SSH
(`builder_ssh`; adapters/kernel_builder.py), and the plan says so (`kernels_built_on`).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

from reconcile.core.desired import Builder, KernelBuild, Manifest, Ssh
from reconcile.core.errors import ReconcileError
from reconcile.core.ssh_target import SshTarget


def store_uri(builder: Builder) -> str:
    return SshTarget(builder.user, builder.host, 22).nix_store_uri


def machine_line(builder: Builder) -> str:
    identity = str(builder.identity) if builder.identity is not None else "-"
    if any(c.isspace() for c in identity):
        raise ReconcileError(
            f"builder '{builder.name}': its identity path has whitespace: {identity}",
            hint="Nix splits a builder's line on whitespace: move the key to a path without",
        )
    fields = (
        store_uri(builder),
        ",".join(builder.systems),
        identity,
        str(builder.max_jobs),
        str(builder.speed),
        ",".join(builder.features) or "-",
        "-",  # mandatory features: none
        base64.b64encode(builder.host_key.encode()).decode(),
    )
    return " ".join(fields)


def builders_option(builders: Iterable[Builder]) -> str:
    """The value of `nix build --builders`: the machines, `;`-separated."""
    return " ; ".join(machine_line(b) for b in builders)


def described(builder: Builder) -> str:
    """How the plan names where a build runs: `builder NAME (user@host)`."""
    return f"builder {builder.name} ({builder.user}@{builder.host})"


def kernels_built_on(manifest: Manifest, kernels: Iterable[str]) -> dict[str, str]:
    """Of `kernels` (names), those whose make runs on a builder, with where."""
    where = {}
    for name in kernels:
        spec = manifest.kernels[name].source
        if isinstance(spec, KernelBuild) and spec.builder is not None:
            where[name] = described(manifest.builders[spec.builder])
    return where


def builder_ssh(builder: Builder, timeout_s: float) -> Ssh:
    """The builder as an SSH target of reconcile's own (a kernel's make runs there): port 22,
    its pinned `host_key`, its identity (which has no passphrase), commands bounded by
    `timeout_s`."""
    return Ssh(
        user=builder.user,
        host=builder.host,
        port=22,
        host_key=builder.host_key,
        known_hosts=None,
        identity=builder.identity,
        connect_timeout_s=10.0,
        command_timeout_s=timeout_s,
        total_timeout_s=timeout_s,
    )
