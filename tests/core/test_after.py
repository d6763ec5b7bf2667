"""Ordering between machines (`after`): the manifest's checks, the plan's edges, machines
blocked by what cannot be planned, what apply says of a failed dependency, and the DOT graph.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from reconcile import cli
from reconcile.core.errors import ManifestError, PlanError, ReconcileError
from reconcile.core.guests.diff import ChangeKind
from reconcile.core.guests.intent import GuestIntent, guest_intent
from reconcile.core.guests.observed import DomainState, HypervisorObservation, ObservedDomain
from reconcile.core.hosts.baremetal import HostChangeKind, HostIntent, diff_host
from reconcile.core.manifest import parse_manifest
from reconcile.core.plan.diff import diff_lab
from reconcile.core.plan.graph import Plan, make_plan
from reconcile.core.plan.report import render_dot, render_json, render_text
from reconcile.orchestration import runs
from reconcile.orchestration.executor import (
    Outcome,
    SubjectStatus,
    execute,
    exit_code,
    subject_status,
)
from tests.core.test_host_plan import KEY, NEW, seen
from tests.core.test_plan import KERNEL, facts, running
from tests.orchestration.test_executor import Recorder

TOP = "/nix/store/aaa-sys"
HEAD = """
[lab]
name = "t"
state_dir = "/state"
[hypervisors.local]
uri = "test:///default"
accel = "qemu"
[hypervisors.far]
uri = "test:///default"
accel = "qemu"
[kernels.host]
image = "/vmlinuz"
"""
GUEST = """
[guests.{name}]
mode = "imageless"
system = "sys"
kernel = "host"
hypervisor = "{hypervisor}"
after = [{after}]
"""
HOST = """
[hosts.{name}]
system = "sys"
ssh = {{ target = "root@10.0.0.2", host_key = "{key}" }}
after = [{after}]
"""
# app comes after db (on hypervisor `far`) and nfs-server, bm1 after nfs-server; web and
# cache are independent of everything.
LAB: dict[str, tuple[str, tuple[str, ...]]] = {
    "nfs-server": ("local", ()),
    "db": ("far", ()),
    "app": ("local", ("db", "nfs-server")),
    "web": ("local", ()),
    "cache": ("far", ()),
}
HOSTS: dict[str, tuple[str, ...]] = {"bm1": ("nfs-server",)}


def manifest_text(
    guests: dict[str, tuple[str, tuple[str, ...]]] = LAB,
    hosts: dict[str, tuple[str, ...]] = HOSTS,
) -> str:
    text = HEAD
    for name, (hypervisor, after) in guests.items():
        names = ", ".join(f'"{n}"' for n in after)
        text += GUEST.format(name=name, hypervisor=hypervisor, after=names)
    for name, after in hosts.items():
        text += HOST.format(name=name, key=KEY, after=", ".join(f'"{n}"' for n in after))
    return text


def parsed(text: str) -> tuple[list[GuestIntent], list[HostIntent]]:
    manifest = parse_manifest(text.encode(), Path("/lab/m.toml"))
    guests = [guest_intent(manifest, g, TOP, KERNEL) for g in manifest.guests.values()]
    hosts = [HostIntent(h, NEW, "path:/lab#sys") for h in manifest.hosts.values()]
    return guests, hosts


def problems(text: str) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(text.encode(), Path("/lab/m.toml"))
    return [p.render() for p in caught.value.problems]


def lab_plan(
    *,
    text: str = "",
    in_sync: tuple[str, ...] = (),
    far: bool = True,
    stranger: str = "",
    host_seen: bool = True,
) -> Plan:
    """The plan of the lab: every guest absent but those `in_sync` (running as desired) and
    `stranger` (a domain of its name without our mark); `far` False: that hypervisor could
    not be observed; `host_seen` False: no host could."""
    guests, hosts = parsed(text or manifest_text())
    domains: dict[str, dict[str, ObservedDomain]] = {"local": {}, "far": {}}
    for intent in guests:
        if intent.name in in_sync:
            domains[intent.guest.hypervisor][intent.domain] = running(intent)
        elif intent.name == stranger:
            unmarked = replace(facts(intent), mark=None)
            domain = ObservedDomain(intent.domain, "u", DomainState.RUNNING, unmarked, None)
            domains[intent.guest.hypervisor][intent.domain] = domain
    observed = {
        "local": HypervisorObservation("test:///default", domains["local"], None),
        "far": HypervisorObservation("test:///default", domains["far"], None)
        if far
        else HypervisorObservation("test:///default", None, "connection refused"),
    }
    diff = diff_lab("t", guests, observed, prune=False)
    diff = replace(
        diff,
        hosts=tuple(diff_host(h, seen() if host_seen else None, "unreachable") for h in hosts),
    )
    return make_plan(diff, {})


def machine(key: str) -> str:
    return key.split("/", maxsplit=1)[0]


def crossing(plan: Plan) -> set[tuple[str, str]]:
    """The edges between two machines' own actions."""
    return {(a, b) for a, b in plan.edges if "/" in a and "/" in b and machine(a) != machine(b)}


