"""load -> resolve inputs -> observe -> diff -> plan. Writes nothing but caches."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from reconcile.adapters import (
    disks,
    files,
    generations,
    manifest_cache,
    nix,
    process,
    statedir,
    views,
)
from reconcile.adapters.agent import Agent
from reconcile.adapters.prebuilt_kernels import resolve_prebuilt
from reconcile.core.builders import kernels_built_on
from reconcile.core.desired import (
    Activation,
    BuildOn,
    Guest,
    GuestMode,
    Host,
    Kernel,
    Manifest,
    NetworkKind,
    PrebuiltKernel,
    Ssh,
)
from reconcile.core.errors import PlanError, ProbeError, ReconcileError
from reconcile.core.guests import placement
from reconcile.core.guests.diff import ChangeKind, GuestChange
from reconcile.core.guests.disk import (
    DiskIntent,
    disk_intent,
    image_installable,
    image_key,
    share_key,
)
from reconcile.core.guests.identity import domain_name
from reconcile.core.guests.imageless import kernel_cmdline
from reconcile.core.guests.intent import (
    DEFINERS,
    GuestIntent,
    KernelInputs,
    guest_intent,
    lab_views,
    system_installable,
)
from reconcile.core.guests.observed import DiskFileFacts, HypervisorObservation
from reconcile.core.guests.placement import is_remote
from reconcile.core.hosts.baremetal import (
    HostChange,
    HostChangeKind,
    HostIntent,
    HostObservation,
    diff_host,
)
from reconcile.core.layout import StateLayout
from reconcile.core.manifest import parse_manifest, read_documents
from reconcile.core.plan.diff import Diff, MachineFacts, diff_lab
from reconcile.core.plan.graph import Plan, make_plan
from reconcile.core.plan.select import select
from reconcile.logs import get_logger
from reconcile.orchestration import drivers
from reconcile.orchestration.drivers import DiskDriver, Driver, DriverFactory
from reconcile.orchestration.machines import Machine, machine_for

if TYPE_CHECKING:  # fabric and paramiko (~60 ms) are imported only for a lab with hosts
    from reconcile.adapters import ssh
    from reconcile.core.closures import ClosureDiff

log = get_logger(__name__)

HOST_PROBES = 16  # hosts probed at once
HYPERVISOR_PROBES = 16  # hypervisors observed at once


@dataclass(frozen=True)
class PlanOptions:
    targets: tuple[str, ...] = ()
    prune: bool = False


@dataclass
class Context:
    """What one run holds open: the manifest, one connection per hypervisor and per host."""

    manifest: Manifest
    connect: DriverFactory = drivers.connect
    _hypervisors: dict[str, Driver] = field(default_factory=dict)
    _sessions: dict[str, ssh.Session] = field(default_factory=dict)
    _machines: dict[str, Machine] = field(default_factory=dict)
    seen_hosts: dict[str, HostObservation] = field(default_factory=dict)
    _agent: Agent | None = None
    # Running disk guests reached over SSH like hosts: their SSH with address and key resolved.
    guest_ssh: dict[str, Ssh] = field(default_factory=dict)

    def ssh_of(self, host: str) -> Ssh:
        return self.guest_ssh[host] if host in self.guest_ssh else self.manifest.hosts[host].ssh

    def hypervisor(self, name: str) -> Driver:
        if name not in self._hypervisors:
            self._hypervisors[name] = self.connect(
                self.manifest.hypervisors[name], self.manifest.lab
            )
        return self._hypervisors[name]

    def machine(self, hypervisor: str) -> Machine:
        """The machine `hypervisor` runs on, for its guests' files (here, or over SSH)."""
        if hypervisor not in self._machines:
            self._machines[hypervisor] = machine_for(
                self.manifest.hypervisors[hypervisor], self.manifest.lab
            )
        return self._machines[hypervisor]

    def session(self, host: str) -> ssh.Session:
        """The run's SSH connection to a host (opened on first command)."""
        if host not in self._sessions:
            from reconcile.adapters import ssh  # noqa: PLC0415 - see TYPE_CHECKING above

            self._sessions[host] = ssh.Session(self.ssh_of(host))
        return self._sessions[host]

    def reconnect(self, host: str) -> ssh.Session:
        """A new connection in place of one that dropped."""
        old = self._sessions.pop(host, None)
        if old is not None:
            old.close()
        return self.session(host)

    def agent_env(self, host: str) -> dict[str, str]:
        """Environment giving OpenSSH the host's passphrase-protected identity (an agent)."""
        if self._agent is None:
            self._agent = Agent(self.manifest.lab.layout.ssh_dir)
        return self._agent.env(self.ssh_of(host))

    def close(self) -> None:
        if self._agent is not None:
            self._agent.close()
            self._agent = None
        for hv in self._hypervisors.values():
            hv.close()
        self._hypervisors.clear()
        for machine in self._machines.values():
            machine.close()
        self._machines.clear()
        for session in self._sessions.values():
            session.close()
        self._sessions.clear()


