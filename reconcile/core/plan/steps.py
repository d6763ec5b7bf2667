"""The actions of a plan with something to do, and the edges between them.

Pure: changes in, actions and their order out. Imported only when a plan has something to
do (graph.make_plan): a no-op plan builds no actions and loads none of their types.
"""

from __future__ import annotations

import graphlib
from collections.abc import Mapping
from pathlib import Path

from reconcile.core.desired import Activation, BuildOn, GuestMode, GuestState
from reconcile.core.errors import PlanError
from reconcile.core.guests.diff import ChangeKind, GuestChange
from reconcile.core.guests.disk import DiskIntent, image_key, share_key
from reconcile.core.guests.intent import GuestIntent
from reconcile.core.hosts.baremetal import HostChange, HostChangeKind, HostIntent, HostObservation
from reconcile.core.plan.actions import (
    Action,
    Activate,
    BuildClosures,
    BuildKernel,
    BuildOnHost,
    CheckHealth,
    CopyClosure,
    DefineGuest,
    DestroyGuest,
    GrowDisk,
    GuestRef,
    MakeView,
    PrepareDisks,
    Reboot,
    RemoveDisks,
    RemoveKernel,
    SetProfile,
    ShutdownGuest,
    StartGuest,
    SyncGcRoots,
    UndefineGuest,
    WaitBooted,
    WaitReady,
    WipeDisk,
    kernel_key,
)
from reconcile.core.plan.diff import Diff
from reconcile.core.plan.graph import BUILD_KEY, Plan


def _guest_actions(change: GuestChange, needs: list[str]) -> list[tuple[Action, list[str]]]:
    """Each action of one guest with the keys it depends on, in order."""
    if change.mode == GuestMode.DISK:
        return _disk_actions(change, needs)
    ref = GuestRef(change.name, change.hypervisor, change.domain)
    intent = change.intent
    assert not isinstance(intent, DiskIntent)
    steps: list[Action] = []
    match change.kind:
        case ChangeKind.DESTROY:
            if change.running:
                steps.append(DestroyGuest(ref))
            steps.append(UndefineGuest(ref))
        case ChangeKind.NOOP | ChangeKind.KEEP | ChangeKind.UNKNOWN | ChangeKind.CONFLICT:
            pass
        case ChangeKind.WAIT:
            assert intent is not None  # a change of a guest in the manifest carries its intent
            steps.append(_wait(ref, intent))
        case (
            ChangeKind.CREATE
            | ChangeKind.START
            | ChangeKind.REDEFINE
            | ChangeKind.RESTART
            | ChangeKind.STOP
        ):
            assert intent is not None
            if change.redefine:
                steps.append(DefineGuest(ref, intent))
            if change.kind in (ChangeKind.RESTART, ChangeKind.STOP):
                steps.append(ShutdownGuest(ref, intent.guest.shutdown_timeout_s))
            starts = change.kind in (ChangeKind.CREATE, ChangeKind.START, ChangeKind.RESTART)
            if starts and intent.guest.state is GuestState.RUNNING:
                steps += [StartGuest(ref, intent), _wait(ref, intent)]
    # a define waits for what it boots to be built; each next step for the one before
    first = needs if steps and isinstance(steps[0], DefineGuest) else []
    return [(step, first if i == 0 else [steps[i - 1].key]) for i, step in enumerate(steps)]


def _wait(ref: GuestRef, intent: GuestIntent) -> WaitReady:
    return WaitReady(ref, intent.definition, intent.guest.boot_timeout_s)