# -- the manifest --------------------------------------------------------------------------


def test_after_is_read_into_guests_and_hosts() -> None:
    manifest = parse_manifest(manifest_text().encode(), Path("/lab/m.toml"))
    assert manifest.guests["app"].after == ("db", "nfs-server")
    assert manifest.guests["web"].after == ()
    assert manifest.hosts["bm1"].after == ("nfs-server",)


def test_a_cycle_is_refused_naming_its_members_in_order() -> None:
    text = manifest_text(
        {"a": ("local", ("b",)), "b": ("local", ("c",)), "c": ("local", ("a",))}, {}
    )
    assert problems(text) == [
        "/lab/m.toml:19: guests.a.after: a cycle: a -> b -> c -> a\n"
        "  hint: an order needs an end: remove 'b' from this `after`, or another link of the "
        "cycle"
    ]


def test_a_cycle_through_a_host_is_refused_too() -> None:
    text = manifest_text({"app": ("local", ("bm1",))}, {"bm1": ("app",)})
    assert [p.splitlines()[0] for p in problems(text)] == [
        "/lab/m.toml:19: guests.app.after: a cycle: app -> bm1 -> app"
    ]


def test_unknown_names_get_a_hint_and_a_machine_cannot_wait_for_itself() -> None:
    text = manifest_text(
        {"db": ("local", ()), "app": ("local", ("dbb", "app", "zzz"))}, {"bm1": ("ap",)}
    )
    assert problems(text) == [
        "/lab/m.toml:26: guests.app.after[0]: unknown guest or host 'dbb'\n"
        "  hint: did you mean 'db'?",
        "/lab/m.toml:26: guests.app.after[1]: 'app' cannot come after itself\n"
        "  hint: remove it from `after`",
        "/lab/m.toml:26: guests.app.after[2]: unknown guest or host 'zzz'\n"
        "  hint: defined guests and hosts: app, bm1, db",
        "/lab/m.toml:31: hosts.bm1.after[0]: unknown guest or host 'ap'\n"
        "  hint: did you mean 'app'?",
    ]


def test_after_names_are_unique_names() -> None:
    text = manifest_text({"db": ("local", ()), "app": ("local", ("db", "db"))}, {})
    assert [p.splitlines()[0] for p in problems(text)] == [
        "/lab/m.toml:26: guests.app.after: items must be unique"
    ]


# -- edges ---------------------------------------------------------------------------------


def test_first_action_waits_for_the_last_action_of_each_machine_it_comes_after() -> None:
    plan = lab_plan()
    assert plan.dependencies("app/define") == ["db/wait-ready", "nfs-server/wait-ready"]
    assert plan.dependencies("bm1/copy") == ["nfs-server/wait-ready"]
    assert plan.blocked == {}
    keys = plan.action_keys()
    assert keys.index("app/define") > keys.index("db/wait-ready")
    text = render_text(plan)  # the text says the order too, not only --graph and the JSON
    assert "      after: db, nfs-server (manifest order)\n" in text
    assert "      after: nfs-server (manifest order)\n" in text  # bm1, a host


def test_machines_without_an_order_get_no_edge_between_them() -> None:
    """Independent machines still run in parallel: the only edges between two machines
    are the ones `after` asks for."""
    assert crossing(lab_plan()) == {
        ("db/wait-ready", "app/define"),
        ("nfs-server/wait-ready", "app/define"),
        ("nfs-server/wait-ready", "bm1/copy"),
    }
    unordered = lab_plan(text=manifest_text({n: (h, ()) for n, (h, _) in LAB.items()}, {}))
    assert crossing(unordered) == set()