def load(path: Path, *, full: bool = False) -> Manifest:
    """The manifest at `path`, parsed; `full` always runs every stage and leaves the
    manifest cache alone, neither asking it nor adding to it (validate)."""
    data = files.read_manifest(path)
    known = None if full else manifest_cache.documents(data)
    documents = known or read_documents(data, path)
    manifest = parse_manifest(data, path, documents=documents)
    if known is None and not full:
        manifest_cache.remember(data, documents)
    # The variables that hold passphrases are read in this process only (paramiko, or the
    # askpass of a run's own agent): no other child inherits them.
    process.hide_from_children(
        ssh.passphrase_env
        for ssh in [h.ssh for h in manifest.hosts.values()]
        + [g.ssh for g in manifest.guests.values() if g.ssh is not None]
        if ssh.passphrase_env is not None
    )
    return manifest


def resolve_kernels(
    manifest: Manifest, guests: Sequence[Guest]
) -> tuple[dict[str, KernelInputs], dict[str, str]]:
    """Each kernel the guests boot, resolved; and the kernels to build, with their directory.

    A kernel to build has its config resolved now (kconfig runs, nothing is compiled), so
    that a config lacking what imageless guests need fails the plan, not the boot.
    """
    kernels: dict[str, KernelInputs] = {}
    to_build: dict[str, str] = {}
    for name in sorted({g.kernel for g in guests if g.kernel}):
        kernel = manifest.kernels[name]
        if isinstance(kernel.source, PrebuiltKernel):
            kernels[name] = resolve_prebuilt(kernel, manifest.lab.layout.kernel_digests)
            continue
        kernels[name], directory = _resolve_build(manifest, kernel, guests)
        if directory is not None:
            to_build[name] = directory
    return kernels, to_build


def _resolve_build(
    manifest: Manifest, kernel: Kernel, guests: Sequence[Guest]
) -> tuple[KernelInputs, str | None]:
    """A kernel to build, resolved; and its build directory, unless it is built already."""
    # Kernel builds' code (Kconfig, make) is loaded only for a lab that builds kernels.
    from reconcile.adapters import kernel_build  # noqa: PLC0415
    from reconcile.core.kernels.kconfig import (  # noqa: PLC0415
        describe_missing,
        fix_fragment,
        missing_options,
        required_options,
    )

    job = kernel_build.locate(kernel, manifest.lab.layout, manifest.lab.build_timeout_s)
    config = job.config() if job.complete() else kernel_build.resolve_config(job)
    users = [g for g in guests if g.kernel == kernel.name]
    required = required_options(kernel_cmdline("", g.kernel_params) for g in users)
    if missing := missing_options(config, required):
        raise PlanError(
            describe_missing(kernel.name, missing, (g.name for g in users)),
            hint="add these lines to one of its fragments (or to `set`):\n" + fix_fragment(missing),
        )
    release = job.release()
    inputs = KernelInputs(
        name=kernel.name,
        image=job.image,
        digest=job.key,
        release=release,
        modules=job.modules_dir(release),
        early_modules=(),
    )
    return inputs, None if job.complete() else str(job.directory)


