"""Building DomainSpecs for adapter tests, without the planning layers above them.

Production derives a spec from a GuestIntent (orchestration/guests.py); adapter tests need
specs of their own, with identity derived the same way and a mark whose hash covers them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

from reconcile.core.desired import Accel, GuestMode, Share
from reconcile.core.domain import (
    MODULES_TAG,
    NIX_STORE,
    RENDER_VERSION,
    STORE_TAG,
    DomainSpec,
    Mark,
    domain_name,
    domain_uuid,
    mac_address,
)


def spec_hash(spec: DomainSpec) -> str:
    """sha256 over every field that shapes the definition, the mark's included but its hash.

    The mark's own fields count because they are written into the definition: a guest
    that becomes `protect = true` must be redefined, or pruning it later would not know.
    """
    mark = spec.mark
    fields = {
        "mark": [mark.lab, mark.name, mark.mode, mark.toplevel, mark.kernel, mark.protect],
        "render": RENDER_VERSION,
        "name": spec.name,
        "uuid": spec.uuid,
        "accel": str(spec.accel),
        "memory_mib": spec.memory_mib,
        "vcpus": spec.vcpus,
        "kernel": str(spec.kernel),
        "initrd": str(spec.initrd),
        "cmdline": spec.cmdline,
        "shares": [[s.tag, str(s.source), s.writable] for s in spec.shares],
        "mac": spec.mac,
        "network": spec.network,
        "serial_log": str(spec.serial_log),
    }
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def build_domain_spec(
    *,
    lab: str,
    guest: str,
    mode: GuestMode,
    toplevel: str,
    accel: Accel,
    memory_mib: int,
    vcpus: int,
    kernel: Path,
    initrd: Path,
    cmdline: str,
    modules: Path | None,
    shares: tuple[Share, ...],
    network: str | None,
    mac: str | None,
    serial_log: Path,
    protect: bool = False,
) -> DomainSpec:
    """A spec with derived identity, the `store` (+ `modules`) shares first, and its mark.

    `mac` None with a network set derives one from lab + guest. The mark's hash is
    `spec_hash` of the result.
    """
    reserved = {STORE_TAG, MODULES_TAG} & {s.tag for s in shares}
    if reserved:
        raise ValueError(f"{guest}: share tags {sorted(reserved)} are reserved")
    system = [Share(STORE_TAG, NIX_STORE, writable=False)]
    if modules is not None:
        system.append(Share(MODULES_TAG, modules, writable=False))
    unmarked = DomainSpec(
        name=domain_name(lab, guest),
        uuid=domain_uuid(lab, guest),
        accel=accel,
        memory_mib=memory_mib,
        vcpus=vcpus,
        kernel=kernel,
        initrd=initrd,
        cmdline=cmdline,
        shares=(*system, *shares),
        mac=(mac or mac_address(lab, guest)) if network is not None else None,
        network=network,
        serial_log=serial_log,
        mark=Mark(lab, guest, str(mode), "", toplevel, str(kernel), protect),
    )
    return replace(unmarked, mark=replace(unmarked.mark, spec_hash=spec_hash(unmarked)))
