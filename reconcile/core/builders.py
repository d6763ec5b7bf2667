"""Nix remote builders as Nix spells them: one `--builders` line per machine.

Pure. Nix's machine format is whitespace-separated fields: the store URI, systems, the SSH
key, max jobs, speed, supported and mandatory features (`-` for none), and the builder's
public host key in base64, which Nix pins (it writes its own known_hosts for the machine).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

from reconcile.core.desired import Builder
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
