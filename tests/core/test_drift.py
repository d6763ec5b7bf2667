"""Pure core: a plan's diff as drift, ignore patterns, since-when, metrics, timer units."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from reconcile.core.drift.items import (
    drift_items,
    drifted_fields,
    ignored,
    report_metrics,
    with_since,
)
from reconcile.core.drift.report import DriftReport, DriftStatus
from reconcile.core.exits import ExitCode
from reconcile.core.gitops.timer_units import service_unit, timer_unit
from reconcile.core.guests.diff import (
    TRANSIENT,
    ChangeKind,
    FieldChange,
    GuestChange,
    RootChange,
)
from reconcile.core.guests.gcroots import RootProblem, RootState
from reconcile.core.guests.observed import DomainState
from reconcile.core.hosts.baremetal import HostChangeKind, HostIntent, HostObservation, diff_host
from reconcile.core.manifest import parse_manifest
from reconcile.core.metrics import render_metrics
from reconcile.core.plan.diff import Diff
from tests.core.test_metrics import parse as parse_metrics
from tests.core.test_plan import lab_plan  # the plan goldens' scenarios

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHf0ZbUiv2XH5hs3mSz0t8Kb0cYt6a9eXr0JqG3VZbWc"


def guest(
    kind: ChangeKind,
    *reasons: FieldChange,
    note: str = "",
    name: str = "g",
    state: DomainState | None = None,
) -> GuestChange:
    return GuestChange(
        name, f"lab-{name}", "local", kind, reasons=reasons, note=note, observed_state=state
    )


def host_change(current: str | None, **seen: object) -> object:
    manifest = parse_manifest(
        f"""