def _disk_actions(change: GuestChange, needs: list[str]) -> list[tuple[Action, list[str]]]:
    """A disk guest's actions in order. Its disks come before its definition (libvirt
    checks they exist at start, not define, but a defined guest must be startable); a
    recreate stops it before its overlay is made anew."""
    ref = GuestRef(change.name, change.hypervisor, change.domain, GuestMode.DISK.value)
    intent = change.intent
    assert not isinstance(intent, GuestIntent)
    steps: list[Action] = []
    match change.kind:
        case ChangeKind.DESTROY:
            if change.running:
                steps.append(DestroyGuest(ref))
            steps.append(UndefineGuest(ref))
            if not change.moved_to:  # a moved guest's disks are its new copy's
                steps.append(RemoveDisks(ref))
        case ChangeKind.NOOP | ChangeKind.KEEP | ChangeKind.UNKNOWN | ChangeKind.CONFLICT:
            pass
        case ChangeKind.WAIT:
            assert intent is not None
            steps.append(_booted(ref, intent))
        case ChangeKind.RESIZE:
            assert intent is not None
            steps.append(GrowDisk(ref, intent))
        case (
            ChangeKind.CREATE
            | ChangeKind.START
            | ChangeKind.REDEFINE
            | ChangeKind.RESTART
            | ChangeKind.RECREATE
            | ChangeKind.STOP
        ):
            assert intent is not None
            stops = change.kind in (ChangeKind.RESTART, ChangeKind.STOP) or (
                change.kind is ChangeKind.RECREATE and change.running
            )
            if stops:
                steps.append(ShutdownGuest(ref, intent.guest.shutdown_timeout_s))
            if change.kind is ChangeKind.RECREATE:
                steps.append(WipeDisk(ref, intent))
            elif change.kind is not ChangeKind.STOP:  # a new data disk is made before its use
                steps.append(PrepareDisks(ref, intent))
            if change.resize_to:
                steps.append(GrowDisk(ref, intent))
            if change.redefine:
                steps.append(DefineGuest(ref, intent))
            starts = change.kind in (
                ChangeKind.CREATE,
                ChangeKind.START,
                ChangeKind.RESTART,
                ChangeKind.RECREATE,
            )
            if starts and intent.guest.state is GuestState.RUNNING:
                steps += [StartGuest(ref, intent), _booted(ref, intent)]
    # the first step waits for what it needs built (the image); each next one for the last
    first = needs if steps and not isinstance(steps[0], DestroyGuest | UndefineGuest) else []
    return [(step, first if i == 0 else [steps[i - 1].key]) for i, step in enumerate(steps)]


def _booted(ref: GuestRef, intent: DiskIntent) -> WaitBooted:
    return WaitBooted(ref, intent.definition, intent.guest.boot_timeout_s)


def _host_actions(change: HostChange, needs: list[str]) -> list[tuple[Action, list[str]]]:
    """One host's actions in order: copy, profile, activate, [reboot], health."""
    intent, seen = change.intent, change.observation
    if intent is None or seen is None or not change.kind.is_change():
        return []
    host = intent.host
    steps: list[Action] = []
    previous = ""
    if change.kind is HostChangeKind.SWITCH:
        previous = (seen.profile if host.activation is Activation.BOOT else seen.current) or ""
        if host.build_on is BuildOn.HOST:
            steps.append(BuildOnHost(intent))  # then the copy finds it there: nothing to copy
        steps.append(CopyClosure(intent))
        if host.activation is not Activation.TEST:
            steps.append(SetProfile(intent))
        steps.append(Activate(intent, previous))
        if change.reboot:
            steps.append(_reboot(intent, seen))
    elif change.kind is HostChangeKind.REBOOT:
        steps.append(_reboot(intent, seen))
    steps.append(CheckHealth(intent, previous))
    return [(step, needs if i == 0 else [steps[i - 1].key]) for i, step in enumerate(steps)]


def _reboot(intent: HostIntent, seen: HostObservation) -> Reboot:
    """Into the new system, once where the host can (core/hosts/boot_once.py)."""
    fallback = (seen.booted or "") if seen.boots_once(intent.host) else ""
    return Reboot(intent, seen.boot_id, fallback)


def _waits(diff: Diff) -> dict[str, tuple[str, ...]]:
    """The machines each guest and host of the manifest comes `after`, by name."""
    waits = {
        c.name: c.intent.guest.after for c in diff.changes if c.intent and c.intent.guest.after
    }
    waits.update(
        (h.name, h.intent.host.after) for h in diff.hosts if h.intent and h.intent.host.after
    )
    return waits