@dataclass(frozen=True)
class Wanted:
    """The targeted guests and hosts with their inputs resolved."""

    guests: list[GuestIntent | DiskIntent]
    hosts: list[HostIntent]
    unbuilt: dict[str, str]  # installables not yet in the store, by guest or host name
    kernels: dict[str, str]  # kernels to build, with their build directory
    built_there: frozenset[str] = frozenset()  # guests whose hypervisor builds their system


def intents(manifest: Manifest, targets: Sequence[str]) -> Wanted:
    """Each targeted guest's and host's intent; all systems (and disk guests' images) are
    evaluated in one call."""
    guests, hosts = select(manifest, targets)
    for guest in guests:
        if guest.mode not in DEFINERS and guest.mode is not GuestMode.DISK:
            raise ReconcileError(
                f"guest '{guest.name}' is a {guest.mode.value} guest, which this version "
                "cannot manage",
                hint="remove it or use --target",
            )
    imageless = [g for g in guests if g.mode is GuestMode.IMAGELESS]
    kernels, kernels_to_build = resolve_kernels(manifest, imageless)
    systems = [(g.name, g.system) for g in guests] + [(h.name, h.system) for h in hosts]
    installables = {name: system_installable(manifest.lab.flake, s) for name, s in systems}
    installables.update(
        (image_key(g.name), _image_installable(manifest, g))
        for g in guests
        if g.mode is GuestMode.DISK
    )
    installables.update(
        (share_key(g.name, c.tag), system_installable(manifest.lab.flake, c.source))
        for g in guests
        for c in g.config_shares
    )
    cache = nix.EvalCache(manifest.lab.layout.eval_cache)
    toplevels = nix.resolve_systems(
        manifest.lab.flake,
        sorted(set(installables.values())),
        cache,
        manifest.lab.eval_timeout_s,
    )
    result: list[GuestIntent | DiskIntent] = []
    pinned = generations.pins(manifest.lab.layout)  # `reconcile rollback`: in place of the manifest
    built_there = {  # built in their hypervisor's own store, by their own steps
        g.name for g in guests if manifest.hypervisors[g.hypervisor].build_on is BuildOn.HYPERVISOR
    }
    unbuilt = {
        name: installable
        for name, installable in installables.items()
        if name not in pinned
        and name not in built_there
        and not nix.is_built(toplevels[installable])
    }
    for guest in guests:
        toplevel = pinned.get(guest.name) or toplevels[installables[guest.name]]
        if guest.name in pinned and not nix.is_built(toplevel):
            raise PlanError(
                f"guest '{guest.name}' is pinned to {toplevel}, which is not in the store",
                hint=f"reconcile rollback ... {guest.name} --release follows the manifest again",
            )
        if guest.mode is GuestMode.DISK:
            result.append(
                disk_intent(
                    manifest.lab.name,
                    guest,
                    accel=manifest.hypervisors[guest.hypervisor].accel,
                    layout=manifest.lab.layout,
                    toplevel=toplevel,
                    image=toplevels[installables[image_key(guest.name)]],
                    config_sources={
                        c.tag: toplevels[installables[share_key(guest.name, c.tag)]]
                        for c in guest.config_shares
                    },
                )
            )
            continue
        assert guest.kernel is not None
        result.append(guest_intent(manifest, guest, toplevel, kernels[guest.kernel]))
    host_intents = [
        HostIntent(h, toplevels[installables[h.name]], installables[h.name]) for h in hosts
    ]
    return Wanted(result, host_intents, unbuilt, kernels_to_build, frozenset(built_there))


