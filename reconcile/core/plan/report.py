"""Rendering a plan for people (Terraform-like text) and for machines (a stable JSON document).

The JSON format is documented in docs/plan-format.md; `format_version` changes when a
field's meaning does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from reconcile.core.desired import BuildOn, GuestState
from reconcile.core.guests.diff import ChangeKind, GuestChange, RootChange, ViewChange
from reconcile.core.guests.disk import DiskIntent
from reconcile.core.guests.intent import GuestIntent
from reconcile.core.hosts.baremetal import HostChange, HostChangeKind
from reconcile.core.plan.diff import Diff
from reconcile.core.plan.graph import Plan
from reconcile.core.units import format_size

FORMAT_VERSION = 1

_SUMMARY_ORDER = (
    ChangeKind.CREATE,
    ChangeKind.START,
    ChangeKind.WAIT,
    ChangeKind.RESTART,
    ChangeKind.RECREATE,
    ChangeKind.RESIZE,
    ChangeKind.REDEFINE,
    ChangeKind.STOP,
    ChangeKind.DESTROY,
)
_LABELS = {
    ChangeKind.CREATE: "will be created and started",
    ChangeKind.START: "will be started",
    ChangeKind.WAIT: "will be waited for (readiness not yet seen)",
    ChangeKind.RESTART: "will be cold-restarted (shutdown, then start)",
    ChangeKind.RECREATE: "will be recreated: ITS DISK IS WIPED (shutdown, new overlay, start)",
    ChangeKind.RESIZE: "will have its disk grown (it keeps running)",
    ChangeKind.REDEFINE: "will be redefined (takes effect at its next start)",
    ChangeKind.STOP: "will be shut down",
    ChangeKind.DESTROY: "will be destroyed",
    ChangeKind.KEEP: "is kept",
    ChangeKind.UNKNOWN: "is unknown and left alone",
    ChangeKind.CONFLICT: "cannot be managed",
}


# _CLOSURES: reconcile.core.closures is loaded by the functions that render a closure or a
# kernel config change, not with this module: a plan with nothing to change has neither.


def _blocked_head(head: str, label: str, why: str) -> list[str]:
    """A blocked machine's first lines: what it would be, and what it waits for."""
    return [
        f"{head} is blocked (it {label.replace('will ', 'would ', 1)})",
        f"      ({why}: nothing of it is planned)",
    ]


def _label(change: GuestChange) -> str:
    if (
        change.kind is ChangeKind.CREATE
        and change.intent is not None
        and change.intent.guest.state is GuestState.STOPPED
    ):
        return 'will be created, not started (state = "stopped")'
    return _LABELS.get(change.kind, "")


def _change_lines(change: GuestChange, blocked: str = "") -> list[str]:
    from reconcile.core import closures  # noqa: PLC0415 - see _CLOSURES

    head = f"  {change.kind.symbol} guest {change.name}"
    lines = [f"{head} {_label(change)}".rstrip()]
    if blocked:
        lines = _blocked_head(f"  ? guest {change.name}", _label(change), blocked)
    if change.kind is ChangeKind.CREATE and isinstance(change.intent, GuestIntent):
        intent = change.intent
        lines += [
            f"      system:  {intent.toplevel}",
            f"      kernel:  {intent.kernel.name} ({intent.kernel.image})",
            f"      memory:  {intent.guest.memory_mib} MiB",
            f"      vcpus:   {intent.guest.vcpus}",
            f"      domain:  {intent.domain} on {intent.guest.hypervisor}",
        ]
    elif change.kind is ChangeKind.CREATE and isinstance(change.intent, DiskIntent):
        disk = change.intent
        lines += [
            f"      system:  {disk.toplevel}",
            f"      image:   {disk.image} ({disk.definition.base_format.value})",
            f"      disk:    {format_size(disk.size_bytes)} overlay {disk.definition.overlay}",
            f"      memory:  {disk.guest.memory_mib} MiB",
            f"      vcpus:   {disk.guest.vcpus}",
            f"      domain:  {disk.domain} on {disk.guest.hypervisor}",
        ]
        lines += [
            f"      data:    {d.name} {format_size(size)} ({d.path})"
            for d, size in zip(disk.definition.data_disks, disk.data_sizes, strict=True)
        ]
    if change.address:
        lines.append(f"      address: {change.address}")
    width = max((len(r.field) for r in change.reasons), default=0)
    for reason in change.reasons:
        lines.append(f"      {reason.field.ljust(width)}: {reason.before} -> {reason.after}")
    if change.closure is not None:
        lines += closures.text_lines(change.closure)
    if change.kconfig:
        lines += _kconfig_lines(change.kconfig)
    if change.intent is not None and change.intent.guest.after and change.kind.is_change():
        lines.append(f"      after: {', '.join(change.intent.guest.after)} (manifest order)")
    if change.note:
        lines.append(f"      ({change.note})")
    return lines


