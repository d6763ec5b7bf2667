"""The guest performer's re-check (and the steps that need no Nix) against a simulated
hypervisor, routed as an apply routes them; and a plan made from the simulated world,
applied to it, converging."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from reconcile.adapters import nix
from reconcile.core.desired import Manifest
from reconcile.core.errors import ReconcileError
from reconcile.core.guests.diff import ChangeKind
from reconcile.core.guests.domain_xml import DomainFacts, DomainSpec
from reconcile.core.guests.intent import GuestIntent, KernelInputs, guest_intent
from reconcile.core.guests.observed import DomainState
from reconcile.core.manifest import parse_manifest
from reconcile.core.plan.actions import (
    Action,
    DefineGuest,
    DestroyGuest,
    GuestRef,
    ShutdownGuest,
    StartGuest,
    SyncGcRoots,
    UndefineGuest,
    WaitReady,
)
from reconcile.core.plan.diff import Diff, diff_lab
from reconcile.core.plan.graph import Plan, make_plan
from reconcile.orchestration.executor import (
    Check,
    Outcome,
    Result,
    StaleError,
    execute,
    exit_code,
)
from reconcile.orchestration.kinds import Router
from reconcile.orchestration.pipeline import Context
from tests.orchestration.simulated import SimulatedHypervisor

EXIT_OK, EXIT_ERROR = 0, 1  # README "Exit codes"
MANIFEST = """
[lab]
name = "t"
state_dir = "{state_dir}"
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
state = "stopped"
"""
KERNEL = KernelInputs(
    "host", Path("/boot/vmlinuz-6.1"), "ab" * 32, "6.1", Path("/lib/modules/6.1"), ()
)
TOPLEVELS = {"sys-a": "/nix/store/aaa-sys-a", "sys-b": "/nix/store/bbb-sys-b"}
INITRD = Path("/initrd")  # what the define would have made; no decision reads it


class Lab:
    """A manifest under tmp_path, its intents, and a context whose one hypervisor is `sim`."""

    def __init__(self, root: Path) -> None:
        text = MANIFEST.format(state_dir=root / "state")
        self.manifest: Manifest = parse_manifest(text.encode(), root / "lab.toml")
        self.intents = {
            g.name: guest_intent(self.manifest, g, TOPLEVELS[g.system], KERNEL)
            for g in self.manifest.guests.values()
        }
        self.sim = SimulatedHypervisor()
        self.ctx = Context(self.manifest, connect=lambda _hv, _lab: self.sim)
        self.performer = Router(self.ctx)

    def intent(self, guest: str) -> GuestIntent:
        return self.intents[guest]

    def ref(self, guest: str) -> GuestRef:
        return GuestRef(guest, "local", f"t-{guest}")

    def spec(self, guest: str) -> DomainSpec:
        return DomainSpec(self.intent(guest).definition, INITRD)

    def facts(self, guest: str) -> DomainFacts:
        return DomainFacts.from_spec(self.spec(guest))

    def define(self, guest: str, *, running: bool = False, ready: bool = True) -> None:
        """The guest as an earlier apply left it: defined, and started and seen ready."""
        self.sim.define(self.spec(guest))
        if running:
            self.sim.start(f"t-{guest}")
            if ready:
                self.sim.mark_ready(f"t-{guest}", self.intent(guest).toplevel)
        self.sim.mutations.clear()  # the world as found: nothing done to it by the test

    def check(self, action: Action) -> Check:
        return self.performer.check(action)

    def plan(self) -> Plan:
        """The plan for the simulated world as it is now (no builds: all in the store)."""
        diff = diff_lab(
            "t",
            self.intents.values(),
            {"local": self.sim.observe("t-")},
            prune=True,
            roots=nix.observe_gc_roots(self.manifest.lab.layout.gcroots),
        )
        return make_plan(diff, {})

    def roots(self, guest: str) -> dict[str, str]:
        directory = self.manifest.lab.layout.gcroot(guest)
        if not directory.is_dir():
            return {}
        return {link.name: str(link.readlink()) for link in directory.iterdir()}


@pytest.fixture(autouse=True)
def gcroots_auto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Nix's gcroots/auto, under tmp_path: syncing a guest's roots registers them there."""
    auto = tmp_path / "gcroots-auto"
    monkeypatch.setattr(nix, "GCROOTS_AUTO", auto)
    assert nix._auto(Path("/x")).parent == auto  # the patch took: nothing goes to /nix
    yield auto


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    made = Lab(tmp_path)
    yield made
    made.ctx.close()
    assert made.sim.closed


