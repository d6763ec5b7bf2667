"""From a valid, defaulted document to the frozen desired state."""

from __future__ import annotations

import os
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
        ),
        hypervisors=hypervisors,
        kernels={name: _kernel(base, name, k) for name, k in doc.get("kernels", {}).items()},
        guests={
            name: _guest(base, name, g, only_hypervisor)
            for name, g in sorted(doc.get("guests", {}).items())
        },
        hosts={name: _host(base, name, h) for name, h in sorted(doc.get("hosts", {}).items())},
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


def _guest(base: Path, name: str, g: dict[str, Json], only_hypervisor: str) -> d.Guest:
    network = g.get("network")
    disk = g.get("disk")
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
        network=d.Network(libvirt=network["libvirt"], mac=network.get("mac")) if network else None,
        disk=d.Disk(size_bytes=parse_size(disk["size"]), image=disk.get("image")) if disk else None,
        update=d.DiskUpdate(g["update"]),
        ssh=_ssh(base, g["ssh"]) if "ssh" in g else None,
        restart=d.RestartPolicy(g["restart"]),
        state=d.GuestState(g["state"]),
        boot_timeout_s=parse_duration(g["boot_timeout"]),
        shutdown_timeout_s=parse_duration(g["shutdown_timeout"]),
        protect=g["protect"],
        after=tuple(g["after"]),
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
        health=health,
        health_timeout_s=parse_duration(h["health_timeout"]),
        confirm_timeout_s=parse_duration(h["confirm_timeout"]),
        tags=tuple(h["tags"]),
        after=tuple(h["after"]),
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