def _kconfig_lines(options: tuple[tuple[str, str, str], ...]) -> list[str]:
    from reconcile.core import closures  # noqa: PLC0415 - see _CLOSURES

    lines = [f"      kernel config: {len(options)} option(s) differ"]
    lines += [f"        CONFIG_{o}: {b} -> {a}" for o, b, a in options[: closures.TOP]]
    if len(options) > closures.TOP:
        lines.append(f"        ... and {len(options) - closures.TOP} more (--json lists all)")
    return lines


_HOST_LABELS = {
    HostChangeKind.SWITCH: "will be switched to its new system",
    HostChangeKind.REBOOT: "will be rebooted into its new system",
    HostChangeKind.VERIFY: "will have its health checked",
    HostChangeKind.UNKNOWN: "is unknown and left alone",
    HostChangeKind.NOOP: "is as desired",
}


def _host_lines(change: HostChange, blocked: str = "") -> list[str]:
    from reconcile.core import closures  # noqa: PLC0415 - see _CLOSURES

    symbol = {HostChangeKind.UNKNOWN: "?", HostChangeKind.NOOP: " "}.get(change.kind, "~")
    machine = change.intent.machine if change.intent is not None else "host"
    head = f"  {symbol} {machine} {change.name} ({change.target})"
    lines = [f"{head} {_HOST_LABELS.get(change.kind, '')}".rstrip()]
    if blocked:
        where = f"  ? {machine} {change.name} ({change.target})"
        lines = _blocked_head(where, _HOST_LABELS.get(change.kind, ""), blocked)
    if change.kind in (HostChangeKind.SWITCH, HostChangeKind.REBOOT):
        lines.append(f"      system: {change.before or '(none)'} -> {change.after}")
    intent = change.intent
    if change.kind is HostChangeKind.SWITCH and intent and intent.host.build_on is BuildOn.HOST:
        lines.append('      built on the host (build_on = "host"), nothing copied back')
    if change.closure is not None:
        lines += closures.text_lines(change.closure)
    if change.intent is not None and change.intent.host.after and change.kind.is_change():
        lines.append(f"      after: {', '.join(change.intent.host.after)} (manifest order)")
    if change.note:
        lines.append(f"      ({change.note})")
    return lines


THERE = "hypervisor "  # a `built_on` entry of a hypervisor that builds its guests' systems


def _removal_lines(plan: Plan) -> list[str]:
    """Kernel builds here, and kernel copies on remote hypervisors, that --prune removes."""
    out = []
    if plan.kernels_to_remove:
        out.append(
            f"Kernel builds to remove, used by nothing (--prune) ({len(plan.kernels_to_remove)}):"
        )
        out += [f"  - {directory}" for directory in plan.kernels_to_remove]
        out.append("")
    if plan.kernel_copies_to_remove:
        count = len(plan.kernel_copies_to_remove)
        out.append(f"Kernel copies to remove, booted by nothing there (--prune) ({count}):")
        out += [f"  - {d} on hypervisor '{h}'" for h, d in plan.kernel_copies_to_remove]
        out.append("")
    return out