def _image_installable(manifest: Manifest, guest: Guest) -> str:
    assert guest.disk is not None
    if guest.disk.image is not None:
        return system_installable(manifest.lab.flake, guest.disk.image)
    if "#" in guest.system:
        raise PlanError(
            f"guest '{guest.name}': its system is an installable ({guest.system}), so its "
            "base image cannot be found by name",
            hint="give the image's installable as disk.image",
        )
    return image_installable(manifest.lab.flake, guest.system, guest.disk.format)


def observe(ctx: Context, *, every_domain: bool = False) -> dict[str, HypervisorObservation]:
    """One snapshot per hypervisor of the manifest (all of them: orphans live anywhere).

    Only domains named `<lab>-...` are read (the others are listed by name: they cannot be
    this lab's guests); `every_domain` reads them all, for what must know every kernel any
    domain boots (pruning kernel builds).
    """
    prefix = "" if every_domain else domain_name(ctx.manifest.lab.name, "")

    def one(name: str) -> HypervisorObservation:
        started = time.monotonic()
        seen = drivers_of[name].observe(prefix)  # never raises: an error is in the result
        log.debug("observed", hypervisor=name, seconds=round(time.monotonic() - started, 3))
        return seen

    names = sorted(ctx.manifest.hypervisors)
    drivers_of = {name: ctx.hypervisor(name) for name in names}  # made here, not in threads
    if len(names) <= 1:
        return {name: one(name) for name in names}
    # One round trip each, at once: a slow or unreachable hypervisor costs its own
    # connect timeout, not everyone's.
    with ThreadPoolExecutor(max_workers=min(HYPERVISOR_PROBES, len(names))) as pool:
        return dict(zip(names, pool.map(one, names), strict=True))


def observe_machines(
    ctx: Context, guests: Sequence[GuestIntent | DiskIntent]
) -> dict[str, MachineFacts | None]:
    """Each remote hypervisor's own views, GC roots and kernel copies, one round trip each,
    in parallel; None where its machine could not be read (nothing of it is repaired or
    pruned then: unknown is never acted on)."""
    remote = sorted(n for n, hv in ctx.manifest.hypervisors.items() if is_remote(hv))

    def one(name: str) -> MachineFacts | None:
        theirs = lab_views([g for g in guests if g.guest.hypervisor == name])
        try:
            return ctx.machine(name).observe(theirs, ctx.manifest.lab.layout)
        except ReconcileError as error:
            log.warning("hypervisor's files unknown", hypervisor=name, error=error.message)
            return None

    for name in remote:
        ctx.machine(name)  # made here, not racing in the threads
    if len(remote) <= 1:
        return {name: one(name) for name in remote}
    with ThreadPoolExecutor(max_workers=min(HYPERVISOR_PROBES, len(remote))) as pool:
        return dict(zip(remote, pool.map(one, remote), strict=True))


def observe_hosts(ctx: Context, hosts: Sequence[HostIntent]) -> list[HostChange]:
    """Each host probed over its own connection, in parallel; a failure is unknown."""
    if not hosts:
        return []  # and fabric is not imported (a lab of guests only)
    from reconcile.adapters import ssh  # noqa: PLC0415 - see TYPE_CHECKING above

    def one(intent: HostIntent) -> HostChange:
        started = time.monotonic()
        try:
            seen = ssh.observe_host(ctx.session(intent.name))
        except ReconcileError as error:
            why = error.message + (f" (hint: {error.hint})" if error.hint else "")
            log.warning("host unknown", host=intent.name, error=error.message)
            return diff_host(intent, None, why)
        log.debug("observed", host=intent.name, seconds=round(time.monotonic() - started, 3))
        ctx.seen_hosts[intent.name] = seen
        return diff_host(intent, seen)

    for intent in hosts:
        ctx.session(intent.name)  # made here, not racing in the threads
    if len(hosts) <= 1:
        return [one(h) for h in hosts]
    with ThreadPoolExecutor(max_workers=min(HOST_PROBES, len(hosts))) as pool:
        return list(pool.map(one, hosts))


