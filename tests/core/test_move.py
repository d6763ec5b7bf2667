"""A guest moved to another hypervisor: its old copy goes first, so exactly one runs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from reconcile.core.guests.diff import ChangeKind
from reconcile.core.guests.intent import guest_intent
from reconcile.core.guests.observed import HypervisorObservation, ObservedDomain
from reconcile.core.manifest import parse_manifest
from reconcile.core.plan.diff import diff_lab
from reconcile.core.plan.graph import make_plan
from tests.core.test_plan import KERNEL, running

MOVED = b"""
[lab]
name = "t"
state_dir = "/state"
[hypervisors.local]
uri = "test:///default"
accel = "qemu"
[hypervisors.q]
driver = "qemu"
accel = "qemu"
[kernels.host]
image = "/vmlinuz"
[guests.a]
mode = "imageless"
system = "sys-a"
kernel = "host"
hypervisor = "q"
"""


def _setup(*, protect: bool = False):  # type: ignore[no-untyped-def]
    manifest = parse_manifest(MOVED, Path("/lab/m.toml"))
    intent = guest_intent(manifest, manifest.guests["a"], "/nix/store/aaa-sys-a", KERNEL)
    old = running(intent)  # as it ran on `local` before the move
    if protect:
        mark = replace(old.config.mark, protect=True)  # type: ignore[arg-type]
        old = replace(old, config=replace(old.config, mark=mark))
    return intent, old


def observed(local: list[ObservedDomain], q: list[ObservedDomain] | None = None):  # type: ignore[no-untyped-def]
    return {
        "local": HypervisorObservation("test:///default", {d.name: d for d in local}, None),
        "q": HypervisorObservation("qemu", {d.name: d for d in q or []}, None)
        if q is not None
        else HypervisorObservation("qemu", None, "cannot list"),
    }


def test_the_old_copy_goes_before_the_new_one_is_made_without_prune() -> None:
    intent, old = _setup()
    diff = diff_lab("t", [intent], observed([old], []), prune=False)
    kinds = sorted((c.hypervisor, c.kind.value) for c in diff.changes)
    assert kinds == [("local", "destroy"), ("q", "create")]
    plan = make_plan(diff, {})
    assert plan.action_keys() == ["a/destroy", "a/undefine", "a/define", "a/start", "a/wait-ready"]
    assert plan.dependencies("a/define") == ["a/undefine"]
    moved = next(c for c in diff.changes if c.hypervisor == "local")
    assert moved.moved_to == "q" and "moved to hypervisor 'q'" in moved.note


def test_an_unknown_new_place_keeps_the_old_copy() -> None:
    intent, old = _setup()
    diff = diff_lab("t", [intent], observed([old], None), prune=False)
    kinds = {c.hypervisor: c.kind for c in diff.changes}
    assert kinds == {"local": ChangeKind.KEEP, "q": ChangeKind.UNKNOWN}
    assert make_plan(diff, {}).action_keys() == []


def test_a_protected_old_copy_is_kept_and_no_second_copy_is_made() -> None:
    intent, old = _setup(protect=True)
    diff = diff_lab("t", [intent], observed([old], []), prune=False)
    kinds = {c.hypervisor: c.kind for c in diff.changes}
    assert kinds == {"local": ChangeKind.KEEP, "q": ChangeKind.CONFLICT}
    assert make_plan(diff, {}).action_keys() == []
    assert diff.conflicts()  # not a clean plan: exit 1


def test_an_unmarked_domain_of_the_same_name_elsewhere_is_only_listed() -> None:
    intent, old = _setup()
    foreign = replace(old, config=replace(old.config, mark=None))
    diff = diff_lab("t", [intent], observed([foreign], []), prune=False)
    assert [(c.hypervisor, c.kind) for c in diff.changes] == [("q", ChangeKind.CREATE)]
    assert diff.unmanaged == (("local", "t-a"),)
