"""Pure core: which view each share is served from, and a bad view as plan and drift."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from reconcile.core.drift.items import drift_items
from reconcile.core.drift.report import DriftStatus
from reconcile.core.guests.diff import ChangeKind
from reconcile.core.guests.intent import GuestIntent, guest_intent, lab_views
from reconcile.core.guests.observed import DomainState, ObservedDomain, ViewState
from reconcile.core.guests.shares import View
from reconcile.core.layout import StateLayout
from reconcile.core.manifest import parse_manifest
from reconcile.core.plan.actions import ActionKind
from reconcile.core.plan.diff import diff_lab
from reconcile.core.plan.graph import make_plan
from reconcile.core.plan.report import render_json, render_text
from tests.core.test_plan import KERNEL, MANIFEST, facts, observation, running

SHARED = MANIFEST.replace(
    b'memory = "512MiB"\n',
    b'memory = "512MiB"\nshares = [{ tag = "ro", source = "/srv/ro" },'
    b' { tag = "rw", source = "/srv/rw", writable = true }]\n',
)
STATE = Path("/state")


def intents(text: bytes = SHARED) -> list[GuestIntent]:
    manifest = parse_manifest(text, Path("/lab/m.toml"))
    tops = {"sys-a": "/nix/store/aaa-sys-a", "sys-b": "/nix/store/bbb-sys-b"}
    return [guest_intent(manifest, g, tops[g.system], KERNEL) for g in manifest.guests.values()]


def test_every_read_only_share_is_served_from_a_view_the_writable_one_as_it_is() -> None:
    a = intents()[0]
    served = {s.tag: (s.source, s.origin, s.writable) for s in a.shares}
    assert served == {
        "store": ("/state/store", "/nix/store", False),
        "modules": (str(StateLayout(STATE).view(Path("/lib/modules"))), "/lib/modules", False),
        "ro": (str(StateLayout(STATE).view(Path("/srv/ro"))), "/srv/ro", False),
        "rw": ("/srv/rw", "/srv/rw", True),
    }
    assert [v.source for v in a.views] == [
        Path("/nix/store"),
        Path("/lib/modules"),
        Path("/srv/ro"),
    ]


def test_view_paths_are_one_per_source_under_the_state_dir() -> None:
    layout = StateLayout(STATE)
    assert layout.view(Path("/nix/store")) == STATE / "store"  # where older versions had it
    modules = layout.view(Path("/lib/modules"))
    assert modules.parent == STATE / "views" and len(modules.name) == 16
    assert layout.view(Path("/lib/modules")) == modules
    assert layout.view(Path("/srv/ro")) != modules
    assert StateLayout(Path("/other")).view(Path("/lib/modules")).name == modules.name


def test_lab_views_are_listed_once_each() -> None:
    found = lab_views(intents())
    assert [v.source for v in found] == [Path("/nix/store"), Path("/srv/ro"), Path("/lib/modules")]
    assert len({v.path for v in found}) == 3


def test_the_spec_hash_follows_what_a_share_shows() -> None:
    a = intents()[0]
    other = intents(SHARED.replace(b"/srv/ro", b"/srv/other"))[0]
    assert other.spec_hash != a.spec_hash
    unchanged = intents()[0]
    assert unchanged.spec_hash == a.spec_hash


def states(default: ViewState, **by_source: ViewState) -> dict[View, ViewState]:
    found = lab_views(intents())
    return {v: by_source.get(v.source.name, default) for v in found}


def test_all_read_only_views_is_no_change() -> None:
    want = intents()
    diff = diff_lab(
        "t", want, observation(*map(running, want)), prune=False, views=states(ViewState.READ_ONLY)
    )
    assert diff.views == ()
    assert not diff.has_changes()


@pytest.mark.parametrize("bad", [ViewState.WRITABLE, ViewState.STALE])
def test_a_writable_or_stale_view_is_a_change_whatever_the_guests_do(bad: ViewState) -> None:
    want = intents()
    observed = observation()  # no guest defined yet: all are created
    diff = diff_lab("t", want, observed, prune=False, views=states(ViewState.READ_ONLY, store=bad))
    assert [(v.view.path, v.state) for v in diff.views] == [(STATE / "store", bad)]
    assert diff.views[0].users == (("a", "store"), ("b", "store"), ("c", "store"))
    assert diff.has_changes()
    plan = make_plan(diff, {})
    view = plan.action("view:store")
    assert view.kind is ActionKind.VIEW and view.view == diff.views[0].view


def test_a_missing_view_is_a_change_only_for_guests_that_keep_running() -> None:
    want = intents()
    a, b, c = want
    stopped = ObservedDomain(b.domain, b.definition.uuid, DomainState.SHUTOFF, facts(b), None)
    bigger = running(c, memory_kib=1)  # restarted: its start makes the view
    diff = diff_lab(
        "t",
        want,
        observation(running(a), stopped, bigger),
        prune=False,
        views=states(ViewState.READ_ONLY, modules=ViewState.MISSING, ro=ViewState.MISSING),
    )
    assert {c.name: c.kind for c in diff.changes} == {
        "a": ChangeKind.NOOP,
        "b": ChangeKind.START,
        "c": ChangeKind.RESTART,
    }
    assert [(v.view.source, v.users) for v in diff.views] == [
        (Path("/srv/ro"), (("a", "ro"),)),
        (Path("/lib/modules"), (("a", "modules"),)),
    ]
    none_running = diff_lab("t", want, observation(), prune=False, views=states(ViewState.MISSING))
    assert none_running.views == ()


def test_views_not_observed_are_no_change() -> None:
    want = intents()
    diff = diff_lab("t", want, observation(*map(running, want)), prune=False)
    assert diff.views == () and not diff.has_changes()


def test_a_bad_view_reads_in_the_plan_text_and_json() -> None:
    want = intents()
    diff = diff_lab(
        "t",
        want,
        observation(*map(running, want)),
        prune=False,
        views=states(ViewState.READ_ONLY, store=ViewState.WRITABLE),
    )
    plan = make_plan(diff, {})
    text = render_text(plan)
    assert "  ! view /state/store of /nix/store: writable from the host\n" in text
    assert "(made anew, read-only; shares a (store), b (store), c (store))" in text
    assert "Plan: 1 view(s) to make read-only." in text
    doc = render_json(plan)
    assert doc["has_changes"] is True
    assert doc["views"] == [
        {
            "path": "/state/store",
            "source": "/nix/store",
            "state": "writable",
            "users": [{"guest": g, "tag": "store"} for g in ("a", "b", "c")],
            "hypervisor": None,
        }
    ]
    assert [a["key"] for a in doc["actions"]] == ["view:store"]


def test_a_bad_view_is_drift_of_the_guests_that_share_it() -> None:
    want = intents()
    diff = diff_lab(
        "t",
        want,
        observation(*map(running, want)),
        prune=False,
        views=states(ViewState.READ_ONLY, ro=ViewState.WRITABLE),
    )
    items = {i.name: i for i in drift_items(diff)}
    assert items["a"].status is DriftStatus.DRIFTED
    field = items["a"].fields[0]
    assert (field.field, field.observed) == ("share ro", "writable")
    assert field.desired == f"read-only view {StateLayout(STATE).view(Path('/srv/ro'))}"
    assert items["b"].status is DriftStatus.IN_SYNC
    ignored = {i.name: i for i in drift_items(diff, ("guest.a.share ro",))}
    assert ignored["a"].status is DriftStatus.IGNORED


def test_unknown_guests_stay_unknown_with_a_bad_view() -> None:
    want = intents()
    diff = diff_lab(
        "t",
        want,
        {"local": replace(observation()["local"], domains=None, error="down")},
        prune=False,
        views=states(ViewState.WRITABLE),
    )
    assert diff.views  # the view is a problem, the guests still unknown
    assert {i.status for i in drift_items(diff)} == {DriftStatus.UNKNOWN}