def _blocked(diff: Diff, waits: Mapping[str, tuple[str, ...]]) -> dict[str, str]:
    """The machines with changes that must not go ahead, with why: each comes after one
    without actions that is unknown (it may be anything) or in conflict (it cannot
    converge), or after one blocked itself. Machines not in the diff (not targeted) order
    nothing."""
    stuck = {c.name: "unknown" for c in diff.changes if c.kind is ChangeKind.UNKNOWN}
    stuck.update((c.name, "in conflict") for c in diff.changes if c.kind is ChangeKind.CONFLICT)
    stuck.update((h.name, "unknown") for h in diff.hosts if h.kind is HostChangeKind.UNKNOWN)
    if not stuck or not waits:
        return {}
    acting = {c.name for c in diff.changes if _guest_actions(c, [])}
    acting.update(h.name for h in diff.hosts if _host_actions(h, []))
    try:  # those waited for first (the manifest refuses cycles: this is a bug's guard)
        walk = list(graphlib.TopologicalSorter({n: waits[n] for n in sorted(waits)}).static_order())
    except graphlib.CycleError as error:
        raise PlanError(f"`after` has a cycle: {' -> '.join(error.args[1])}") from None
    blocked: dict[str, str] = {}
    for name in walk:
        why = [
            f"{dep}, which is {'blocked' if dep in blocked else stuck[dep]}"
            for dep in waits.get(name, ())
            if dep in blocked or (dep in stuck and dep not in acting)
        ]
        if why and name in acting:
            blocked[name] = "waits for " + ", and ".join(why)
    return dict(sorted(blocked.items()))


# Disk guests' changes that make an overlay on the image: it must be built first.
_MAKES_OVERLAY = frozenset({ChangeKind.CREATE, ChangeKind.RECREATE})
# Changes that start a guest: a disk guest's config shares must be built by then.
_STARTS = frozenset({ChangeKind.CREATE, ChangeKind.RECREATE, ChangeKind.START, ChangeKind.RESTART})


def _share_keys(change: GuestChange, unbuilt: Mapping[str, str]) -> list[str]:
    if not isinstance(change.intent, DiskIntent):
        return []
    keys = [share_key(change.name, c.tag) for c in change.intent.guest.config_shares]
    return [k for k in keys if k in unbuilt]


def _builds(
    changes: list[GuestChange],
    hosts: list[HostChange],
    unbuilt: Mapping[str, str],
    kernels: Mapping[str, str],
) -> tuple[tuple[str, ...], dict[str, Action]]:
    """The installables to build and the lab's build actions the changes need: their
    closures not yet in the store (one `build`), the kernels they boot (`kernel:<name>`)."""
    nodes: dict[str, Action] = {}
    defining = [c for c in changes if c.redefine and c.kind.is_change()]
    switching = [
        h
        for h in hosts
        if h.kind is HostChangeKind.SWITCH
        and not (h.intent is not None and h.intent.host.build_on is BuildOn.HOST)
    ]
    names = [c.name for c in defining] + [h.name for h in switching]
    names += [image_key(c.name) for c in changes if c.kind in _MAKES_OVERLAY]
    names += [k for c in changes if c.kind in _STARTS for k in _share_keys(c, unbuilt)]
    to_build = tuple(sorted({unbuilt[n] for n in names if n in unbuilt}))
    if to_build:
        nodes[BUILD_KEY] = BuildClosures(to_build)
    wanted = {c.intent.kernel.name for c in defining if isinstance(c.intent, GuestIntent)}
    for name, directory in sorted(kernels.items()):
        if name in wanted:
            kernel = BuildKernel(name, Path(directory))
            nodes[kernel.key] = kernel
    return to_build, nodes


def _bounds(
    starts: dict[str, str],
    ends: dict[str, str],
    name: str,
    steps: list[tuple[Action, list[str]]],
    *,
    old_copy: bool,
) -> None:
    """Record a machine's first and last action (`after` orders machines by them). A moved
    guest starts with its old copy's (the new copy waits for it) and ends where it lives."""
    if not steps:
        return
    if old_copy:
        starts[name] = steps[0][0].key
        ends.setdefault(name, steps[-1][0].key)
    else:
        starts.setdefault(name, steps[0][0].key)
        ends[name] = steps[-1][0].key