def _build_lines(plan: Plan) -> list[str]:
    """What the plan builds, and where: its one `nix build`, and hypervisors that build
    their guests' systems themselves (only those with a guest to define)."""
    out = []
    here = tuple(w for w in plan.built_on if not w.startswith(THERE))
    if plan.to_build:
        where = "" if here == ("here",) else f", on {' and '.join(here)}"
        out.append(f"Closures to build ({len(plan.to_build)}{where}):")
        out += [f"  * {i}" for i in plan.to_build]
        out.append("")
    redefined = {c.hypervisor for c in plan.diff.changes if c.redefine and c.kind.is_change()}
    there = [w for w in plan.built_on if w.startswith(THERE) and w.split()[1] in redefined]
    if there:
        out.append('Systems built where their guests run (build_on = "hypervisor"):')
        out += [f"  * {w}" for w in there]
        out.append("")
    return out


def _view_lines(change: ViewChange) -> list[str]:
    users = ", ".join(f"{guest} ({tag})" for guest, tag in change.users)
    where = f" on hypervisor '{change.hypervisor}'" if change.hypervisor else ""
    return [
        f"  ! view {change.view.path} of {change.view.source}{where}: {change.state.problem}",
        f"      (made anew, read-only; shares {users})",
    ]


def _root_lines(change: RootChange) -> list[str]:
    lines = [f"  ! guest {change.guest}: GC roots of its closures"]
    for problem in change.problems:
        seen = f" (-> {problem.observed})" if problem.state.value == "elsewhere" else ""
        lines.append(f"      {problem.toplevel}: {problem.state.problem}{seen}")
    lines.append("      (made anew; the guest is not touched)")
    return lines


def unmanaged_counts(unmanaged: Iterable[tuple[str, str]]) -> list[str]:
    """One line per hypervisor saying how many of its domains are not this lab's: a
    hypervisor with a thousand domains of others must not bury the plan (or drift)."""
    counts = Counter(hv for hv, _domain in unmanaged)
    return [
        f"{n} domains on {hv} are not this lab's (never touched; --show-unmanaged lists them)"
        if n != 1
        else f"1 domain on {hv} is not this lab's (never touched; --show-unmanaged lists it)"
        for hv, n in sorted(counts.items())
    ]


def _state_sections(diff: Diff, *, show_unmanaged: bool = False) -> list[str]:
    """Read-only views, GC roots and unmanaged domains (a count per hypervisor unless
    `show_unmanaged`), each a section when there is any."""
    out: list[str] = []
    if diff.views:
        out.append("Read-only views (the host side of read-only shares):")
        for view in diff.views:
            out += _view_lines(view)
        out.append("")
    if diff.roots:
        out.append("GC roots (what keeps each guest's closures from garbage collection):")
        for roots in diff.roots:
            out += _root_lines(roots)
        out.append("")
    if diff.unmanaged and show_unmanaged:
        out.append("Unmanaged domains (no reconcile mark for this lab; never touched):")
        out += [f"  {domain} on {hv}" for hv, domain in diff.unmanaged]
        out.append("")
    elif diff.unmanaged:
        out += [*unmanaged_counts(diff.unmanaged), ""]
    return out


