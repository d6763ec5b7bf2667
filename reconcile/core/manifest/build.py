"""From a valid, defaulted document to the frozen desired state."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from reconcile.core import desired as d
from reconcile.core.units import parse_duration, parse_size

Json = Any


def resolve_path(base: Path, text: str) -> Path:
    """A manifest path: `~` expanded, relative ones taken from the manifest's directory."""
    # os.path, not Path.expanduser: that raises for an unknown `~user` (the schema refuses
    # those) or a home it cannot find; this leaves the text as it is.
    path = Path(os.path.expanduser(text))
    return path if path.is_absolute() else base / path


def flake_reference(base: Path, text: str) -> str:
    """A flake reference; a local directory becomes `path:` so untracked files count."""
    if ":" in text.split("/", 1)[0] and not text.startswith(("/", ".", "~")):
        return text
    return f"path:{resolve_path(base, text)}"


def build(doc: dict[str, Json], manifest: Path, digest: str) -> d.Manifest:
    base = manifest.parent
    lab = doc["lab"]
    state_dir = lab["state_dir"].replace("<name>", lab["name"])
    hypervisors = {
        name: d.Hypervisor(
            name=name,
            uri=h["uri"],
            accel=d.Accel(h["accel"]),
            driver=h["driver"],
            host_key=h.get("host_key"),
            known_hosts=resolve_path(base, h["known_hosts"]) if "known_hosts" in h else None,
            identity=resolve_path(base, h["identity"]) if "identity" in h else None,
            build_on=d.BuildOn(h.get("build_on", "controller")),
        )
        for name, h in doc.get("hypervisors", {}).items()
    }
    only_hypervisor = next(iter(hypervisors)) if len(hypervisors) == 1 else ""
    return d.Manifest(
        path=manifest,
        digest=digest,
        lab=d.Lab(
            name=lab["name"],
            flake=flake_reference(base, lab["flake"]),
            state_dir=resolve_path(base, state_dir),
            description=lab.get("description", ""),
            eval_timeout_s=parse_duration(lab["eval_timeout"]),
            build_timeout_s=parse_duration(lab["build_timeout"]),
            lock_warn_after_s=parse_duration(lab["lock_warn_after"]),
            generations=lab["generations"],
            build_locally=lab["build_locally"],
        ),
        hypervisors=hypervisors,
        kernels={name: _kernel(base, name, k) for name, k in doc.get("kernels", {}).items()},
        guests={
            name: _guest(base, name, g, only_hypervisor)
            for name, g in sorted(doc.get("guests", {}).items())
        },
        hosts={name: _host(base, name, h) for name, h in sorted(doc.get("hosts", {}).items())},
        builders={n: _builder(base, n, b) for n, b in sorted(doc.get("builders", {}).items())},
        gitops=_gitops(base, doc["gitops"]) if "gitops" in doc else None,
        drift_ignore=tuple(doc.get("drift", {}).get("ignore", ())),
    )


def _kernel(base: Path, name: str, k: dict[str, Json]) -> d.Kernel:
    if "image" in k:
        return d.Kernel(
            name=name,
            source=d.PrebuiltKernel(
                image=resolve_path(base, k["image"]),
                modules=resolve_path(base, k["modules"]) if "modules" in k else None,
                initrd_modules=tuple(k["initrd_modules"]),
            ),
        )
    return d.Kernel(
        name=name,
        source=d.KernelBuild(
            source=resolve_path(base, k["source"]),
            ref=k.get("ref"),
            config=k["config"],
            fragments=tuple(resolve_path(base, f) for f in k["fragments"]),
            options=tuple(sorted(k["set"].items())),
            builder=k.get("builder"),
        ),
    )


def _ssh(base: Path, s: dict[str, Json]) -> d.Ssh:
    user, _, host = s["target"].rpartition("@")
    return d.Ssh(
        user=user or "root",
        host=host.strip("[]"),
        port=s["port"],
        host_key=s.get("host_key"),
        known_hosts=resolve_path(base, s["known_hosts"]) if "known_hosts" in s else None,
        identity=resolve_path(base, s["identity"]) if "identity" in s else None,
        connect_timeout_s=parse_duration(s["connect_timeout"]),
        command_timeout_s=parse_duration(s["command_timeout"]),
        total_timeout_s=parse_duration(s["total_timeout"]),
        passphrase_env=s.get("passphrase_env"),
    )


def _network(n: dict[str, Json]) -> d.Network:
    """Semantics checked that exactly one kind is given, with its companion key."""
    if "bridge" in n:
        return d.Network(d.NetworkKind.BRIDGE, n["bridge"], n.get("mac"), address=n["address"])
    if n.get("user"):
        return d.Network(d.NetworkKind.USER, "", n.get("mac"), ssh_port=n["ssh_port"])
    return d.Network(d.NetworkKind.LIBVIRT, n["libvirt"], n.get("mac"))