def test_only_the_first_action_waits_and_nothing_else_changes() -> None:
    ordered = lab_plan()
    unordered = lab_plan(text=manifest_text({n: (h, ()) for n, (h, _) in LAB.items()}, {"bm1": ()}))
    assert sorted(ordered.nodes) == sorted(unordered.nodes)
    assert set(ordered.edges) - set(unordered.edges) == crossing(ordered)


def test_a_machine_with_nothing_to_do_orders_nothing() -> None:
    plan = lab_plan(in_sync=("db", "nfs-server"))
    assert plan.dependencies("app/define") == []
    assert plan.dependencies("bm1/copy") == []
    assert plan.blocked == {}


def test_a_host_can_be_waited_for() -> None:
    text = manifest_text({"app": ("local", ("bm1",))}, {"bm1": ()})
    plan = lab_plan(text=text)
    assert plan.dependencies("app/define") == ["bm1/health"]


# -- blocked by what cannot be planned -----------------------------------------------------


def test_after_an_unknown_machine_nothing_is_planned_and_the_plan_is_not_clean() -> None:
    plan = lab_plan(far=False)  # db (and cache) could not be observed
    assert plan.blocked == {"app": "waits for db, which is unknown"}
    assert {c.name: c.kind for c in plan.diff.changes}["app"] is ChangeKind.CREATE
    assert not [k for k in plan.nodes if machine(k) == "app"]
    # the rest goes ahead: nfs-server and web are created, bm1 switched after nfs-server
    assert plan.dependencies("bm1/copy") == ["nfs-server/wait-ready"]
    assert "web/define" in plan.nodes
    assert plan.unknown().keys() == {"db", "cache"}
    text = render_text(plan)
    assert (
        "  ? guest app is blocked (it would be created and started)\n"
        "      (waits for db, which is unknown: nothing of it is planned)\n"
        "      system:  /nix/store/aaa-sys\n"
    ) in text
    assert "Plan: 2 to create, 1 host(s) to switch, 1 blocked (waiting for what cannot be " in text
    assert "Warning: 3 guest(s) or host(s) could not be planned (see above)." in text
    doc = render_json(plan)
    app = next(c for c in doc["changes"] if c["guest"] == "app")
    assert (app["change"], app["blocked"]) == ("create", "waits for db, which is unknown")
    assert all("blocked" not in c for c in doc["changes"] if c["guest"] != "app")
    assert not [a for a in doc["actions"] if a["subject"] == "app"]


def test_blocked_is_transitive_and_covers_hosts_and_conflicts() -> None:
    guests = {
        "db": ("local", ()),
        "app": ("local", ("db",)),
        "front": ("local", ("app", "web")),
        "web": ("local", ()),
    }
    plan = lab_plan(text=manifest_text(guests, {"bm1": ("front",)}), stranger="db")
    assert plan.conflicts().keys() == {"db"}
    assert plan.blocked == {
        "app": "waits for db, which is in conflict",
        "bm1": "waits for front, which is blocked",
        "front": "waits for app, which is blocked",
    }
    assert sorted(plan.nodes) == ["web/define", "web/start", "web/wait-ready"]
    text = render_text(plan)
    assert (
        "  ? host bm1 (root@10.0.0.2:22) is blocked (it would be switched to its new system)\n"
        "      (waits for front, which is blocked: nothing of it is planned)\n"
    ) in text
    doc = render_json(plan)
    assert doc["hosts"][0]["blocked"] == "waits for front, which is blocked"


def test_a_plan_with_only_blocked_changes_has_none_to_make() -> None:
    guests = {"db": ("far", ()), "app": ("local", ("db",))}
    plan = lab_plan(text=manifest_text(guests, {}), far=False)
    assert plan.blocked.keys() == {"app"} and plan.actions() == []
    assert not plan.has_changes() and render_json(plan)["has_changes"] is False
    assert render_text(plan).endswith(
        "No changes can be made, but lab 't' does not match the manifest: 1 blocked (waiting "
        "for what cannot be planned).\n"
        "Warning: 2 guest(s) or host(s) could not be planned (see above).\n"
    )


def test_an_unknown_host_blocks_what_comes_after_it_and_several_reasons_are_named() -> None:
    text = manifest_text({"db": ("far", ()), "app": ("local", ("bm1", "db"))}, {"bm1": ()})
    plan = lab_plan(text=text, far=False, host_seen=False)
    assert plan.blocked == {"app": "waits for bm1, which is unknown, and db, which is unknown"}


