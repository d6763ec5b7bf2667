"""Pure core: a guest on a qemu+ssh hypervisor boots that machine's copies, and that machine's
views and GC roots are diffed as its own, never as this machine's."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconcile.core.desired import BuildOn
from reconcile.core.errors import ManifestError
from reconcile.core.guests.intent import GuestIntent, guest_intent, lab_views
from reconcile.core.guests.observed import GcRootFacts, HypervisorObservation, ViewState
from reconcile.core.guests.placement import stale_copies
from reconcile.core.guests.shares import STORE_TAG
from reconcile.core.layout import StateLayout
from reconcile.core.manifest import parse_manifest
from reconcile.core.plan.actions import MakeView, SyncGcRoots
from reconcile.core.plan.diff import MachineFacts, diff_lab
from reconcile.core.plan.graph import make_plan
from tests.core.test_plan import KERNEL, running

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHVhmTUhVpvXYpbmqi7rMc9QIr4ldbyGFPIWu5SnU6RB"
TWO = f"""
[lab]
name = "t"
state_dir = "/state"
[hypervisors.here]
uri = "qemu:///system"
accel = "qemu"
[hypervisors.rack2]
uri = "qemu+ssh://root@rack2.example/system"
host_key = "{KEY}"
accel = "qemu"
[kernels.host]
image = "/vmlinuz"
[guests.near]
mode = "imageless"
system = "sys-a"
kernel = "host"
hypervisor = "here"
[guests.far]
mode = "imageless"
system = "sys-a"
kernel = "host"
hypervisor = "rack2"
""".encode()


def intents(text: bytes = TWO) -> dict[str, GuestIntent]:
    manifest = parse_manifest(text, Path("/lab/m.toml"))
    return {
        g.name: guest_intent(manifest, g, "/nix/store/aaa-sys-a", KERNEL)
        for g in manifest.guests.values()
    }


def test_a_hypervisor_builds_its_guests_systems_only_when_asked() -> None:
    manifest = parse_manifest(TWO, Path("/lab/m.toml"))
    assert manifest.hypervisors["rack2"].build_on is BuildOn.CONTROLLER
    built_there = TWO.replace(
        b'accel = "qemu"\n[kernels', b'accel = "qemu"\nbuild_on = "hypervisor"\n[kernels'
    )
    assert (
        parse_manifest(built_there, Path("/lab/m.toml")).hypervisors["rack2"].build_on
        is BuildOn.HYPERVISOR
    )


def test_a_remote_guest_boots_the_kernel_copied_there_by_digest() -> None:
    found = intents()
    near, far = found["near"].definition, found["far"].definition
    assert near.kernel.image == KERNEL.image  # this machine's own file
    placed = Path("/state/placed-kernels") / KERNEL.digest[:32]
    assert far.kernel.image == placed / "vmlinuz"
    assert far.kernel.modules == placed / "modules" / "6.1"
    assert far.kernel.digest == KERNEL.digest  # the same kernel: the same identity
    modules = next(s for s in far.shares if s.tag == "modules")
    assert modules.origin == str(placed / "modules")
    assert found["far"].kernel == KERNEL  # what the copy is made from, on the controller


def _diff(machines: dict[str, MachineFacts | None], local: ViewState) -> object:
    found = intents()
    near, far = found["near"], found["far"]
    observations = {
        "here": HypervisorObservation("qemu:///system", {near.domain: running(near)}, None),
        "rack2": HypervisorObservation("qemu+ssh://x/system", {far.domain: running(far)}, None),
    }
    here_views = {v: local for v in lab_views([near])}
    name = near.toplevel.rsplit("/", 1)[-1]
    roots = {"near": {name: GcRootFacts(near.toplevel, True)}}  # far has none here
    return diff_lab(
        "t",
        [near, far],
        observations,
        prune=False,
        views=here_views,
        roots=roots,
        machines=machines,
    )


def test_a_remote_hypervisors_views_and_roots_are_its_own() -> None:
    far = intents()["far"]
    missing_store = {
        v: ViewState.MISSING if v.source == Path("/nix/store") else ViewState.READ_ONLY
        for v in lab_views([far])
    }
    diff = _diff({"rack2": MachineFacts(missing_store, {})}, ViewState.READ_ONLY)
    assert [(v.view.source, v.hypervisor) for v in diff.views] == [  # type: ignore[attr-defined]
        (Path("/nix/store"), "rack2")
    ]
    assert [(r.guest, r.hypervisor) for r in diff.roots] == [("far", "rack2")]  # type: ignore[attr-defined]
    plan = make_plan(diff, {})  # type: ignore[arg-type]
    views = [a for a in plan.nodes.values() if isinstance(a, MakeView)]
    assert [(v.hypervisor, v.key) for v in views] == [("rack2", "view:rack2:store")]
    syncs = [a for a in plan.nodes.values() if isinstance(a, SyncGcRoots)]
    assert [(s.guest.name, s.guest.hypervisor) for s in syncs] == [("far", "rack2")]


def test_a_remote_machine_not_observed_is_never_repaired() -> None:
    diff = _diff({"rack2": None}, ViewState.READ_ONLY)
    assert diff.views == () and diff.roots == ()  # type: ignore[attr-defined]


def test_this_machines_views_do_not_stand_for_a_remote_ones() -> None:
    far = intents()["far"]
    fine = {v: ViewState.READ_ONLY for v in lab_views([far])}
    fine_roots = {"far": {far.toplevel.rsplit("/", 1)[-1]: GcRootFacts(far.toplevel, True)}}
    diff = _diff({"rack2": MachineFacts(fine, fine_roots)}, ViewState.WRITABLE)
    assert {(v.hypervisor, v.view.source) for v in diff.views} == {  # type: ignore[attr-defined]
        (None, Path("/nix/store")),
        (None, Path("/lib/modules")),
    }
    assert all(u[0] == "near" for v in diff.views for u in v.users)  # type: ignore[attr-defined]
    assert STORE_TAG in {u[1] for v in diff.views for u in v.users}  # type: ignore[attr-defined]


def test_a_kernel_copy_goes_only_when_nothing_there_boots_it_or_will() -> None:
    found = intents()
    far = found["far"]
    layout = StateLayout(Path("/state"))
    booted = far.definition.kernel.image.parent.name
    present = [booted, "0" * 32, "1" * 32 + ".part"]
    seen = HypervisorObservation("qemu+ssh://x/system", {far.domain: running(far)}, None)
    stale = stale_copies(layout, seen, present, ())
    assert [p.name for p in stale] == ["0" * 32, "1" * 32 + ".part"]  # the booted one stays
    empty = HypervisorObservation("qemu+ssh://x/system", {}, None)
    assert booted in [p.name for p in stale_copies(layout, empty, present, ())]
    kept = stale_copies(layout, empty, present, [far.definition.kernel])  # it will boot it
    assert booted not in [p.name for p in kept]
    unknown = HypervisorObservation("qemu+ssh://x/system", None, "unreachable")
    assert stale_copies(layout, unknown, present, ()) == ()
    partly = HypervisorObservation("qemu+ssh://x/system", {}, None, unknown={"t-x": "?"})
    assert stale_copies(layout, partly, present, ()) == ()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t.replace(b'mode = "imageless"\nsystem = "sys-a"\nkernel = "host"\n'
                                b'hypervisor = "rack2"',
                                b'mode = "disk"\nsystem = "sys-a"\nhypervisor = "rack2"'),
            "disk guest 'far' is on remote hypervisor 'rack2'",
        ),
        (
            lambda t: t.replace(b"qemu+ssh://root@rack2.example/system", b"qemu+tls://rack2/system")
            .replace(f'host_key = "{KEY}"\n'.encode(), b""),
            "guest 'far' is on hypervisor 'rack2' (qemu+tls)",
        ),
        (
            lambda t: t.replace(b'[hypervisors.here]\nuri = "qemu:///system"',
                                b'[hypervisors.here]\nuri = "qemu:///system"\n'
                                b'build_on = "hypervisor"'),
            "only a qemu+ssh:// hypervisor builds its guests' systems itself",
        ),
    ],
)  # fmt: skip
def test_what_cannot_be_copied_to_a_remote_hypervisor_is_refused(edit, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ManifestError) as caught:
        parse_manifest(edit(TWO), Path("/lab/m.toml"))
    said = [p.message for p in caught.value.problems]
    assert any(message in m for m in said), said