def observe_overlays(
    intents: Sequence[GuestIntent | DiskIntent],
) -> dict[str, DiskFileFacts | str | None]:
    """Each disk guest's overlay header: None when there is none, why when unreadable."""
    found: dict[str, DiskFileFacts | str | None] = {}
    for intent in intents:
        if isinstance(intent, DiskIntent):
            try:
                found[intent.name] = disks.inspect(intent.definition.overlay)
            except ProbeError as error:
                found[intent.name] = error.message
    return found


def with_addresses(ctx: Context, changes: Sequence[GuestChange]) -> tuple[GuestChange, ...]:
    """Where each disk guest is reached: its forwarded port, its static address, or its
    DHCP lease on a libvirt network, read once per network and hypervisor ("" when it has
    none yet, or the leases cannot be read)."""
    leases: dict[tuple[str, str], dict[str, str]] = {}

    def lease(hypervisor: str, network: str) -> dict[str, str]:
        if (hypervisor, network) not in leases:
            hv: object = ctx.hypervisor(hypervisor)
            try:
                found = hv.leases(network) if isinstance(hv, DiskDriver) else {}
            except ReconcileError as error:
                log.warning("leases unknown", network=network, error=error.message)
                found = {}
            leases[hypervisor, network] = found
        return leases[hypervisor, network]

    def one(change: GuestChange) -> GuestChange:
        intent = change.intent
        if not isinstance(intent, DiskIntent) or intent.definition.network is None:
            return change
        nic = intent.definition.network
        if nic.kind is NetworkKind.USER:
            return replace(change, address=f"127.0.0.1:{nic.ssh_port}")
        if nic.kind is NetworkKind.BRIDGE:
            return replace(change, address=(nic.address or "").partition("/")[0])
        if change.observed_state is None:  # no domain: no lease to look for
            return change
        return replace(change, address=lease(intent.guest.hypervisor, nic.name).get(nic.mac, ""))

    return tuple(one(c) for c in changes)


# A running disk guest whose system is observed over SSH (before a restart: it boots the
# same system again, its boot loader's default), and switched after its own steps.
_SWITCHABLE = frozenset(
    {ChangeKind.NOOP, ChangeKind.RESIZE, ChangeKind.RESTART, ChangeKind.REDEFINE}
)


def running_disk_guests(ctx: Context, diff: Diff) -> list[HostIntent]:
    """Running disk guests that switch to a new system over SSH, as hosts: the same copy,
    profile, activation and health steps, with their pinned host key, after the guest's
    own steps (a restart). A guest being created, started or recreated boots what its disk
    has; the next run switches it if that is not its system."""
    found = []
    for change in diff.changes:
        intent = change.intent
        if not isinstance(intent, DiskIntent) or intent.recreates or intent.guest.ssh is None:
            continue
        if change.kind not in _SWITCHABLE or not change.running or not change.address:
            continue
        ssh = _guest_ssh(
            ctx.manifest.lab.layout, intent.guest.name, intent.guest.ssh, change.address
        )
        if ssh is None:
            log.warning("no host key pinned", guest=intent.name)
            continue
        ctx.guest_ssh[intent.name] = ssh
        host = Host(
            name=intent.name,
            system=intent.guest.system,
            ssh=ssh,
            activation=Activation.SWITCH,
            reboot=False,
            health=(),
            health_timeout_s=intent.guest.boot_timeout_s,
            confirm_timeout_s=max(60.0, intent.guest.boot_timeout_s),
            tags=intent.guest.tags,
            after=intent.guest.after,
        )
        installable = system_installable(ctx.manifest.lab.flake, intent.guest.system)
        found.append(HostIntent(host, intent.toplevel, installable, machine="disk guest"))
    return found