def test_the_manifest_refuses_a_cycle_and_the_plan_would_too() -> None:
    guests, _ = parsed(manifest_text({"a": ("local", ()), "b": ("local", ())}, {}))
    a, b = guests
    cyclic = [
        replace(a, guest=replace(a.guest, after=("b",))),
        replace(b, guest=replace(b.guest, after=("a",))),
    ]
    observed = {"local": HypervisorObservation("test:///default", {}, None)}
    with pytest.raises(PlanError, match="cycle"):
        make_plan(diff_lab("t", cyclic, observed, prune=False), {})


# -- the CLI: exit codes, apply results, the graph -----------------------------------------


def plan_cli(
    plan: Plan,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *args: str,
) -> tuple[int, str, str]:
    monkeypatch.setattr(runs, "plan", lambda *_a, **_k: runs.Planned(plan, "digest"))
    code = cli.main(["plan", "m.toml", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_plan_with_a_blocked_machine_exits_1_and_names_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = plan_cli(lab_plan(far=False), monkeypatch, capsys, "--detailed-exitcode")
    assert code == 1
    assert "error: the plan cannot converge: app is blocked: waits for db, which is unknown" in err


def test_apply_results_name_the_dependency_that_did_not_succeed() -> None:
    plan = lab_plan()
    results = execute(plan, Recorder(raises={"db/wait-ready": ReconcileError("no")}), parallel=4)
    got = {r.action.key: r for r in results}
    assert got["db/wait-ready"].outcome is Outcome.FAILED
    for key in ("app/define", "app/start", "app/wait-ready"):
        assert got[key].outcome is Outcome.BLOCKED
        assert got[key].message == "not run: db/wait-ready did not succeed"
    # what does not come after db goes on
    assert {got[k].outcome for k in ("web/wait-ready", "bm1/health")} == {Outcome.DONE}
    assert subject_status([got["db/define"], got["db/start"], got["db/wait-ready"]]) == "FAILED"
    app = [r for r in results if r.action.subject == "app"]
    assert subject_status(app) is SubjectStatus.BLOCKED
    assert exit_code(results, []) == 1
    summary = cli._summary(results, {}, {})
    assert "  app         BLOCKED      define blocked 0.0s, start blocked 0.0s," in summary
    assert "      define blocked: not run: db/wait-ready did not succeed" in summary
    assert summary.rstrip().endswith("(exit 1).")


def test_apply_summary_lists_machines_the_plan_blocked() -> None:
    summary = cli._summary([], {"db": "connection refused"}, {}, {"app": "waits for db, which..."})
    assert "  app  BLOCKED      not acted on: waits for db, which..." in summary
    assert summary.endswith("Apply FAILED: 1 unknown (db), 1 not planned (app) (exit 1).\n")


DOT = r"""digraph plan {
  rankdir=LR;
  node [shape=box];
  "db/define" [label="define\ndb"];
  "db/start" [label="start\ndb"];
  "db/wait-ready" [label="wait-ready\ndb"];
  "app/define" [label="define\napp"];
  "app/start" [label="start\napp"];
  "app/wait-ready" [label="wait-ready\napp"];
  "db/define" -> "db/start";
  "db/start" -> "db/wait-ready";
  "db/wait-ready" -> "app/define";
  "app/define" -> "app/start";
  "app/start" -> "app/wait-ready";
}
"""


def test_the_graph_in_dot_is_exact(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = lab_plan(text=manifest_text({"db": ("local", ()), "app": ("local", ("db",))}, {}))
    assert render_dot(plan) == DOT
    code, out, err = plan_cli(plan, monkeypatch, capsys, "--graph")
    assert (code, out, err) == (0, DOT, "")


def test_the_graph_of_a_plan_without_actions_is_empty() -> None:
    plan = lab_plan(in_sync=tuple(LAB), host_seen=False)
    assert plan.actions() == []
    assert render_dot(plan) == "digraph plan {\n  rankdir=LR;\n  node [shape=box];\n}\n"


def test_graph_and_json_are_one_or_the_other(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = plan_cli(lab_plan(), monkeypatch, capsys, "--graph", "--json")
    assert (code, out) == (1, "")
    assert "error: give --graph or --json, not both" in err


def test_a_host_change_kind_is_kept_when_blocked() -> None:
    plan = lab_plan(text=manifest_text({"db": ("far", ())}, {"bm1": ("db",)}), far=False)
    assert plan.blocked == {"bm1": "waits for db, which is unknown"}
    assert plan.diff.hosts[0].kind is HostChangeKind.SWITCH
