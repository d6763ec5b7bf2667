"""Pure core: manifest + observed state -> diff -> plan, checked against golden text and JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import networkx as nx
import pytest

from reconcile.core.errors import PlanError, ReconcileError
from reconcile.core.guests.diff import ChangeKind
from reconcile.core.guests.domain_xml import DomainFacts, DomainSpec
from reconcile.core.guests.intent import GuestIntent, KernelInputs, guest_intent
from reconcile.core.guests.observed import (
    DomainState,
    GcRootFacts,
    HypervisorObservation,
    ObservedDomain,
)
from reconcile.core.manifest import parse_manifest
from reconcile.core.plan.diff import diff_lab
from reconcile.core.plan.graph import Plan, make_plan, order
from reconcile.core.plan.report import render_json, render_text
from reconcile.core.plan.select import select
from tests.conftest import ROOT

GOLDEN = Path(__file__).parent / "golden" / "plan"
MANIFEST = b"""
[lab]
name = "t"
state_dir = "/state"
[hypervisors.local]
uri = "test:///default"
accel = "qemu"
[kernels.host]
image = "/vmlinuz"
[guests.a]
mode = "imageless"
system = "sys-a"
kernel = "host"
memory = "512MiB"
[guests.b]
mode = "imageless"
system = "sys-b"
kernel = "host"
tags = ["x"]
[guests.c]
mode = "imageless"
system = "sys-a"
kernel = "host"
vcpus = 2
"""
KERNEL = KernelInputs(
    "host", Path("/boot/vmlinuz-6.1"), "ab" * 32, "6.1", Path("/lib/modules/6.1"), ()
)


def intents(text: bytes = MANIFEST, toplevel_a: str = "/nix/store/aaa-sys-a") -> list[GuestIntent]:
    manifest = parse_manifest(text, Path("/lab/m.toml"))
    tops = {"sys-a": toplevel_a, "sys-b": "/nix/store/bbb-sys-b"}
    return [guest_intent(manifest, g, tops[g.system], KERNEL) for g in manifest.guests.values()]


def facts(intent: GuestIntent, **change: object) -> DomainFacts:
    """What libvirt reports of the intent's definition once defined, with `change` made."""
    base = DomainFacts.from_spec(DomainSpec(intent.definition, Path("/initrd")))
    return replace(base, **change)  # type: ignore[arg-type]


def running(intent: GuestIntent, **change: object) -> ObservedDomain:
    f = facts(intent, **change)
    live = replace(f, ready=intent.toplevel)  # this boot was seen ready
    return ObservedDomain(intent.domain, intent.definition.uuid, DomainState.RUNNING, f, live)


def observation(*domains: ObservedDomain) -> dict[str, HypervisorObservation]:
    return {"local": HypervisorObservation("test:///default", {d.name: d for d in domains}, None)}


def check_golden(name: str, text: str, doc: dict[str, object], update: bool) -> None:
    txt, js = GOLDEN / f"{name}.txt", GOLDEN / f"{name}.json"
    rendered = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    if update:
        txt.write_text(text)
        js.write_text(rendered)
    assert text == txt.read_text()
    assert rendered == js.read_text()


def scenario(
    name: str,
) -> tuple[list[GuestIntent], dict[str, HypervisorObservation], bool, dict[str, str]]:
    want = intents()
    a, b, c = want
    if name == "create":
        return want, observation(), False, {"a": "f#a", "b": "f#b", "c": "f#a"}
    if name == "in-sync":
        return want, observation(running(a), running(b), running(c)), False, {}
    if name == "mixed":
        stopped = ObservedDomain(b.domain, b.definition.uuid, DomainState.SHUTOFF, facts(b), None)
        orphan = running(a)
        orphan_facts = replace(
            orphan.config, name="t-old", mark=replace(orphan.config.mark, name="old")
        )  # type: ignore[arg-type]
        orphan = ObservedDomain("t-old", "u", DomainState.RUNNING, orphan_facts, orphan_facts)
        kept = ObservedDomain(
            "t-kept",
            "u2",
            DomainState.SHUTOFF,
            replace(
                orphan_facts,
                name="t-kept",
                mark=replace(orphan_facts.mark, name="kept", protect=True),
            ),
            None,
        )  # type: ignore[arg-type]
        stranger = ObservedDomain(
            "t-c", "u3", DomainState.RUNNING, replace(facts(c), mark=None), None
        )
        other = ObservedDomain("web", "u4", DomainState.RUNNING, replace(facts(c), mark=None), None)
        memory = running(a, memory_kib=256 * 1024)
        return want, observation(memory, stopped, orphan, kept, stranger, other), True, {}
    if name == "closure-change":
        new = intents(toplevel_a="/nix/store/zzz-sys-a")
        return new, observation(running(a), running(b), running(c)), False, {"a": "f#a", "c": "f#a"}
    if name == "conflict":  # c is blocked by a domain without our mark; nothing else to do
        stranger = ObservedDomain(
            "t-c", "u3", DomainState.RUNNING, replace(facts(c), mark=None), None
        )
        return want, observation(running(a), running(b), stranger), False, {}
    if name == "copy":  # a domain carrying a copy of a's mark under another name, --prune
        real = running(a)
        copied = replace(real.config, name="t-copy", uuid="u-copy")
        copy = ObservedDomain("t-copy", "u-copy", DomainState.SHUTOFF, copied, None)
        return want, observation(real, running(b), running(c), copy), True, {}
    if name == "transient":  # `virsh undefine` of running a: it runs on, transient
        transient = replace(running(a), persistent=False)
        return want, observation(transient, running(b), running(c)), False, {}
    if name == "gc-roots":  # a's root deleted, b's pointing elsewhere, c's registration gone
        return want, observation(running(a), running(b), running(c)), False, {}
    if name == "unknown":
        return (
            want,
            {"local": HypervisorObservation("test:///default", None, "connection refused")},
            True,
            {},
        )
    raise AssertionError(name)