def make(*actions: Action) -> Plan:
    return Plan(Diff("t", (), ()), {a.key: a for a in actions}, (), ())


def outcomes(results: list[Result]) -> dict[str, Outcome]:
    return {r.action.key: r.outcome for r in results}


# -- define -------------------------------------------------------------------------------


def test_define_is_satisfied_by_the_same_definition_stopped_or_running(lab: Lab) -> None:
    define = DefineGuest(lab.ref("a"), lab.intent("a"))
    assert lab.check(define) is Check.NEEDED  # absent
    lab.define("a")
    assert lab.check(define) is Check.SATISFIED
    lab.sim.start("t-a")
    assert lab.check(define) is Check.SATISFIED
    assert lab.sim.probes == ["t-a"] * 3  # each check looked again


@pytest.mark.parametrize(
    "edit",
    [
        {"memory_kib": 256 * 1024},  # `virsh setmaxmem --config`: the mark stays
        {"vcpus": 4},
        {"cmdline": "console=ttyS0 init=/bin/sh"},
        {"shares": ()},
    ],
    ids=["memory", "vcpus", "cmdline", "shares"],
)
def test_define_is_needed_when_a_field_was_changed_out_of_band(
    lab: Lab, edit: dict[str, object]
) -> None:
    define = DefineGuest(lab.ref("a"), lab.intent("a"))
    lab.define("a", running=True)
    assert lab.check(define) is Check.SATISFIED
    lab.sim.edit("t-a", **edit)
    assert lab.check(define) is Check.NEEDED


def test_define_is_needed_for_another_closure(lab: Lab) -> None:
    lab.define("a")
    guest = lab.intent("a").guest  # the same guest, booting a new system closure
    intent = guest_intent(lab.manifest, guest, "/nix/store/zzz-sys-a", KERNEL)
    assert lab.check(DefineGuest(lab.ref("a"), intent)) is Check.NEEDED


def test_define_is_needed_for_a_transient_domain(lab: Lab) -> None:
    define = DefineGuest(lab.ref("a"), lab.intent("a"))
    lab.define("a", running=True)
    assert lab.check(define) is Check.SATISFIED
    lab.sim.make_transient("t-a")  # `virsh undefine` of the running domain
    observed = lab.sim.get("t-a")
    assert observed is not None and not observed.persistent
    assert replace(observed.config, ready=None) == lab.facts("a")  # the same definition...
    assert lab.check(define) is Check.NEEDED  # ...but it would vanish at its next stop


# -- start --------------------------------------------------------------------------------


def test_start_of_a_domain_that_vanished_is_stale_and_not_attempted(lab: Lab) -> None:
    start = StartGuest(lab.ref("a"), lab.intent("a"))
    with pytest.raises(StaleError, match="'t-a' vanished before its start"):
        lab.check(start)
    results = execute(make(start), lab.performer)
    assert outcomes(results) == {"a/start": Outcome.STALE}
    assert lab.sim.mutations == []


def test_start_is_satisfied_when_running_and_needed_when_shut_off(lab: Lab) -> None:
    start = StartGuest(lab.ref("a"), lab.intent("a"))
    lab.define("a")
    assert lab.check(start) is Check.NEEDED
    lab.sim.start("t-a")
    assert lab.check(start) is Check.SATISFIED
    lab.sim.set_state("t-a", DomainState.PAUSED)
    assert lab.check(start) is Check.SATISFIED
    lab.sim.set_state("t-a", DomainState.CRASHED)
    assert lab.check(start) is Check.NEEDED


# -- identity: name and mark --------------------------------------------------------------


