"""Which host paths a manifest from a GitOps repository may name. Pure.

A manifest read from the repository's checkout is trusted only as far as the controller's
own manifest says: every path it names must lie under one of `gitops.allowed_paths`
(resolved, symlinks and all, by the caller). Data that reconcile or Nix only reads may also
lie inside the checkout; what runs on the host or is handed to it never may: a kernel
`source` (its Makefile runs during plan), a kernel image and modules (booted and shared
while the checkout moves under them), shares (handed to guests), SSH identities (a secret
has no place in a repository).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from reconcile.core.desired import KernelBuild, Manifest, PrebuiltKernel
from reconcile.core.errors import Problem
from reconcile.core.manifest import located_problems
from reconcile.core.manifest.schema import Finding

KeyPath = tuple[str | int, ...]


class Use(StrEnum):
    DATA = "data"  # read by reconcile or evaluated by Nix: the checkout is fine
    HOST = "host"  # runs on, or is handed to, the host or its guests: allowed roots only


@dataclass(frozen=True)
class NamedPath:
    key: KeyPath  # where the manifest names it, e.g. ("kernels", "x", "source")
    path: Path  # as the manifest named it, resolved against its directory
    use: Use
    why: str  # what it is for, for the message


@dataclass(frozen=True)
class Violation:
    key: KeyPath
    message: str
    hint: str


def named_paths(manifest: Manifest) -> list[NamedPath]:
    """Every host path `manifest` names, with what it is used for."""
    out: list[NamedPath] = []
    flake = _flake_path(manifest.lab.flake)
    if flake is not None:
        out.append(NamedPath(("lab", "flake"), flake, Use.DATA, "the flake"))
    for name, hypervisor in manifest.hypervisors.items():
        out += _key_paths(("hypervisors", name), hypervisor.known_hosts, hypervisor.identity)
    for name, kernel in manifest.kernels.items():
        key: KeyPath = ("kernels", name)
        match kernel.source:
            case KernelBuild() as build:
                out.append(
                    NamedPath(
                        (*key, "source"),
                        build.source,
                        Use.HOST,
                        "a kernel tree (its Makefile runs on this host)",
                    )
                )
                if "/" in build.config or not build.config.endswith("config"):
                    out.append(
                        NamedPath((*key, "config"), Path(build.config), Use.DATA, "a config")
                    )
                for i, fragment in enumerate(build.fragments):
                    out.append(NamedPath((*key, "fragments", i), fragment, Use.DATA, "a fragment"))
            case PrebuiltKernel() as prebuilt:
                out.append(NamedPath((*key, "image"), prebuilt.image, Use.HOST, "a kernel image"))
                if prebuilt.modules is not None:
                    out.append(
                        NamedPath((*key, "modules"), prebuilt.modules, Use.HOST, "kernel modules")
                    )
    for name, guest in manifest.guests.items():
        for i, share in enumerate(guest.shares):
            out.append(
                NamedPath(
                    ("guests", name, "shares", i, "source"),
                    share.source,
                    Use.HOST,
                    "a directory shared with a guest",
                )
            )
        if guest.ssh is not None:
            out += _key_paths(("guests", name, "ssh"), guest.ssh.known_hosts, guest.ssh.identity)
    for name, host in manifest.hosts.items():
        out += _key_paths(("hosts", name, "ssh"), host.ssh.known_hosts, host.ssh.identity)
    if manifest.gitops is not None:
        g = manifest.gitops
        for key_name, path in (
            ("allowed_signers", g.allowed_signers),
            ("known_hosts", g.known_hosts),
        ):
            if path is not None:
                out.append(NamedPath(("gitops", key_name), path, Use.DATA, "a key list"))
        if g.identity is not None:
            out.append(NamedPath(("gitops", "identity"), g.identity, Use.HOST, "an SSH identity"))
    return out


def _key_paths(key: KeyPath, known_hosts: Path | None, identity: Path | None) -> list[NamedPath]:
    out = []
    if known_hosts is not None:
        out.append(NamedPath((*key, "known_hosts"), known_hosts, Use.DATA, "a known_hosts file"))
    if identity is not None:
        out.append(NamedPath((*key, "identity"), identity, Use.HOST, "an SSH identity"))
    return out


def _flake_path(flake: str) -> Path | None:
    """The local directory of a flake reference, or None for a remote one."""
    for prefix in ("path:", "git+file://", "file://", "git+file:", "file:"):
        if flake.startswith(prefix):
            return Path(flake.removeprefix(prefix).split("?", 1)[0].split("#", 1)[0])
    if flake.startswith("/"):
        return Path(flake.split("?", 1)[0].split("#", 1)[0])
    return None


def _under(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def judge(
    named: Sequence[NamedPath],
    real: Mapping[Path, Path],
    *,
    roots: Sequence[Path],
    checkout: Path,
    copy: Path,
) -> list[Violation]:
    """What in `named` leaves the allowed places. `real` maps each named path (and each
    root, the checkout and the copy) to its real path, symlinks resolved; `checkout` is the
    checked-out tree, `copy` the whole git copy around it (repository and tree)."""
    allowed = [real[r] for r in roots]
    tree, whole = real[checkout], real[copy]
    shown = ", ".join(str(r) for r in roots) or "none"
    out = []
    for item in named:
        where = real[item.path]
        resolved = f" (resolves to {where})" if where != item.path else ""
        if item.use is Use.HOST and _under(where, [whole]):
            out.append(
                Violation(
                    item.key,
                    f"{item.why} cannot come from the repository's checkout: {item.path}{resolved}",
                    "put it in a directory the controller's gitops.allowed_paths names, outside "
                    "the repository; only data reconcile reads (fragments, known_hosts, the "
                    "flake) may live in the repository",
                )
            )
        elif _under(where, allowed) or (item.use is Use.DATA and _under(where, [tree])):
            continue
        else:
            out.append(
                Violation(
                    item.key,
                    f"{item.path}{resolved} is outside the paths the controller allows "
                    f"(gitops.allowed_paths: {shown})",
                    "add its directory to gitops.allowed_paths in the controller's manifest, "
                    "or move it there",
                )
            )
    return out


def problems(text: str, file: Path, violations: Sequence[Violation]) -> list[Problem]:
    """The violations as located problems, `FILE:LINE: key.path: ...`."""
    return located_problems(text, file, (Finding(v.key, v.message, v.hint) for v in violations))
