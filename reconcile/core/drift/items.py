"""From a plan's diff to a drift report: what differs from the manifest, field by field.

Pure. The diff already holds every comparison (the plan is made from it); this module only
says it as drift: `in-sync`, `drifted`, `missing`, `unknown` or `ignored`. Times ("since
when") come from the run history and are joined in by `with_since`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from reconcile.core.desired import Activation
from reconcile.core.drift.report import DriftField, DriftItem, DriftReport, DriftStatus
from reconcile.core.exits import ExitCode
from reconcile.core.guests.diff import ChangeKind, GuestChange
from reconcile.core.hosts.baremetal import HostChange, HostChangeKind
from reconcile.core.metrics import Metric, Sample
from reconcile.core.plan.diff import Diff

DriftKey = tuple[str, str, str]  # (kind, name, field)
ABSENT = "(none)"


def _guest_item(change: GuestChange) -> DriftItem:
    # a disk guest is also where it is reached: its forwarded port, address or lease
    where = f"{change.hypervisor} at {change.address}" if change.address else change.hypervisor
    item = DriftItem("guest", change.name, DriftStatus.IN_SYNC, where=where)
    fields = [DriftField(r.field, r.after, r.before) for r in change.reasons]
    match change.kind:
        case ChangeKind.NOOP:
            return item
        case ChangeKind.UNKNOWN:
            return replace(item, status=DriftStatus.UNKNOWN, note=change.note)
        case ChangeKind.CONFLICT:  # cannot converge: an error, like unknown (exit 1)
            return replace(item, status=DriftStatus.UNKNOWN, note=f"conflict: {change.note}")
        case ChangeKind.CREATE:
            note = f"domain {change.domain} is absent"
            return replace(item, status=DriftStatus.MISSING, note=note)
        case ChangeKind.START:
            state = change.observed_state
            observed = state.value if state is not None else "not running"
            fields.insert(0, DriftField("state", "running", observed))
        case ChangeKind.STOP:
            fields.insert(0, DriftField("state", "stopped", "running"))
        case ChangeKind.WAIT:
            fields.insert(0, DriftField("ready", "seen ready", "never seen ready"))
        case ChangeKind.KEEP | ChangeKind.DESTROY:
            fields = [DriftField("presence", "absent (not in the manifest)", "defined")]
        case ChangeKind.REDEFINE | ChangeKind.RESTART:
            pass
    return replace(
        item,
        status=DriftStatus.DRIFTED,
        fields=tuple(fields),
        note=change.note,
        closure=change.closure,
    )


def _host_item(change: HostChange) -> DriftItem:
    item = DriftItem("host", change.name, DriftStatus.IN_SYNC, where=change.target)
    seen = change.observation
    fields: list[DriftField] = []
    match change.kind:
        case HostChangeKind.UNKNOWN:
            return replace(item, status=DriftStatus.UNKNOWN, note=change.note)
        case HostChangeKind.SWITCH:
            boot = change.intent is not None and change.intent.host.activation is Activation.BOOT
            field = "boot system" if boot else "system"
            fields.append(DriftField(field, change.after or ABSENT, change.before or ABSENT))
        case HostChangeKind.REBOOT:
            fields.append(DriftField("booted", change.after or ABSENT, change.before or ABSENT))
        case HostChangeKind.VERIFY:
            fields.append(DriftField("health", "checks passed", "never confirmed"))
        case HostChangeKind.NOOP:
            pending = seen is not None and change.after not in (seen.booted, seen.current)
            if seen is not None and change.after and pending:  # `boot`, not rebooted yet
                fields.append(DriftField("booted", change.after, seen.booted or ABSENT))
    if seen is not None and seen.systemd not in ("running", "absent"):
        fields.append(DriftField("systemd", "running", seen.systemd))
    if not fields:
        return item
    return replace(
        item,
        status=DriftStatus.DRIFTED,
        fields=tuple(fields),
        note=change.note,
        closure=change.closure,
    )


def ignored(kind: str, name: str, field: str, patterns: Sequence[str]) -> str | None:
    """The first pattern (`kind.name.field`, shell wildcards) that accepts this drift."""
    key = f"{kind}.{name}.{field}"
    return next((p for p in patterns if fnmatch.fnmatchcase(key, p)), None)


def _apply_ignores(item: DriftItem, patterns: Sequence[str]) -> DriftItem:
    if item.status is not DriftStatus.DRIFTED or not patterns:
        return item
    kept = [f for f in item.fields if not ignored(item.kind, item.name, f.field, patterns)]
    if kept:
        return replace(item, fields=tuple(kept))
    accepted = sorted({ignored(item.kind, item.name, f.field, patterns) or "" for f in item.fields})
    return replace(
        item,
        status=DriftStatus.IGNORED,
        note="accepted by ignore pattern " + ", ".join(f"'{p}'" for p in accepted),
    )


def _with_views(item: DriftItem, diff: Diff) -> DriftItem:
    """A guest whose read-only share has a bad host-side view has drifted in that share."""
    fields = tuple(
        DriftField(f"share {tag}", f"read-only view {v.view.path}", v.state.value)
        for v in diff.views
        for guest, tag in v.users
        if guest == item.name
    )
    if not fields or item.status not in (DriftStatus.IN_SYNC, DriftStatus.DRIFTED):
        return item
    return replace(item, status=DriftStatus.DRIFTED, fields=item.fields + fields)


def _with_roots(item: DriftItem, diff: Diff) -> DriftItem:
    """A guest whose closures' GC roots are missing, point elsewhere or are unregistered
    has drifted in its `gc roots` (one field, so the history keeps one time for it)."""
    found = next((r for r in diff.roots if r.guest == item.name), None)
    if found is None or item.status not in (DriftStatus.IN_SYNC, DriftStatus.DRIFTED):
        return item
    field = DriftField(
        "gc roots",
        ", ".join(p.toplevel for p in found.problems),
        "; ".join(
            f"{p.toplevel.rsplit('/', 1)[-1]}: {p.state.problem}"
            + (f" ({p.observed})" if p.observed and p.observed != p.toplevel else "")
            for p in found.problems
        ),
    )
    return replace(item, status=DriftStatus.DRIFTED, fields=(*item.fields, field))


def _with_system(item: DriftItem, systems: Mapping[str, HostChange]) -> DriftItem:
    """A running disk guest's system, observed over SSH as a host's is, is a field of the
    guest (`system`), not a host of its own."""
    change = systems.get(item.name)
    if change is None or item.status not in (DriftStatus.IN_SYNC, DriftStatus.DRIFTED):
        return item
    system = _host_item(change)
    if system.status is DriftStatus.UNKNOWN:
        return replace(item, status=DriftStatus.UNKNOWN, note=f"its system: {system.note}")
    if system.status is not DriftStatus.DRIFTED:
        return item
    return replace(
        item,
        status=DriftStatus.DRIFTED,
        fields=(*item.fields, *system.fields),
        note=item.note or system.note,
        closure=item.closure or system.closure,
    )


def drift_items(diff: Diff, ignore: Sequence[str] = ()) -> list[DriftItem]:
    """Every guest and host of the diff as a drift item, ignore patterns applied."""
    systems = {
        h.name: h for h in diff.hosts if h.intent is not None and h.intent.machine == "disk guest"
    }
    items = [
        _with_system(_with_roots(_with_views(_guest_item(c), diff), diff), systems)
        for c in diff.changes
    ]
    items += [_host_item(h) for h in diff.hosts if h.name not in systems]
    return [_apply_ignores(i, ignore) for i in items]


def drifted_fields(items: Iterable[DriftItem]) -> list[tuple[str, str, str, str, str]]:
    """(kind, name, field, desired, observed) for the history; a missing object is one field."""
    rows = []
    for item in items:
        if item.status is DriftStatus.MISSING:
            rows.append((item.kind, item.name, "presence", "present", "absent"))
        elif item.status is DriftStatus.DRIFTED:
            rows += [(item.kind, item.name, f.field, f.desired, f.observed) for f in item.fields]
    return rows


def with_since(items: Iterable[DriftItem], since: Mapping[DriftKey, float]) -> list[DriftItem]:
    """Items with each field's first-seen time, and the item's (its earliest field's)."""
    out = []
    for item in items:
        if item.status is DriftStatus.MISSING:
            out.append(replace(item, since=since.get((item.kind, item.name, "presence"))))
            continue
        fields = tuple(
            replace(f, since=since.get((item.kind, item.name, f.field))) for f in item.fields
        )
        times = [f.since for f in fields if f.since is not None]
        out.append(replace(item, fields=fields, since=min(times) if times else None))
    return out


def report_metrics(
    report: DriftReport, *, command: str, exit_code: ExitCode, finished: float, seconds: float
) -> list[Metric]:
    """The node_exporter textfile metrics of one run."""
    lab = {"lab": report.lab}
    run = {**lab, "command": command}
    by_kind_status = [
        Sample(
            float(sum(1 for i in report.items if i.kind == kind and i.status is status)),
            {**lab, "kind": kind, "status": status.value},
        )
        for kind in ("guest", "host")
        for status in DriftStatus
    ]
    counts = report.counts
    drifted = counts[DriftStatus.DRIFTED] + counts[DriftStatus.MISSING]
    objects = [
        Metric(
            "reconcile_managed_objects",
            "Guests and hosts of the manifest, by observed status.",
            "gauge",
            by_kind_status,
        ),
        Metric(
            "reconcile_drifted_objects",
            "Objects that differ from the manifest (drifted or missing).",
            "gauge",
            [Sample(float(drifted), lab)],
        ),
        Metric(
            "reconcile_unknown_objects",
            "Objects that could not be observed.",
            "gauge",
            [Sample(float(counts[DriftStatus.UNKNOWN]), lab)],
        ),
        Metric(
            "reconcile_unmanaged_domains",
            "Domains on the lab's hypervisors without this lab's mark.",
            "gauge",
            [Sample(float(len(report.unmanaged)), lab)],
        ),
    ]
    # A run that did not observe the lab (a GitOps cycle that failed before) has no counts
    # to give: zeros would read as "nothing drifted".
    return [
        *(objects if report.observed else []),
        Metric(
            "reconcile_last_run_timestamp_seconds",
            "When the last run of this command finished (unix time).",
            "gauge",
            [Sample(finished, run)],
        ),
        Metric(
            "reconcile_last_run_duration_seconds",
            "How long the last run of this command took.",
            "gauge",
            [Sample(round(seconds, 3), run)],
        ),
        Metric(
            "reconcile_last_run_exit_code",
            "The exit code of the last run of this command (0 ok, 1 error, 2 drift, ...).",
            "gauge",
            [Sample(float(exit_code), run)],
        ),
        Metric(
            "reconcile_last_run_success",
            "1 when the last run of this command exited 0, else 0.",
            "gauge",
            [Sample(1.0 if exit_code is ExitCode.OK else 0.0, run)],
        ),
    ]