def foreign(lab: Lab, owner: str) -> GuestRef:
    """Put a domain that is not guest a's where the plan expects it; the ref the plan holds."""
    a = lab.facts("a")
    assert a.mark is not None
    if owner == "unmarked":  # someone's own VM under a's name
        lab.sim.put(replace(a, mark=None), DomainState.RUNNING)
    elif owner == "other lab":
        lab.sim.put(replace(a, mark=replace(a.mark, lab="u")), DomainState.RUNNING)
    elif owner == "other guest":  # b's definition, renamed to t-a
        lab.sim.put(replace(lab.facts("b"), name="t-a"), DomainState.RUNNING)
    elif owner == "copy":  # a's mark under another name: the ref names that domain
        lab.sim.put(replace(a, name="t-a2", uuid="u-copy"), DomainState.RUNNING)
        return GuestRef("a", "local", "t-a2")
    else:
        raise AssertionError(owner)
    return lab.ref("a")


OWNERS = ["unmarked", "other lab", "other guest", "copy"]


@pytest.mark.parametrize("owner", OWNERS)
def test_a_domain_that_is_not_the_guests_is_stale_for_every_step(lab: Lab, owner: str) -> None:
    ref = foreign(lab, owner)
    intent = lab.intent("a")
    steps: list[Action] = [
        DefineGuest(ref, intent),
        StartGuest(ref, intent),
        ShutdownGuest(ref, 1.0),
        DestroyGuest(ref),
        UndefineGuest(ref),
        SyncGcRoots(ref),
    ]
    for step in steps:
        with pytest.raises(StaleError, match="it is never touched"):
            lab.check(step)
    before = lab.sim.get(ref.domain)
    results = execute(make(*steps), lab.performer)
    assert set(outcomes(results).values()) == {Outcome.STALE}
    assert exit_code(results, []) == EXIT_ERROR
    assert lab.sim.mutations == []
    assert lab.sim.get(ref.domain) == before
    assert lab.roots("a") == {}


# -- stop, destroy, undefine --------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (DomainState.RUNNING, Check.NEEDED),
        (DomainState.PAUSED, Check.NEEDED),
        (DomainState.SHUTOFF, Check.SATISFIED),
        (DomainState.CRASHED, Check.SATISFIED),
        (None, Check.SATISFIED),  # absent
    ],
)
def test_shutdown_and_destroy_are_satisfied_when_not_running(
    lab: Lab, state: DomainState | None, expected: Check
) -> None:
    if state is not None:
        lab.define("a", running=True)
        lab.sim.set_state("t-a", state)
    assert lab.check(ShutdownGuest(lab.ref("a"), 1.0)) is expected
    assert lab.check(DestroyGuest(lab.ref("a"))) is expected


def test_undefine_is_satisfied_only_when_absent(lab: Lab) -> None:
    undefine = UndefineGuest(lab.ref("a"))
    assert lab.check(undefine) is Check.SATISFIED
    lab.define("a")
    assert lab.check(undefine) is Check.NEEDED


def test_a_domain_that_cannot_be_read_is_unknown_not_absent(lab: Lab) -> None:
    lab.define("a")
    lab.sim.unreadable["t-a"] = "connection reset"
    with pytest.raises(ReconcileError, match="connection reset"):
        lab.check(UndefineGuest(lab.ref("a")))
    results = execute(make(UndefineGuest(lab.ref("a")), DestroyGuest(lab.ref("a"))), lab.performer)
    assert outcomes(results) == {"a/undefine": Outcome.FAILED, "a/destroy": Outcome.FAILED}
    assert lab.sim.mutations == []


@pytest.mark.parametrize("graceful", [True, False])
def test_shutdown_stops_the_guest_and_a_second_run_skips_it(lab: Lab, graceful: bool) -> None:
    lab.sim.graceful = graceful  # False: the guest ignored ACPI and was destroyed
    lab.define("a", running=True)
    plan = make(ShutdownGuest(lab.ref("a"), 1.0))
    assert outcomes(execute(plan, lab.performer)) == {"a/shutdown": Outcome.DONE}
    observed = lab.sim.get("t-a")
    assert observed is not None and observed.state is DomainState.SHUTOFF
    assert observed.config == lab.facts("a")  # the definition stays
    assert outcomes(execute(plan, lab.performer)) == {"a/shutdown": Outcome.SKIPPED}
    assert lab.sim.mutations == [("shutdown", "t-a")]