SCENARIOS = [
    "create",
    "in-sync",
    "mixed",
    "closure-change",
    "unknown",
    "conflict",
    "copy",
    "transient",
    "gc-roots",
]


def roots_of(name: str) -> dict[str, dict[str, GcRootFacts]]:
    """Each guest's GC root links as observed: all as they must be, but in `gc-roots`."""
    a, b, c = intents()
    ok = {i.name: {i.toplevel.rsplit("/", 1)[-1]: GcRootFacts(i.toplevel, True)} for i in (a, b, c)}
    if name == "gc-roots":
        del ok["a"]
        ok["b"] = {b.toplevel.rsplit("/", 1)[-1]: GcRootFacts("/nix/store/yyy-other", True)}
        ok["c"] = {c.toplevel.rsplit("/", 1)[-1]: GcRootFacts(c.toplevel, False)}
    return ok


def lab_plan(name: str) -> Plan:
    want, observed, prune, unbuilt = scenario(name)
    return make_plan(diff_lab("t", want, observed, prune=prune, roots=roots_of(name)), unbuilt)


@pytest.mark.parametrize("name", SCENARIOS)
def test_golden(name: str, update_golden: bool) -> None:
    plan = lab_plan(name)
    check_golden(name, render_text(plan), render_json(plan), update_golden)


@pytest.mark.parametrize("name", SCENARIOS)
def test_a_plan_with_nothing_to_do_is_what_the_steps_would_give(name: str) -> None:
    """make_plan skips the steps (and their module) only where they would find nothing."""
    from reconcile.core.plan import steps  # noqa: PLC0415 - the next test's module stays unloaded

    want, observed, prune, unbuilt = scenario(name)
    diff = diff_lab("t", want, observed, prune=prune, roots=roots_of(name))
    assert make_plan(diff, unbuilt) == steps.make_plan(diff, unbuilt)