def _guest_ssh(layout: StateLayout, guest: str, ssh: Ssh, lease: str) -> Ssh | None:
    """A disk guest's SSH with its pinned key (the manifest's, or the one it printed at its
    first boot); None when no key is pinned. The manifest gave the address of a forwarded
    port, a static address or a `target`; only a libvirt network's lease comes from here."""
    resolved = ssh if ssh.host else replace(ssh, host=lease)
    if ssh.host_key or ssh.known_hosts:
        return resolved
    pinned = layout.guest_host_key(guest)
    try:
        key = pinned.read_text().strip()
    except OSError:
        return None
    return replace(resolved, host_key=key) if key else None


def claim_state_dir(manifest: Manifest) -> None:
    """Before anything is written there (caches, lock, history): it must be the lab's own."""
    statedir.claim(manifest.lab.state_dir, manifest.lab.name)


def make(ctx: Context, options: PlanOptions) -> Plan:
    claim_state_dir(ctx.manifest)
    wanted = intents(ctx.manifest, options.targets)
    prune_kernels = options.prune and not options.targets
    with ThreadPoolExecutor(max_workers=2) as side:
        # The hosts, and remote hypervisors' own files, are read while the hypervisors are
        # observed: one wait, not three.
        hosts_seen = side.submit(observe_hosts, ctx, wanted.hosts)
        files_seen = side.submit(observe_machines, ctx, wanted.guests)
        observations = (
            observe(ctx, every_domain=prune_kernels) if wanted.guests or not options.targets else {}
        )
        remote = {  # a hypervisor whose libvirt is unknown: nothing of its files is used
            name: facts if name in observations and observations[name].domains is not None else None
            for name, facts in files_seen.result().items()
        }
        seen_hosts = hosts_seen.result()
    scope = frozenset(g.name for g in wanted.guests)
    here = [g for g in wanted.guests if g.guest.hypervisor not in remote]
    diff = diff_lab(
        ctx.manifest.lab.name,
        wanted.guests,
        observations,
        prune=options.prune,
        scope=scope if options.targets else None,
        views=views.observe(lab_views(here)),  # read-only: mountinfo and stat
        roots=nix.observe_gc_roots(ctx.manifest.lab.layout.gcroots),  # readlinks
        machines=remote,
        overlays=observe_overlays(wanted.guests),  # 32 bytes of each header
    )
    diff = replace(diff, changes=with_addresses(ctx, diff.changes))
    host_changes = [*seen_hosts, *observe_hosts(ctx, running_disk_guests(ctx, diff))]
    diff = with_closure_diffs(replace(diff, hosts=tuple(host_changes)), ctx.manifest.lab.layout)
    unbuilt, kernels = wanted.unbuilt, wanted.kernels
    stale = stale_kernel_builds(ctx.manifest, observations) if prune_kernels else ()
    copies = stale_kernel_copies(ctx.manifest, wanted.guests, observations, remote)
    plan = make_plan(
        diff, unbuilt, kernels, stale_kernels=stale, stale_copies=copies if prune_kernels else ()
    )
    machines = ctx.manifest.builders.values()
    where = (("here",) if ctx.manifest.lab.build_locally or not machines else ()) + tuple(
        f"builder {b.name} ({b.user}@{b.host})" for b in machines
    )
    building = sorted({g.guest.hypervisor for g in wanted.guests if g.name in wanted.built_there})
    where += tuple(f"hypervisor {name} (its guests' systems)" for name in building)
    return replace(plan, built_on=where, kernels_built_on=kernels_built_on(ctx.manifest, kernels))