def test_destroy_stops_the_guest_and_keeps_its_definition(lab: Lab) -> None:
    lab.define("a", running=True)
    plan = make(DestroyGuest(lab.ref("a")))
    assert outcomes(execute(plan, lab.performer)) == {"a/destroy": Outcome.DONE}
    observed = lab.sim.get("t-a")
    assert observed is not None and observed.state is DomainState.SHUTOFF and observed.persistent
    assert outcomes(execute(plan, lab.performer)) == {"a/destroy": Outcome.SKIPPED}
    assert lab.sim.mutations == [("destroy", "t-a")]


def test_undefine_removes_the_domain_and_releases_its_gc_roots(
    lab: Lab, gcroots_auto: Path
) -> None:
    lab.define("a")
    top = lab.intent("a").toplevel
    nix.sync_gc_roots(lab.manifest.lab.layout.gcroot("a"), {top})
    assert lab.roots("a") == {"aaa-sys-a": top}
    assert len(list(gcroots_auto.iterdir())) == 1  # registered
    plan = make(UndefineGuest(lab.ref("a")))
    assert outcomes(execute(plan, lab.performer)) == {"a/undefine": Outcome.DONE}
    assert lab.sim.get("t-a") is None
    assert lab.roots("a") == {}
    assert list(gcroots_auto.iterdir()) == []
    assert outcomes(execute(plan, lab.performer)) == {"a/undefine": Outcome.SKIPPED}


def test_undefine_of_a_running_domain_fails_and_blocks_nothing_else(lab: Lab) -> None:
    lab.define("a", running=True)
    lab.define("b")
    results = execute(make(UndefineGuest(lab.ref("a")), UndefineGuest(lab.ref("b"))), lab.performer)
    assert outcomes(results) == {"a/undefine": Outcome.FAILED, "b/undefine": Outcome.DONE}
    assert "it is running" in results[0].message
    assert lab.sim.names() == ["t-a"]


def test_gc_roots_are_needed_until_synced_for_the_persistent_and_running_closures(
    lab: Lab,
) -> None:
    lab.define("a", running=True)
    newer = guest_intent(lab.manifest, lab.intent("a").guest, "/nix/store/zzz-sys-a", KERNEL)
    lab.sim.define(DomainSpec(newer.definition, INITRD))  # redefined while it runs on
    sync = SyncGcRoots(lab.ref("a"))
    assert lab.check(sync) is Check.NEEDED
    assert outcomes(execute(make(sync), lab.performer)) == {"a/gc-roots": Outcome.DONE}
    # both closures kept: the running one until the restart
    assert lab.roots("a") == {
        "aaa-sys-a": "/nix/store/aaa-sys-a",
        "zzz-sys-a": "/nix/store/zzz-sys-a",
    }
    assert lab.check(sync) is Check.SATISFIED
    assert lab.sim.mutations == [("define", "t-a")]  # the guest itself was not touched


# -- wait-ready (reads the console file; no Nix) ------------------------------------------


def wait_step(lab: Lab) -> WaitReady:
    """The plan's step for a running a whose boot was never seen ready (`wait`)."""
    lab.define("a", running=True, ready=False)
    plan = lab.plan()
    assert plan.diff.changes[0].kind is ChangeKind.WAIT
    step = plan.action("a/wait-ready")
    assert isinstance(step, WaitReady)
    assert plan.dependencies("a/wait-ready") == []
    return step


def test_wait_ready_marks_the_boot_ready_on_its_readiness_line(lab: Lab) -> None:
    step = wait_step(lab)
    console = lab.sim.console(lab.intent("a").definition)
    console.parent.mkdir(parents=True, exist_ok=True)
    console.write_text(f"booting\nreconcile-ready: {lab.intent('a').toplevel}\n")
    assert lab.check(step) is Check.NEEDED  # nothing to look at before reading the console
    assert outcomes(execute(make(step), lab.performer)) == {"a/wait-ready": Outcome.DONE}
    observed = lab.sim.get("t-a")
    assert observed is not None and observed.live is not None
    assert observed.live.ready == lab.intent("a").toplevel
    assert lab.sim.mutations == [("mark_ready", "t-a")]
    assert lab.plan().diff.changes[0].kind is ChangeKind.NOOP  # seen ready now