[lab]
name = "t"
state_dir = "/s"
[hosts.bm1]
system = "s"
ssh = {{ target = "10.0.0.2", host_key = "{KEY}" }}
""".encode(),
        Path("/m.toml"),
    )
    intent = HostIntent(manifest.hosts["bm1"], "/nix/store/new", "i")
    values: dict[str, object] = {
        "current": current,
        "booted": current,
        "boot_id": "b",
        "systemd": "running",
        "profile": current,
        "confirmed": current,
    }
    values.update(seen)
    return diff_host(intent, HostObservation(**values))  # type: ignore[arg-type]


def items_of(*changes: GuestChange, hosts: tuple[object, ...] = (), ignore: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    return {i.name: i for i in drift_items(Diff("t", changes, (), hosts=hosts), ignore)}  # type: ignore[arg-type]


def test_guest_changes_read_as_drift() -> None:
    memory = FieldChange("memory", "300 MiB", "384 MiB")
    got = items_of(
        guest(ChangeKind.NOOP, name="a"),
        guest(ChangeKind.CREATE, name="b"),
        guest(ChangeKind.START, note="this note is not read", name="c", state=DomainState.SHUTOFF),
        guest(ChangeKind.REDEFINE, memory, name="d"),
        guest(ChangeKind.UNKNOWN, note="libvirt unreachable", name="e"),
        guest(ChangeKind.KEEP, note="not in the manifest", name="f"),
    )
    assert {n: i.status for n, i in got.items()} == {
        "a": DriftStatus.IN_SYNC,
        "b": DriftStatus.MISSING,
        "c": DriftStatus.DRIFTED,
        "d": DriftStatus.DRIFTED,
        "e": DriftStatus.UNKNOWN,
        "f": DriftStatus.DRIFTED,
    }
    state = got["c"].fields[0]
    assert (state.field, state.desired, state.observed) == ("state", "running", "shutoff")
    mem = got["d"].fields[0]
    assert (mem.field, mem.desired, mem.observed) == ("memory", "384 MiB", "300 MiB")
    assert got["e"].note == "libvirt unreachable"
    assert got["f"].fields[0].field == "presence"


def test_host_changes_read_as_drift() -> None:
    switch = host_change("/nix/store/old")
    verify = host_change("/nix/store/new", confirmed="/nix/store/old")
    degraded = host_change("/nix/store/new", systemd="degraded")
    got = items_of(hosts=(switch,))
    item = got["bm1"]
    assert item.status is DriftStatus.DRIFTED and item.where == "root@10.0.0.2:22"
    assert (item.fields[0].desired, item.fields[0].observed) == ("/nix/store/new", "/nix/store/old")
    assert items_of(hosts=(verify,))["bm1"].fields[0].field == "health"
    fields = items_of(hosts=(degraded,))["bm1"].fields
    assert [(f.field, f.desired, f.observed) for f in fields] == [
        ("systemd", "running", "degraded")
    ]
    unknown = diff_host(switch.intent, None, "unreachable")  # type: ignore[attr-defined]
    assert unknown.kind is HostChangeKind.UNKNOWN
    assert items_of(hosts=(unknown,))["bm1"].status is DriftStatus.UNKNOWN


def test_ignore_patterns_accept_fields_and_whole_objects() -> None:
    memory = FieldChange("memory", "300 MiB", "384 MiB")
    vcpus = FieldChange("vcpus", "1", "2")
    assert ignored("guest", "db", "memory", ["guest.*.memory"]) == "guest.*.memory"
    assert ignored("host", "db", "memory", ["guest.*.memory"]) is None
    got = items_of(
        guest(ChangeKind.RESTART, memory, name="db"),
        guest(ChangeKind.RESTART, memory, vcpus, name="web"),
        ignore=("guest.*.memory",),
    )
    assert got["db"].status is DriftStatus.IGNORED
    assert "guest.*.memory" in got["db"].note
    assert got["web"].status is DriftStatus.DRIFTED
    assert [f.field for f in got["web"].fields] == ["vcpus"]


def test_since_when_joins_the_history() -> None:
    memory = FieldChange("memory", "300 MiB", "384 MiB")
    items = list(
        items_of(guest(ChangeKind.REDEFINE, memory), guest(ChangeKind.CREATE, name="m")).values()
    )
    rows = drifted_fields(items)
    assert ("guest", "g", "memory", "384 MiB", "300 MiB") in rows
    assert ("guest", "m", "presence", "present", "absent") in rows
    timed = {
        i.name: i
        for i in with_since(
            items, {("guest", "g", "memory"): 100.0, ("guest", "m", "presence"): 50.0}
        )
    }
    assert timed["g"].since == 100.0 and timed["g"].fields[0].since == 100.0
    assert timed["m"].since == 50.0


def test_metrics_parse_as_prometheus_text() -> None:
    report = DriftReport("t", "/m.toml", 1000.0, tuple(items_of(guest(ChangeKind.CREATE)).values()))
    text = render_metrics(
        report_metrics(
            report, command="drift", exit_code=ExitCode.CHANGES, finished=1000.0, seconds=0.5
        )
    )
    families = parse_metrics(text)
    assert families["reconcile_drifted_objects"].samples[0][1] == 1.0
    assert families["reconcile_last_run_success"].samples[0][1] == 0.0


def test_timer_units() -> None:
    service = service_unit(
        ["/usr/bin/python3", "-m", "reconcile", "gitops", "/srv/my lab/$x%.toml"]
    )
    assert (
        'ExecStart="/usr/bin/python3" "-m" "reconcile" "gitops" "/srv/my lab/$$x%%.toml"' in service
    )
    assert "SuccessExitStatus=2 3 4" in service
    assert "OnUnitInactiveSec=900s" in timer_unit(900)


def test_conflicts_roots_and_persistence_read_as_drift() -> None:
    transient = guest(ChangeKind.REDEFINE, TRANSIENT, name="a")
    conflict = guest(ChangeKind.CONFLICT, note="domain 't-b' exists with no mark", name="b")
    kept = guest(ChangeKind.NOOP, name="c")
    roots = RootChange(
        "c",
        "local",
        "lab-c",
        (
            RootProblem("/nix/store/x-c", RootState.MISSING, ""),
            RootProblem("/nix/store/y-c", RootState.ELSEWHERE, "/nix/store/z"),
        ),
    )
    diff = Diff("t", (transient, conflict, kept), (), roots=(roots,))
    got = {i.name: i for i in drift_items(diff)}
    field = got["a"].fields[0]
    assert (field.field, field.desired, field.observed) == (
        "persistence",
        "persistent",
        "transient",
    )
    assert got["b"].status is DriftStatus.UNKNOWN  # an error: it cannot converge
    assert got["b"].note == "conflict: domain 't-b' exists with no mark"
    assert got["c"].status is DriftStatus.DRIFTED
    (gc,) = got["c"].fields
    assert gc.field == "gc roots"
    assert gc.observed == "x-c: missing; y-c: points elsewhere (/nix/store/z)"
    assert DriftReport("t", "m", 0.0, tuple(got.values())).exit_code == 1


def test_a_stopped_guest_drifts_in_its_observed_state() -> None:
    """The observed state comes from the diff's field, not from the plan's note text."""
    diff = lab_plan("mixed").diff
    change = next(c for c in diff.changes if c.name == "b")
    assert (change.kind, change.observed_state) == (ChangeKind.START, DomainState.SHUTOFF)
    assert change.note == "shutoff -> running"  # what plans print, unchanged
    item = next(i for i in drift_items(diff, ()) if i.name == "b")
    assert (item.fields[0].field, item.fields[0].observed) == ("state", "shutoff")
    crashed = replace(change, observed_state=DomainState.CRASHED, note="")
    fields = next(iter(drift_items(Diff("t", (crashed,), ()), ()))).fields
    assert (fields[0].desired, fields[0].observed) == ("running", "crashed")