def with_closure_diffs(diff: Diff, layout: StateLayout) -> Diff:
    """Each system change with what it changes inside the closure, and each change of a
    built kernel with the config options that differ. Only changes pay: two `nix path-info
    --recursive` per changed system, two .config reads per changed kernel (none for a no-op
    plan)."""
    pairs: dict[tuple[str, str], ClosureDiff] = {}

    # The modules that diff closures and kernel configs are loaded only for a change that
    # needs them: a plan with nothing to change loads neither.
    def closure(before: str, after: str) -> ClosureDiff:
        from reconcile.core.closures import diff_closures  # noqa: PLC0415

        if (before, after) not in pairs:
            pairs[before, after] = diff_closures(
                before, after, nix.closure_sizes(before), nix.closure_sizes(after)
            )
        return pairs[before, after]

    def guest(change: GuestChange) -> GuestChange:
        if not change.kind.is_change():
            return change
        reasons = {r.field: r for r in change.reasons}
        if "system" in reasons:
            system = reasons["system"]
            change = replace(change, closure=closure(system.before, system.after))
        if "kernel" in reasons and isinstance(change.intent, GuestIntent):
            from reconcile.adapters import kernel_build  # noqa: PLC0415
            from reconcile.core.kernels.kconfig import diff_configs  # noqa: PLC0415

            old_image = Path(reasons["kernel"].before.split(" sha256:", 1)[0])
            old = kernel_build.config_of_image(old_image, layout)
            new = kernel_build.config_of_image(change.intent.kernel.image, layout)
            if old is not None and new is not None:
                change = replace(change, kconfig=diff_configs(old, new))
        return change

    def host(change: HostChange) -> HostChange:
        if change.kind is not HostChangeKind.SWITCH or not change.before or not change.after:
            return change
        return replace(change, closure=closure(change.before, change.after))

    guests = [guest(c) for c in diff.changes]
    hosts = [host(h) for h in diff.hosts]
    return replace(diff, changes=tuple(guests), hosts=tuple(hosts))


def stale_kernel_builds(
    manifest: Manifest, observations: Mapping[str, HypervisorObservation]
) -> tuple[str, ...]:
    """Kernel builds in the state directory that nothing uses any more (for --prune).

    Kept: the current build of every kernel in the manifest, and any build that a defined
    or running domain of any hypervisor boots. Nothing is stale while a hypervisor or any
    domain on one could not be observed: a failed probe is unknown, not absent.
    """
    from reconcile.adapters import kernel_build  # noqa: PLC0415 - see _resolve_build

    root = manifest.lab.layout.kernels
    if not root.is_dir() or any(o.domains is None or o.unknown for o in observations.values()):
        return ()
    keep = {
        kernel_build.locate(k, manifest.lab.layout).directory.name
        for k in manifest.kernels.values()
        if not isinstance(k.source, PrebuiltKernel)
    }
    keep |= kernel_builds_in_use(root, observations)
    return tuple(str(d) for d in sorted(root.iterdir()) if d.is_dir() and d.name not in keep)


def stale_kernel_copies(
    manifest: Manifest,
    guests: Sequence[GuestIntent | DiskIntent],
    observations: Mapping[str, HypervisorObservation],
    machines: Mapping[str, MachineFacts | None],
) -> tuple[tuple[str, str], ...]:
    """(hypervisor, directory) of each kernel copy on a remote hypervisor that nothing
    there boots or will (for --prune); none of a hypervisor that is not fully observed."""
    found = []
    for name, facts in sorted(machines.items()):
        seen = observations.get(name)
        if facts is None or seen is None:
            continue
        wanted = [
            g.definition.kernel
            for g in guests
            if isinstance(g, GuestIntent) and g.guest.hypervisor == name
        ]
        layout = manifest.lab.layout
        stale = placement.stale_copies(layout, seen, facts.kernel_copies, wanted)
        found += [(name, str(directory)) for directory in stale]
    return tuple(found)


def kernel_builds_in_use(root: Path, observations: Mapping[str, HypervisorObservation]) -> set[str]:
    """Names of the builds under `root` that a persistent or live definition boots.

    Paths are compared resolved, so a state directory named through a link still matches.
    """
    real_root = root.resolve()
    used = set()
    for observation in observations.values():
        for domain in (observation.domains or {}).values():
            for facts in (domain.config, domain.live):
                if facts is None or not facts.kernel:
                    continue
                image = Path(facts.kernel)
                for candidate in {image, image.resolve()}:
                    if candidate.parent.parent in (root, real_root):
                        used.add(candidate.parent.name)
    return used