def test_wait_ready_fails_at_once_on_a_panic(lab: Lab) -> None:
    step = wait_step(lab)
    console = lab.sim.console(lab.intent("a").definition)
    console.parent.mkdir(parents=True, exist_ok=True)
    console.write_text("[    1.0] Kernel panic - not syncing: VFS: Unable to mount root fs\n")
    results = execute(make(step), lab.performer)
    assert outcomes(results) == {"a/wait-ready": Outcome.FAILED}
    assert "Kernel panic - not syncing" in results[0].message
    assert lab.sim.mutations == []


def test_wait_ready_fails_at_once_when_the_guest_stopped(lab: Lab) -> None:
    step = wait_step(lab)
    lab.sim.set_state("t-a", DomainState.SHUTOFF)  # powered off before its readiness line
    with pytest.raises(ReconcileError, match="stopped before it was ready"):
        lab.performer.perform(step)
    assert lab.sim.mutations == []


# -- a plan of the simulated world, applied to it -----------------------------------------


def world_to_converge(lab: Lab) -> None:
    """a runs as wanted; b runs but should be stopped; t-old is an orphan; web is not ours."""
    lab.define("a", running=True)
    lab.define("b", running=True)
    old = lab.facts("a")
    assert old.mark is not None
    lab.sim.put(
        replace(old, name="t-old", uuid="u-old", mark=replace(old.mark, name="old")),
        DomainState.RUNNING,
    )
    lab.sim.put(replace(lab.facts("a"), name="web", uuid="u-web", mark=None), DomainState.RUNNING)


def test_a_plan_of_the_simulated_world_applied_converges(lab: Lab) -> None:
    world_to_converge(lab)
    plan = lab.plan()
    assert plan.action_keys() == [
        "a/gc-roots",
        "b/shutdown",
        "b/gc-roots",
        "old/destroy",
        "old/undefine",
    ]
    results = execute(plan, lab.performer, parallel=4)
    assert outcomes(results) == dict.fromkeys(plan.action_keys(), Outcome.DONE)
    assert exit_code(results, []) == EXIT_OK
    assert lab.sim.mutations.index(("destroy", "t-old")) < lab.sim.mutations.index(
        ("undefine", "t-old")
    )
    assert sorted(lab.sim.mutations) == [
        ("destroy", "t-old"),
        ("shutdown", "t-b"),
        ("undefine", "t-old"),
    ]
    assert lab.sim.names() == ["t-a", "t-b", "web"]
    b = lab.sim.get("t-b")
    assert b is not None and b.state is DomainState.SHUTOFF
    assert lab.roots("a") == {"aaa-sys-a": "/nix/store/aaa-sys-a"}
    assert lab.roots("b") == {"bbb-sys-b": "/nix/store/bbb-sys-b"}

    again = lab.plan()
    assert not again.has_changes() and again.action_keys() == []
    # the old plan once more: every step re-checked and found done
    results = execute(plan, lab.performer, parallel=4)
    assert outcomes(results) == dict.fromkeys(plan.action_keys(), Outcome.SKIPPED)
    assert len(lab.sim.mutations) == 3


def test_a_world_changed_since_the_plan_is_stale_where_it_changed(lab: Lab) -> None:
    world_to_converge(lab)
    plan = lab.plan()
    # since the plan: b was shut down by hand, and t-old became someone else's VM
    lab.sim.shutdown("t-b", 1.0)
    lab.sim.set_state("t-old", DomainState.SHUTOFF)
    lab.sim.vanish("t-old")
    lab.sim.put(replace(lab.facts("a"), name="t-old", uuid="u-x", mark=None), DomainState.RUNNING)
    lab.sim.mutations.clear()
    results = execute(plan, lab.performer, parallel=4)
    assert outcomes(results) == {
        "a/gc-roots": Outcome.DONE,
        "b/shutdown": Outcome.SKIPPED,
        "b/gc-roots": Outcome.DONE,
        "old/destroy": Outcome.STALE,
        "old/undefine": Outcome.BLOCKED,
    }
    assert lab.sim.mutations == []
    stranger = lab.sim.get("t-old")
    assert stranger is not None and stranger.state is DomainState.RUNNING
    assert exit_code(results, []) == EXIT_ERROR