def render_text(plan: Plan, *, show_unmanaged: bool = False) -> str:
    """The plan for people; unmanaged domains are counted, or listed with `show_unmanaged`."""
    diff = plan.diff
    out: list[str] = []
    shown = [c for c in diff.changes if c.kind is not ChangeKind.NOOP]
    if plan.kernels_to_build:
        out.append(f"Kernels to build ({len(plan.kernels_to_build)}):")
        out += [
            f"  * {name} in {directory}"
            + (f", on {plan.kernels_built_on[name]}" if name in plan.kernels_built_on else "")
            for name, directory in plan.kernels_to_build
        ]
        out.append("")
    out += _removal_lines(plan)
    out += _build_lines(plan)
    if shown:
        out.append(f"Lab '{diff.lab}':")
        for change in shown:
            out += _change_lines(change, plan.blocked.get(change.name, ""))
        out.append("")
    # in-sync hosts only when there is something to know (degraded, a boot still pending)
    hosts = [h for h in diff.hosts if h.kind is not HostChangeKind.NOOP or h.note]
    if hosts:
        out.append("Hosts:")
        for host in hosts:
            out += _host_lines(host, plan.blocked.get(host.name, ""))
        out.append("")
    out += _state_sections(diff, show_unmanaged=show_unmanaged)
    # a blocked machine's changes are not planned: counted as blocked, not as changes
    counts = Counter(c.kind for c in diff.changes if c.name not in plan.blocked)
    if plan.has_changes():
        parts = [f"{counts[k]} to {k.value}" for k in _SUMMARY_ORDER if counts[k]]
        host_counts = Counter(h.kind for h in diff.hosts if h.name not in plan.blocked)
        parts += [
            f"{host_counts[k]} host(s) to {k.value}"
            for k in (HostChangeKind.SWITCH, HostChangeKind.REBOOT, HostChangeKind.VERIFY)
            if host_counts[k]
        ]
        if plan.kernels_to_remove:
            parts.append(f"{len(plan.kernels_to_remove)} kernel build(s) to remove")
        if plan.kernel_copies_to_remove:
            parts.append(f"{len(plan.kernel_copies_to_remove)} kernel copy(ies) to remove")
        if diff.views:
            parts.append(f"{len(diff.views)} view(s) to make read-only")
        if diff.roots:
            parts.append(f"{len(diff.roots)} guest(s) with GC roots to restore")
        parts += _blocked_part(plan)
        out.append("Plan: " + ", ".join(parts) + ".")
    elif counts[ChangeKind.CONFLICT] or plan.blocked:
        parts = [f"{n} conflict(s)" for n in [counts[ChangeKind.CONFLICT]] if n]
        out.append(
            f"No changes can be made, but lab '{diff.lab}' does not match the manifest: "
            + ", ".join(parts + _blocked_part(plan))
            + "."
        )
    else:
        out.append(f"No changes. Lab '{diff.lab}' matches the manifest.")
    problems = counts[ChangeKind.UNKNOWN] + counts[ChangeKind.CONFLICT]
    problems += sum(1 for h in diff.hosts if h.kind is HostChangeKind.UNKNOWN) + len(plan.blocked)
    if problems:
        out.append(f"Warning: {problems} guest(s) or host(s) could not be planned (see above).")
    return "\n".join(out) + "\n"


def _blocked_part(plan: Plan) -> list[str]:
    """The summary's count of blocked machines, when there are any."""
    n = len(plan.blocked)
    return [f"{n} blocked (waiting for what cannot be planned)"] if n else []


def _change_json(change: GuestChange) -> dict[str, Any]:
    from reconcile.core import closures  # noqa: PLC0415 - see _CLOSURES

    doc: dict[str, Any] = {
        "guest": change.name,
        "domain": change.domain,
        "hypervisor": change.hypervisor,
        "change": change.kind.value,
        "reasons": [
            {"field": r.field, "before": r.before, "after": r.after} for r in change.reasons
        ],
        "note": change.note,
    }
    if isinstance(change.intent, GuestIntent):
        doc["desired"] = {
            "system": change.intent.toplevel,
            "kernel": str(change.intent.kernel.image),
            "memory_mib": change.intent.guest.memory_mib,
            "vcpus": change.intent.guest.vcpus,
            "spec_hash": change.intent.spec_hash,
        }
    elif isinstance(change.intent, DiskIntent):
        doc["desired"] = {
            "system": change.intent.toplevel,
            "image": change.intent.image,
            "disk_bytes": change.intent.size_bytes,
            "memory_mib": change.intent.guest.memory_mib,
            "vcpus": change.intent.guest.vcpus,
            "spec_hash": change.intent.spec_hash,
        }
    if change.mode != "imageless":
        doc["mode"] = change.mode
        doc["address"] = change.address or None
    if change.resize_to:
        doc["disk_bytes"] = change.resize_to
    if change.closure is not None:  # only for a system change (docs/plan-format.md)
        doc["closure"] = closures.document(change.closure)
    if change.kconfig:  # only for a change of a built kernel
        doc["kernel_config"] = [
            {"option": o, "before": b, "after": a} for o, b, a in change.kconfig
        ]
    return doc


