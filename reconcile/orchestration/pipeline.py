"""load -> resolve inputs -> observe -> diff -> plan. Writes nothing but caches."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from reconcile.adapters import files, nix
from reconcile.adapters.kernels import resolve_prebuilt
from reconcile.adapters.libvirt import LibvirtHypervisor
from reconcile.core.desired import GuestMode, Manifest, PrebuiltKernel
from reconcile.core.diff import diff_lab
from reconcile.core.errors import ReconcileError
from reconcile.core.intent import GuestIntent, KernelInputs, guest_intent, system_installable
from reconcile.core.manifest import parse_manifest
from reconcile.core.observed import HypervisorObservation
from reconcile.core.plan import Plan, make_plan
from reconcile.core.select import select_guests

log = structlog.get_logger(__name__)

HypervisorFactory = Callable[[str], LibvirtHypervisor]


@dataclass(frozen=True)
class PlanOptions:
    targets: tuple[str, ...] = ()
    prune: bool = False


@dataclass
class Context:
    """What one run holds open: the manifest and one connection per hypervisor."""

    manifest: Manifest
    connect: HypervisorFactory = LibvirtHypervisor
    _hypervisors: dict[str, LibvirtHypervisor] = field(default_factory=dict)

    def hypervisor(self, name: str) -> LibvirtHypervisor:
        if name not in self._hypervisors:
            self._hypervisors[name] = self.connect(self.manifest.hypervisors[name].uri)
        return self._hypervisors[name]

    def close(self) -> None:
        for hv in self._hypervisors.values():
            hv.close()
        self._hypervisors.clear()


def load(path: Path) -> Manifest:
    return parse_manifest(files.read_manifest(path), path)


def resolve_kernels(manifest: Manifest, names: set[str]) -> dict[str, KernelInputs]:
    kernels: dict[str, KernelInputs] = {}
    for name in sorted(names):
        kernel = manifest.kernels[name]
        if not isinstance(kernel.source, PrebuiltKernel):
            raise ReconcileError(
                f"kernel '{name}' is built from source, which this version cannot do yet",
                hint=f'use a prebuilt kernel: kernels.{name}.image = "/vmlinuz"',
            )
        kernels[name] = resolve_prebuilt(kernel)
    return kernels


def intents(manifest: Manifest, targets: Sequence[str]) -> tuple[list[GuestIntent], dict[str, str]]:
    """Each targeted guest's intent, and the installables not yet built, by guest."""
    guests = select_guests(manifest, targets)
    for guest in guests:
        if guest.mode is not GuestMode.IMAGELESS:
            raise ReconcileError(
                f"guest '{guest.name}' is a disk guest, which this version cannot manage yet",
                hint="disk guests come with their own issue; remove it or use --target",
            )
    kernels = resolve_kernels(manifest, {g.kernel for g in guests if g.kernel})
    installables = {g.name: system_installable(manifest.lab.flake, g.system) for g in guests}
    cache = nix.EvalCache(manifest.lab.state_dir / "eval-cache.json")
    toplevels = nix.resolve_systems(manifest.lab.flake, sorted(set(installables.values())), cache)
    result = []
    unbuilt = {}
    for guest in guests:
        assert guest.kernel is not None
        toplevel = toplevels[installables[guest.name]]
        result.append(guest_intent(manifest, guest, toplevel, kernels[guest.kernel]))
        if not nix.is_built(toplevel):
            unbuilt[guest.name] = installables[guest.name]
    return result, unbuilt


def observe(ctx: Context) -> dict[str, HypervisorObservation]:
    """One snapshot per hypervisor of the manifest (all of them: orphans live anywhere)."""
    observations = {}
    for name in sorted(ctx.manifest.hypervisors):
        started = time.monotonic()
        observations[name] = ctx.hypervisor(name).observe()
        log.debug("observed", hypervisor=name, seconds=round(time.monotonic() - started, 3))
    return observations


def make(ctx: Context, options: PlanOptions) -> Plan:
    wanted, unbuilt = intents(ctx.manifest, options.targets)
    observations = observe(ctx)
    scope = frozenset(g.name for g in select_guests(ctx.manifest, options.targets))
    diff = diff_lab(
        ctx.manifest.lab.name,
        wanted,
        observations,
        prune=options.prune,
        scope=scope if options.targets else None,
    )
    return make_plan(diff, unbuilt)