def make_plan(
    diff: Diff,
    unbuilt: dict[str, str],
    kernels: Mapping[str, str] | None = None,
    *,
    stale_kernels: tuple[str, ...] = (),
    stale_copies: tuple[tuple[str, str], ...] = (),
) -> Plan:
    """graph.make_plan's, for a diff with something to do (its arguments are the same)."""
    waits = _waits(diff)
    blocked = _blocked(diff, waits)
    changes = [c for c in diff.changes if c.name not in blocked]
    host_changes = [h for h in diff.hosts if h.name not in blocked]
    to_build, nodes = _builds(changes, host_changes, unbuilt, kernels or {})
    edges: list[tuple[str, str]] = []
    last: dict[str, str] = {}  # each guest's last action
    first: dict[str, str] = {}  # the first action of each guest where it now lives
    gone: dict[str, str] = {}  # the last action of a moved guest's old copy
    starts: dict[str, str] = {}  # each machine's first action (a moved guest's old copy's)
    ends: dict[str, str] = {}  # each machine's last action (where a guest now lives)
    for change in changes:
        needs = [BUILD_KEY] if change.name in unbuilt else []
        if change.kind in _MAKES_OVERLAY and image_key(change.name) in unbuilt:
            needs = [BUILD_KEY]
        if change.kind in _STARTS and _share_keys(change, unbuilt):
            needs = [BUILD_KEY]
        if (
            isinstance(change.intent, GuestIntent)
            and kernel_key(change.intent.kernel.name) in nodes
        ):
            needs.append(kernel_key(change.intent.kernel.name))
        steps = _guest_actions(change, needs)
        for action, deps in steps:
            nodes[action.key] = action
            edges.extend((dep, action.key) for dep in deps)
            last[change.name] = action.key
            if change.moved_to:
                gone[change.name] = action.key
            else:
                first.setdefault(change.name, action.key)
        _bounds(starts, ends, change.name, steps, old_copy=bool(change.moved_to))
    # A moved guest: its old copy is gone before the new one is made (one copy runs, and
    # the old one's undefine releases the GC roots the new one's define then takes).
    edges.extend((gone[n], first[n]) for n in sorted(gone) if n in first)
    for roots in diff.roots:
        # After the guest's own actions: a define or start syncs its roots, so this one is
        # then found satisfied; alone, it touches only the roots, never the guest.
        action = SyncGcRoots(GuestRef(roots.guest, roots.hypervisor, roots.domain))
        nodes[action.key] = action
        if roots.guest in last:
            edges.append((last[roots.guest], action.key))
    for host in host_changes:
        needs = [BUILD_KEY] if host.name in unbuilt and BUILD_KEY in nodes else []
        if host.intent is not None and host.intent.machine == "disk guest" and host.name in last:
            needs.append(last[host.name])  # a disk guest's switch comes after its restart
        steps = _host_actions(host, needs)
        for action, deps in steps:
            nodes[action.key] = action
            edges.extend((dep, action.key) for dep in deps)
        _bounds(starts, ends, host.name, steps, old_copy=False)
    # `after`: a machine's first action waits for the last action of each machine it comes
    # after that has any (one with none is as desired, or blocked it above). Nothing else
    # orders machines: the rest run in parallel.
    edges.extend(
        (ends[dep], starts[name])
        for name in sorted(starts)
        for dep in waits.get(name, ())
        if dep in ends
    )
    for directory in stale_kernels:
        remove = RemoveKernel(Path(directory))
        nodes[remove.key] = remove
    for hypervisor, directory in stale_copies:
        remove = RemoveKernel(Path(directory), hypervisor)
        nodes[remove.key] = remove
    for problem in diff.views:
        view = MakeView(problem.view, problem.hypervisor)
        nodes[view.key] = view
    plan = Plan(
        diff=diff,
        nodes=nodes,
        edges=tuple(edges),
        to_build=to_build,
        kernels_to_build=tuple(
            (a.name, str(a.directory)) for a in nodes.values() if isinstance(a, BuildKernel)
        ),
        kernels_to_remove=stale_kernels,
        kernel_copies_to_remove=stale_copies,
        blocked=blocked,
    )
    plan.action_keys()  # a cycle is a bug: fail here, not half-way through apply
    return plan