def _disk(disk: dict[str, Json]) -> d.Disk:
    return d.Disk(
        size_bytes=parse_size(disk["size"]),
        image=disk.get("image"),
        format=d.DiskFormat(disk["format"]),
    )


def _guest_ssh(base: Path, s: dict[str, Json], network: d.Network | None) -> d.Ssh:
    """A disk guest's SSH: its address follows from the network (the lease of a libvirt
    network is only known once observed: `host` stays empty until then)."""
    if "target" in s:
        return _ssh(base, s)
    host, port = "", 22
    if network is not None and network.kind is d.NetworkKind.USER:
        host, port = "127.0.0.1", network.ssh_port or 22
    elif network is not None and network.address is not None:
        host = network.address.partition("/")[0]
    target = {**s, "target": f"{s['user']}@{host or 'unknown.invalid'}", "port": port}
    # (the address of a libvirt network's guest is its DHCP lease, known once observed)
    ssh = _ssh(base, target)
    return ssh if host else replace(ssh, host="")


def _guest(base: Path, name: str, g: dict[str, Json], only_hypervisor: str) -> d.Guest:
    network = _network(g["network"]) if "network" in g else None
    disk = g.get("disk")
    if disk is None and g["mode"] == "disk":
        disk = {"size": "20GiB", "format": "qcow2"}  # the schema's defaults of `disk`
    ssh = None
    if "ssh" in g:
        ssh = _guest_ssh(base, g["ssh"], network)
    return d.Guest(
        name=name,
        mode=d.GuestMode(g["mode"]),
        system=g["system"],
        hypervisor=g.get("hypervisor", only_hypervisor),
        kernel=g.get("kernel"),
        kernel_params=tuple(g["kernel_params"]),
        memory_mib=parse_size(g["memory"]) // (1 << 20),
        vcpus=g["vcpus"],
        tags=tuple(g["tags"]),
        shares=tuple(
            d.Share(tag=s["tag"], source=resolve_path(base, s["source"]), writable=s["writable"])
            for s in g["shares"]
        ),
        network=network,
        disk=_disk(disk) if disk else None,
        update=d.DiskUpdate(g["update"]),
        ssh=ssh,
        restart=d.RestartPolicy(g["restart"]),
        state=d.GuestState(g["state"]),
        boot_timeout_s=parse_duration(g["boot_timeout"]),
        shutdown_timeout_s=parse_duration(g["shutdown_timeout"]),
        protect=g["protect"],
        after=tuple(g["after"]),
        data_disks=tuple(
            d.DataDisk(x["name"], parse_size(x["size"])) for x in g.get("data_disks", [])
        ),
        config_shares=tuple(
            d.ConfigShare(x["tag"], x["source"]) for x in g.get("config_shares", [])
        ),
    )


def _builder(base: Path, name: str, b: dict[str, Json]) -> d.Builder:
    user, _, host = b["target"].rpartition("@")
    return d.Builder(
        name=name,
        user=user or "root",
        host=host.strip("[]"),
        host_key=b["host_key"],
        identity=resolve_path(base, b["identity"]) if "identity" in b else None,
        systems=tuple(b["systems"]),
        max_jobs=b["max_jobs"],
        speed=b["speed"],
        features=tuple(b["features"]),
    )


def _host(base: Path, name: str, h: dict[str, Json]) -> d.Host:
    health = tuple(
        d.HealthCheck(kind=kind, value=tuple(value) if isinstance(value, list) else value)
        for check in h["health"]
        for kind, value in check.items()
    )
    return d.Host(
        name=name,
        system=h["system"],
        ssh=_ssh(base, h["ssh"]),
        activation=d.Activation(h["activation"]),
        reboot=h["reboot"],
        boot_once=h["boot_once"],
        health=health,
        health_timeout_s=parse_duration(h["health_timeout"]),
        confirm_timeout_s=parse_duration(h["confirm_timeout"]),
        tags=tuple(h["tags"]),
        after=tuple(h["after"]),
        build_on=d.BuildOn(h["build_on"]),
    )


def _gitops(base: Path, g: dict[str, Json]) -> d.GitOps:
    repo = g["repo"]
    if ":" not in repo and not repo.startswith("/"):  # a path, relative to the manifest
        repo = str(resolve_path(base, repo))
    return d.GitOps(
        repo=repo,
        branch=g["branch"],
        manifest=g["manifest"],
        interval_s=parse_duration(g["interval"]),
        apply=d.GitOpsApply(g["apply"]),
        allow_rewrites=g["allow_rewrites"],
        require_signed=g["require_signed"],
        allowed_signers=(
            resolve_path(base, g["allowed_signers"]) if "allowed_signers" in g else None
        ),
        allowed_paths=tuple(resolve_path(base, p) for p in g["allowed_paths"]),
        host_key=g.get("host_key"),
        known_hosts=resolve_path(base, g["known_hosts"]) if "known_hosts" in g else None,
        identity=resolve_path(base, g["identity"]) if "identity" in g else None,
        connect_timeout_s=parse_duration(g["connect_timeout"]),
    )