def _host_json(change: HostChange) -> dict[str, Any]:
    from reconcile.core import closures  # noqa: PLC0415 - see _CLOSURES

    doc: dict[str, Any] = {
        "host": change.name,
        "target": change.target,
        "change": change.kind.value,
        "before": change.before,
        "after": change.after,
        "note": change.note,
    }
    if change.intent is not None:
        doc["desired"] = {
            "system": change.intent.toplevel,
            "activation": change.intent.host.activation.value,
            "reboot": change.reboot,
        }
    if change.closure is not None:
        doc["closure"] = closures.document(change.closure)
    return doc


def _blocked_json(doc: dict[str, Any], plan: Plan, name: str) -> dict[str, Any]:
    """A blocked machine's change keeps what it would be and says why it is not planned
    (`blocked`, only then: docs/plan-format.md); it has no actions."""
    if name in plan.blocked:
        doc["blocked"] = plan.blocked[name]
    return doc


def render_json(plan: Plan) -> dict[str, Any]:
    diff = plan.diff
    counts = Counter(c.kind.value for c in diff.changes)
    return {
        "format_version": FORMAT_VERSION,
        "lab": diff.lab,
        "has_changes": plan.has_changes(),
        "summary": {k.value: counts.get(k.value, 0) for k in ChangeKind},
        "to_build": list(plan.to_build),
        "built_on": list(plan.built_on),
        "kernels_to_remove": list(plan.kernels_to_remove),
        "kernel_copies_to_remove": [
            {"hypervisor": h, "directory": d} for h, d in plan.kernel_copies_to_remove
        ],
        "kernels_to_build": [
            {
                "kernel": name,
                "directory": directory,
                "built_on": plan.kernels_built_on.get(name, "here"),
            }
            for name, directory in plan.kernels_to_build
        ],
        "changes": [_blocked_json(_change_json(c), plan, c.name) for c in diff.changes],
        "hosts": [_blocked_json(_host_json(h), plan, h.name) for h in diff.hosts],
        "host_summary": {
            k.value: sum(1 for h in diff.hosts if h.kind is k) for k in HostChangeKind
        },
        "actions": [
            {
                "key": a.key,
                "kind": a.kind.value,
                "subject": a.subject,
                "depends_on": plan.dependencies(a.key),
            }
            for a in plan.actions()
        ],
        "unmanaged": [{"hypervisor": hv, "domain": d} for hv, d in diff.unmanaged],
        "conflicts": [
            {"name": name, "note": note} for name, note in sorted(diff.conflicts().items())
        ],
        "gc_roots": [
            {
                "guest": r.guest,
                "hypervisor": r.hypervisor,
                "domain": r.domain,
                "problems": [
                    {"toplevel": p.toplevel, "state": p.state.value, "observed": p.observed}
                    for p in r.problems
                ],
            }
            for r in diff.roots
        ],
        "views": [
            {
                "path": str(v.view.path),
                "source": str(v.view.source),
                "state": v.state.value,
                "users": [{"guest": guest, "tag": tag} for guest, tag in v.users],
                "hypervisor": v.hypervisor,  # null: this machine
            }
            for v in diff.views
        ],
    }


def _dot(text: str) -> str:
    """A DOT string: quoted, with backslashes and quotes escaped and newlines as `\\n`."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def render_dot(plan: Plan) -> str:
    """The plan's graph in Graphviz DOT (`plan --graph`): a node per action, named by its
    key and labelled with its kind and subject, and an edge from each dependency to its
    dependent; nodes in the plan's order, edges by dependent, then dependency."""
    keys = plan.action_keys()
    rank = {key: i for i, key in enumerate(keys)}
    lines = ["digraph plan {", "  rankdir=LR;", "  node [shape=box];"]
    for key in keys:
        action = plan.action(key)
        label = _dot(f"{action.kind.value}\n{action.subject}")
        lines.append(f"  {_dot(key)} [label={label}];")
    for dependency, dependent in sorted(set(plan.edges), key=lambda e: (rank[e[1]], rank[e[0]])):
        lines.append(f"  {_dot(dependency)} -> {_dot(dependent)};")
    lines.append("}")
    return "\n".join(lines) + "\n"