def test_a_plan_with_nothing_to_do_loads_no_action_types() -> None:
    probe = (
        "import sys; from tests.core.test_plan import lab_plan; "
        "assert not lab_plan('in-sync').has_changes(); "
        "print(sorted(m for m in sys.modules if m.startswith('reconcile.core.plan.')))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded = proc.stdout.strip()
    assert "actions" not in loaded and "steps" not in loaded and "graph" in loaded, loaded


def test_a_conflict_is_not_a_clean_plan() -> None:
    plan = lab_plan("conflict")
    assert not plan.has_changes() and plan.actions() == []
    assert plan.conflicts() == {
        "c": "domain 't-c' exists with no reconcile mark; it is never touched"
    }
    assert "No changes." not in render_text(plan)
    assert render_json(plan)["conflicts"] == [{"name": "c", "note": plan.conflicts()["c"]}]


def test_a_copy_of_a_mark_under_another_name_is_a_conflict_and_the_real_guest_is_kept() -> None:
    plan = lab_plan("copy")
    kinds = {c.name: c.kind for c in plan.diff.changes}
    assert kinds == {
        "a": ChangeKind.NOOP,
        "b": ChangeKind.NOOP,
        "c": ChangeKind.NOOP,
        "t-copy": ChangeKind.CONFLICT,
    }
    note = plan.conflicts()["t-copy"]
    assert "'t-copy'" in note and "guest 'a'" in note and "'t-a'" in note
    assert plan.actions() == []  # nothing destroyed, no roots released, under --prune


def test_a_transient_domain_is_defined_again_without_a_restart() -> None:
    plan = lab_plan("transient")
    change = next(c for c in plan.diff.changes if c.name == "a")
    assert change.kind is ChangeKind.REDEFINE and change.redefine
    assert [(r.field, r.before, r.after) for r in change.reasons] == [
        ("persistence", "transient", "persistent")
    ]
    assert plan.action_keys() == ["a/define"]
    # with a restart due too, it is defined first (so it survives its shutdown)
    want, observed, _, _ = scenario("transient")
    domain = observed["local"].domains["t-a"]  # type: ignore[index]
    moved = replace(domain, live=replace(domain.live, memory_kib=128 * 1024))  # type: ignore[type-var]
    changed = {"local": replace(observed["local"], domains={"t-a": moved})}
    plan = make_plan(diff_lab("t", want[:1], changed, prune=False), {})
    assert plan.action_keys() == ["a/define", "a/shutdown", "a/start", "a/wait-ready"]


def test_gc_roots_are_restored_without_touching_the_guests() -> None:
    plan = lab_plan("gc-roots")
    assert {r.guest: [p.state.value for p in r.problems] for r in plan.diff.roots} == {
        "a": ["missing"],
        "b": ["elsewhere"],
        "c": ["unregistered"],
    }
    assert plan.has_changes()
    assert plan.action_keys() == ["a/gc-roots", "b/gc-roots", "c/gc-roots"]
    # roots of a guest that is redefined come after its own actions; extra roots are fine
    want, observed, _, _ = scenario("closure-change")
    plan = make_plan(diff_lab("t", want, observed, prune=False, roots={}), {})
    assert plan.dependencies("a/gc-roots") == ["a/wait-ready"]
    # a guest being created or unknown has no roots to keep yet
    want, observed, _, _ = scenario("create")
    assert diff_lab("t", want, observed, prune=False, roots={}).roots == ()


def test_in_sync_has_no_actions() -> None:
    want, observed, prune, unbuilt = scenario("in-sync")
    plan = make_plan(diff_lab("t", want, observed, prune=prune), unbuilt)
    assert not plan.has_changes()
    assert plan.actions() == []


def test_closure_change_restarts_only_its_guests() -> None:
    want, observed, prune, unbuilt = scenario("closure-change")
    plan = make_plan(diff_lab("t", want, observed, prune=prune), unbuilt)
    kinds = {c.name: c.kind for c in plan.diff.changes}
    assert kinds == {"a": ChangeKind.RESTART, "b": ChangeKind.NOOP, "c": ChangeKind.RESTART}
    assert plan.action_keys() == [
        "build",
        "a/define",
        "a/shutdown",
        "a/start",
        "a/wait-ready",
        "c/define",
        "c/shutdown",
        "c/start",
        "c/wait-ready",
    ]
    assert plan.dependencies("a/define") == ["build"]


def test_unknown_blocks_everything_and_conflict_is_never_touched() -> None:
    want, observed, prune, unbuilt = scenario("unknown")
    plan = make_plan(diff_lab("t", want, observed, prune=prune), unbuilt)
    assert {c.kind for c in plan.diff.changes} == {ChangeKind.UNKNOWN}
    assert plan.actions() == []
    want, observed, prune, unbuilt = scenario("mixed")
    plan = make_plan(diff_lab("t", want, observed, prune=prune), unbuilt)
    conflict = next(c for c in plan.diff.changes if c.name == "c")
    assert conflict.kind is ChangeKind.CONFLICT
    assert not [k for k in plan.action_keys() if k.startswith("c/")]
    assert ("local", "web") in plan.diff.unmanaged


def test_prune_never_destroys_protected_and_needs_the_flag() -> None:
    want, observed, _prune, unbuilt = scenario("mixed")
    kept = make_plan(diff_lab("t", want, observed, prune=False), unbuilt)
    assert not [k for k in kept.action_keys() if k.startswith(("old/", "kept/"))]
    pruned = make_plan(diff_lab("t", want, observed, prune=True), unbuilt)
    assert [k for k in pruned.action_keys() if k.startswith(("old/", "kept/"))] == [
        "old/destroy",
        "old/undefine",
    ]


def test_targets_leave_orphans_alone() -> None:
    want, observed, _prune, _unbuilt = scenario("mixed")
    plan = make_plan(diff_lab("t", want[:1], observed, prune=True, scope=frozenset({"a"})), {})
    assert [c.name for c in plan.diff.changes] == ["a"]


def test_a_cycle_names_its_edges() -> None:
    graph: nx.DiGraph[str] = nx.DiGraph([("x", "y"), ("y", "x")])
    with pytest.raises(PlanError, match="x -> y"):
        order(graph)


def test_running_but_never_seen_ready_is_waited_for() -> None:
    a, b, c = intents()
    unconfirmed = running(a)
    unconfirmed = replace(unconfirmed, live=replace(unconfirmed.live, ready=None))  # type: ignore[arg-type]
    plan = make_plan(
        diff_lab("t", [a, b, c], observation(unconfirmed, running(b), running(c)), prune=False), {}
    )
    assert [ch.kind for ch in plan.diff.changes] == [
        ChangeKind.WAIT,
        ChangeKind.NOOP,
        ChangeKind.NOOP,
    ]
    assert plan.action_keys() == ["a/wait-ready"]


def test_stopped_state_and_restart_never() -> None:
    text = MANIFEST.replace(b'tags = ["x"]', b'tags = ["x"]\nstate = "stopped"').replace(
        b"vcpus = 2", b'vcpus = 2\nrestart = "never"'
    )
    a, b, c = intents(text)
    observed = observation(running(a), running(b), running(c, vcpus=1))
    plan = make_plan(diff_lab("t", [a, b, c], observed, prune=False), {})
    kinds = {ch.name: ch.kind for ch in plan.diff.changes}
    assert kinds == {"a": ChangeKind.NOOP, "b": ChangeKind.STOP, "c": ChangeKind.REDEFINE}
    assert plan.action_keys() == ["b/shutdown", "c/define"]


def test_a_stopped_guest_is_planned_as_created_not_started() -> None:
    text = MANIFEST.replace(b'tags = ["x"]', b'tags = ["x"]\nstate = "stopped"')
    a, b, c = intents(text)
    plan = make_plan(diff_lab("t", [a, b, c], observation(running(a), running(c)), prune=False), {})
    shown = render_text(plan)
    assert '+ guest b will be created, not started (state = "stopped")' in shown
    assert "b/start" not in plan.action_keys()


def test_target_selects_by_name_and_tag_and_rejects_unknown() -> None:
    manifest = parse_manifest(MANIFEST, Path("/lab/m.toml"))
    assert [g.name for g in select(manifest, [])[0]] == ["a", "b", "c"]
    assert [g.name for g in select(manifest, ["c", "tag:x"])[0]] == ["b", "c"]
    with pytest.raises(ReconcileError, match="--target tag:nope matches no guest"):
        select(manifest, ["tag:nope"])


def test_domains_listed_by_name_only_are_unmanaged_and_never_changed() -> None:
    want = intents()
    observed = {
        "local": HypervisorObservation(
            "test:///default", {}, None, others=("web", "z-other", "copy-of-t-a")
        )
    }
    plan = make_plan(diff_lab("t", want, observed, prune=True), {})
    assert plan.diff.unmanaged == (
        ("local", "copy-of-t-a"),
        ("local", "web"),
        ("local", "z-other"),
    )
    assert {c.name for c in plan.diff.changes} == {i.name for i in want}
    assert all(c.kind is ChangeKind.CREATE for c in plan.diff.changes)


def test_unmanaged_domains_are_a_count_per_hypervisor_unless_shown() -> None:
    """A hypervisor with 1,000 domains of others does not bury the plan: the text says how
    many each hypervisor has; --show-unmanaged lists them; the JSON always lists every one."""
    foreign = tuple(f"foreign-{i:04d}" for i in range(1000))
    observed = {
        "local": HypervisorObservation("test:///default", {}, None, others=foreign),
        "hv2": HypervisorObservation("test:///default", {}, None, others=("scratch",)),
    }
    plan = make_plan(diff_lab("t", intents(), observed, prune=False), {})
    text = render_text(plan)
    counts = [line for line in text.splitlines() if "not this lab's" in line]
    assert counts == [
        "1 domain on hv2 is not this lab's (never touched; --show-unmanaged lists it)",
        "1000 domains on local are not this lab's (never touched; --show-unmanaged lists them)",
    ]
    assert "foreign-" not in text and "scratch" not in text and "Unmanaged" not in text
    assert len(text.splitlines()) < 40
    shown = render_text(plan, show_unmanaged=True).splitlines()
    head = shown.index("Unmanaged domains (no reconcile mark for this lab; never touched):")
    assert shown[head + 1 : head + 3] == ["  scratch on hv2", "  foreign-0000 on local"]
    assert sum(1 for line in shown if line.startswith("  foreign-")) == 1000
    assert not any("not this lab's" in line for line in shown)
    listed = render_json(plan)["unmanaged"]
    assert len(listed) == 1001 and listed[-1] == {"hypervisor": "local", "domain": "foreign-0999"}
    # the rest of the plan reads the same either way
    lines = text.splitlines()
    first = lines.index(counts[0])
    assert lines[:first] == shown[:head]
    assert lines[first + 2 :] == shown[head + 1002 :]


def test_no_unmanaged_domains_no_line() -> None:
    plan = lab_plan("in-sync")
    assert "not this lab's" not in render_text(plan)
    assert render_text(plan) == render_text(plan, show_unmanaged=True)
