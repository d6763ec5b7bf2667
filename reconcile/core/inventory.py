"""The lab's machines as operators reach them: `reconcile inventory`, `console`, `ssh`. Pure.

The manifest is the only source: nothing is probed. A host's address is its `ssh.target`;
a guest has one only when the manifest gives it an `ssh` table (disk guests); an imageless
guest has none, and none is guessed (its console is `reconcile console`).

Two renderings of the same entries, both stable (sorted, fixed field names):

- `ansible`: a YAML inventory, `all: children: <tag>: hosts: <name>: {ansible_host,
  ansible_port, ansible_user[, ansible_ssh_private_key_file]}` (machines without tags
  under `all: hosts:`), as `ansible-inventory -i FILE --list` reads it. Every key and
  string is written double-quoted (JSON's spelling, which YAML reads the same), so a name
  like `no` or `1e3` stays a string.
- `json`: `{"version": 1, "lab", "machines": {name: {kind, system, tags, [mode,
  hypervisor,] [ssh: {user, host, port[, identity]}]}}, "tags": {tag: [names]}}`.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from reconcile.core.desired import Guest, Manifest, Ssh
from reconcile.core.errors import ReconcileError

FORMATS = ("ansible", "json", "names")
VERSION = 1  # of the JSON document; a field removed or renamed is a new version


@dataclass(frozen=True)
class Machine:
    """One host or guest as the inventory lists it."""

    name: str
    kind: str  # "host" or "guest"
    system: str
    tags: tuple[str, ...]
    ssh: Ssh | None  # None: the manifest gives no address (never guessed)
    mode: str | None = None  # a guest's
    hypervisor: str | None = None  # a guest's


def machines(manifest: Manifest) -> list[Machine]:
    """Every host and guest, by name (names are unique across both)."""
    found = [
        Machine(h.name, "host", h.system, tuple(sorted(h.tags)), h.ssh)
        for h in manifest.hosts.values()
    ]
    found += [
        Machine(
            g.name,
            "guest",
            g.system,
            tuple(sorted(g.tags)),
            g.ssh,
            mode=g.mode.value,
            hypervisor=g.hypervisor,
        )
        for g in manifest.guests.values()
    ]
    return sorted(found, key=lambda m: m.name)


def groups(entries: Iterable[Machine]) -> dict[str, list[str]]:
    """Each tag with the names of the machines that carry it, sorted."""
    out: dict[str, list[str]] = {}
    for machine in entries:
        for tag in machine.tags:
            out.setdefault(tag, []).append(machine.name)
    return {tag: sorted(names) for tag, names in sorted(out.items())}


def render(manifest: Manifest, fmt: str) -> str:
    entries = machines(manifest)
    if fmt == "json":
        return render_json(manifest.lab.name, entries)
    if fmt == "ansible":
        return render_ansible(manifest.lab.name, entries)
    if fmt == "names":
        return "".join(f"{m.name}\n" for m in entries)
    raise ValueError(f"unknown inventory format {fmt!r}")


def _ssh_json(ssh: Ssh) -> dict[str, object]:
    target = ssh.target
    doc: dict[str, object] = {"user": target.user, "host": target.host, "port": target.port}
    if ssh.identity is not None:
        doc["identity"] = str(ssh.identity)
    return doc


def render_json(lab: str, entries: list[Machine]) -> str:
    listed: dict[str, dict[str, object]] = {}
    for m in entries:
        doc: dict[str, object] = {"kind": m.kind, "system": m.system, "tags": list(m.tags)}
        if m.kind == "guest":
            doc["mode"] = m.mode
            doc["hypervisor"] = m.hypervisor
        if m.ssh is not None:
            doc["ssh"] = _ssh_json(m.ssh)
        listed[m.name] = doc
    document = {"version": VERSION, "lab": lab, "machines": listed, "tags": groups(entries)}
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def ansible_vars(machine: Machine) -> dict[str, str | int]:
    """The connection variables Ansible needs for a machine: none without an address."""
    if machine.ssh is None:
        return {}
    target = machine.ssh.target
    found: dict[str, str | int] = {
        "ansible_host": target.host,  # IPv6 without brackets, as Ansible takes it
        "ansible_port": target.port,
        "ansible_user": target.user,
    }
    if machine.ssh.identity is not None:
        found["ansible_ssh_private_key_file"] = str(machine.ssh.identity)
    return found


def _scalar(value: str | int) -> str:
    # JSON's string spelling is a YAML double-quoted scalar: `no`, `1e3`, `null` stay strings
    return str(value) if isinstance(value, int) else json.dumps(value)


def _host_lines(entries: Iterable[Machine], indent: int) -> list[str]:
    pad = " " * indent
    lines = []
    for machine in entries:
        found = ansible_vars(machine)
        if not found:
            lines.append(f"{pad}{_scalar(machine.name)}: {{}}")
            continue
        lines.append(f"{pad}{_scalar(machine.name)}:")
        lines += [f"{pad}  {key}: {_scalar(value)}" for key, value in found.items()]
    return lines


def render_ansible(lab: str, entries: list[Machine]) -> str:
    """The YAML inventory. A tag named `all` adds no group: everything is in `all`."""
    by_name = {m.name: m for m in entries}
    tagged = {tag: names for tag, names in groups(entries).items() if tag != "all"}
    in_group = {name for names in tagged.values() for name in names}
    lines = [f"# Ansible inventory of lab {_scalar(lab)}, written by `reconcile inventory`", "all:"]
    untagged = [m for m in entries if m.name not in in_group]
    if untagged:
        lines += ["  hosts:", *_host_lines(untagged, 4)]
    if tagged:
        lines.append("  children:")
        for tag, names in tagged.items():
            lines += [f"    {_scalar(tag)}:", "      hosts:"]
            lines += _host_lines((by_name[n] for n in names), 8)
    if not entries:
        lines.append("  hosts: {}")
    return "\n".join(lines) + "\n"


# -- finding one machine by name --------------------------------------------------------


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    names = sorted(known)
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    listed = ", ".join(names) or "none"
    return (f"did you mean '{close[0]}'? " if close else "") + f"known: {listed}"


def guest(manifest: Manifest, name: str) -> Guest:
    """The guest called `name`, or an error that says what `name` is instead."""
    if name in manifest.guests:
        return manifest.guests[name]
    if name in manifest.hosts:
        raise ReconcileError(
            f"'{name}' is a host, not a guest: only guests have a serial console here",
            hint=f"reach it with `reconcile ssh {manifest.path} {name}`",
        )
    raise ReconcileError(
        f"no guest '{name}' in lab '{manifest.lab.name}'",
        hint=_did_you_mean(name, manifest.guests),
    )


def ssh_of(manifest: Manifest, name: str, learned_key: str | None = None) -> Ssh:
    """How to reach host or guest `name` over SSH, with its pinned key; an error otherwise.
    `learned_key`: the key a disk guest printed on its console at its first boot."""
    found: Mapping[str, object] = {**manifest.guests, **manifest.hosts}
    if name not in found:
        raise ReconcileError(
            f"no host or guest '{name}' in lab '{manifest.lab.name}'",
            hint=_did_you_mean(name, found),
        )
    if name in manifest.hosts:
        return manifest.hosts[name].ssh
    ssh = manifest.guests[name].ssh
    if ssh is None:
        raise ReconcileError(
            f"guest '{name}' has no ssh setting: reconcile knows no address for it",
            hint=f"an imageless guest is reached on its console: `reconcile console "
            f"{manifest.path} {name}` (only disk guests take an `ssh` table)",
        )
    if not ssh.host:
        raise ReconcileError(
            f"guest '{name}': its address is its DHCP lease, which `reconcile ssh` does not read",
            hint=f"`reconcile plan {manifest.path}` shows it; or give ssh.target",
        )
    if ssh.host_key is None and ssh.known_hosts is None and learned_key:
        return replace(ssh, host_key=learned_key)
    if ssh.host_key is None and ssh.known_hosts is None:
        raise ReconcileError(
            f"guest '{name}': its ssh setting pins no host key; refusing to connect",
            hint='add host_key = "ssh-ed25519 AAAA..." (from `ssh-keyscan HOST`, checked) '
            'or known_hosts = "path/to/known_hosts" to its ssh table',
        )
    return ssh
