"""Pure core of disk guests: their definition, domain XML, diff and plan (change classes)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from reconcile.core.guests.diff import ChangeKind, diff_guest
from reconcile.core.guests.disk import DiskIntent, disk_intent, image_key, store_path_of
from reconcile.core.guests.disk_xml import DiskDomainSpec, facts_of, render_disk_xml
from reconcile.core.guests.domain_xml import parse_domain_xml
from reconcile.core.guests.gcroots import closures_in_use
from reconcile.core.guests.observed import (
    DiskFileFacts,
    DomainState,
    HypervisorObservation,
    ObservedDomain,
)
from reconcile.core.manifest import parse_manifest
from reconcile.core.plan.diff import diff_lab
from reconcile.core.plan.graph import make_plan
from reconcile.core.plan.report import render_json, render_text

MANIFEST = """
[lab]
name = "t"
state_dir = "/state"
[hypervisors.local]
uri = "test:///default"
accel = "qemu"
[guests.box]
mode = "disk"
system = "server"
memory = "512MiB"
disk = { size = "2GiB" }
network = { user = true, ssh_port = 22022 }
ssh = { identity = "/keys/id" }
data_disks = [{ name = "scratch", size = "64MiB" }]
update = "UPDATE"
"""
IMAGE = "/nix/store/iiii-image"
IMAGE_FILE = Path(IMAGE, "nixos.qcow2")
TOP = "/nix/store/tttt-server"
GIB = 1 << 30


def intent(update: str = "switch", image: str = IMAGE, **manifest: str) -> DiskIntent:
    text = MANIFEST.replace("UPDATE", update)
    for old, new in manifest.items():
        text = text.replace(old, new)
    m = parse_manifest(text.encode(), Path("/lab/m.toml"))
    guest = m.guests["box"]
    sources = {c.tag: f"/nix/store/ssss-{c.tag}" for c in guest.config_shares}
    return disk_intent(
        "t",
        guest,
        accel=m.hypervisors["local"].accel,
        layout=m.lab.layout,
        toplevel=TOP,
        image=image,
        config_sources=sources,
    )


def observed(want: DiskIntent, state: DomainState = DomainState.RUNNING) -> ObservedDomain:
    """What libvirt holds once `want` was defined on IMAGE (and, running, seen ready)."""
    facts = parse_domain_xml(render_disk_xml(DiskDomainSpec(want, IMAGE_FILE)))
    live = replace(facts, ready=TOP) if state is DomainState.RUNNING else None
    return ObservedDomain(want.domain, want.definition.uuid, state, facts, live)


def hv(*domains: ObservedDomain) -> HypervisorObservation:
    return HypervisorObservation("test:///default", {d.name: d for d in domains}, None)


DISK = DiskFileFacts(2 * GIB, str(IMAGE_FILE))


def test_domain_xml_round_trips_what_the_diff_compares() -> None:
    want = intent()
    xml = render_disk_xml(DiskDomainSpec(want, IMAGE_FILE))
    facts = parse_domain_xml(xml)
    expected = facts_of(want)
    assert (facts.memory_mib, facts.vcpus, facts.disks, facts.qemu_args) == (
        expected.memory_mib,
        expected.vcpus,
        expected.disks,
        expected.qemu_args,
    )
    assert facts.mark is not None and facts.mark.image == IMAGE and facts.mark.toplevel == TOP
    assert facts.kernel is None  # booted by the image's own boot loader, never a host path
    assert "hostfwd=tcp:127.0.0.1:22022-:22" in xml
    assert f'<source file="{IMAGE_FILE}">' in xml and 'relabel="no"' in xml
    assert [d.target for d in facts.disks] == ["vda", "vdb"]


def test_the_image_is_a_gc_root_while_the_overlay_uses_it() -> None:
    assert closures_in_use(observed(intent())) == {TOP, IMAGE}
    assert store_path_of(str(IMAGE_FILE)) == IMAGE


def test_create_makes_disks_then_defines_and_boots_after_the_image_is_built() -> None:
    want = intent()
    diff = diff_lab("t", [want], {"local": hv()}, prune=False, overlays={"box": None})
    plan = make_plan(diff, {image_key("box"): "f#image", "box": "f#top"})
    keys = plan.action_keys()
    assert keys == ["build", "box/disks", "box/define", "box/start", "box/wait-ready"]
    assert plan.dependencies("box/disks") == ["build"]
    assert set(plan.to_build) == {"f#image", "f#top"}
    text = render_text(plan)
    assert "data:    scratch 64MiB" in text and "overlay /state/guests/box/disk.qcow2" in text


def test_in_sync_is_a_noop_and_a_new_system_does_not_touch_the_domain() -> None:
    want = intent(image="/nix/store/jjjj-new-image")  # a new system built a new image
    change = diff_guest(want, hv(observed(intent())), "t", DISK)
    assert change.kind is ChangeKind.NOOP  # switched over SSH (a host step), not recreated


def test_recreate_wipes_the_overlay_and_keeps_the_data_disks() -> None:
    old = intent("recreate")
    new = intent("recreate", image="/nix/store/jjjj-new-image")
    diff = diff_lab("t", [new], {"local": hv(observed(old))}, prune=False, overlays={"box": DISK})
    change = diff.changes[0]
    assert change.kind is ChangeKind.RECREATE
    assert [r.field for r in change.reasons] == ["image"]
    plan = make_plan(diff, {})
    assert plan.action_keys() == [
        "box/shutdown",
        "box/wipe",
        "box/define",
        "box/start",
        "box/wait-ready",
    ]
    assert plan.recreates() == ["box"]
    assert "ITS DISK IS WIPED" in render_text(plan)


def test_memory_is_a_cold_restart() -> None:
    more = intent(**{'memory = "512MiB"': 'memory = "1GiB"'})
    change = diff_guest(more, hv(observed(intent())), "t", DISK)
    assert change.kind is ChangeKind.RESTART
    assert [(r.field, r.before, r.after) for r in change.reasons] == [
        ("memory", "512 MiB", "1024 MiB")
    ]


def test_growing_is_a_resize_and_shrinking_is_refused() -> None:
    bigger = intent(**{'size = "2GiB"': 'size = "4GiB"'})
    change = diff_guest(bigger, hv(observed(bigger)), "t", DISK)
    assert change.kind is ChangeKind.RESIZE and change.resize_to == 4 * GIB
    plan = make_plan(
        diff_lab(
            "t", [bigger], {"local": hv(observed(bigger))}, prune=False, overlays={"box": DISK}
        ),
        {},
    )
    assert plan.action_keys() == ["box/resize"]
    smaller = intent(**{'size = "2GiB"': 'size = "1GiB"'})
    change = diff_guest(smaller, hv(observed(smaller)), "t", DISK)
    assert change.kind is ChangeKind.CONFLICT
    assert "never shrunk" in change.note and "at least 2GiB" in change.note


def test_a_missing_overlay_is_made_anew_and_an_unreadable_one_is_unknown() -> None:
    change = diff_guest(intent(), hv(observed(intent())), "t", None)
    assert change.kind is ChangeKind.RECREATE and "missing" in change.note
    change = diff_guest(intent(), hv(observed(intent())), "t", "cannot read it: EIO")
    assert change.kind is ChangeKind.UNKNOWN and change.intent is None


def test_prune_removes_the_domain_then_its_disks_and_never_a_protected_one() -> None:
    orphan = observed(intent())
    diff = diff_lab("t", [], {"local": hv(orphan)}, prune=True)
    plan = make_plan(diff, {})
    assert plan.action_keys() == ["box/destroy", "box/undefine", "box/remove-disks"]
    protected = observed(intent(**{'update = "switch"': 'update = "switch"\nprotect = true'}))
    diff = diff_lab("t", [], {"local": hv(protected)}, prune=True)
    assert make_plan(diff, {}).action_keys() == []


def test_json_names_mode_and_address() -> None:
    want = intent()
    diff = diff_lab("t", [want], {"local": hv()}, prune=False, overlays={"box": None})
    diff = replace(diff, changes=tuple(replace(c, address="127.0.0.1:22022") for c in diff.changes))
    doc = render_json(make_plan(diff, {}))
    guest = doc["changes"][0]
    assert guest["mode"] == "disk" and guest["address"] == "127.0.0.1:22022"
    assert guest["desired"]["image"] == IMAGE and guest["desired"]["disk_bytes"] == 2 * GIB


def test_a_bridge_nic_and_config_shares_render_and_are_compared() -> None:
    bridged = intent(
        **{
            "network = { user = true, ssh_port = 22022 }": (
                'network = { bridge = "br0", address = "192.0.2.10/24" }\n'
                'config_shares = [{ tag = "seed", source = ".#seed" }]'
            )
        }
    )
    spec = DiskDomainSpec(bridged, IMAGE_FILE)
    xml = render_disk_xml(spec)
    assert '<interface type="bridge">' in xml and '<source bridge="br0" />' in xml
    assert "hostfwd" not in xml and '<source type="memfd" />' in xml
    facts = parse_domain_xml(xml)
    assert [s.tag for s in facts.shares] == ["seed"]
    assert facts.shares[0].source.startswith("/state/views/")  # a read-only view of the path
    assert diff_guest(bridged, hv(observed(bridged)), "t", DISK).kind is ChangeKind.NOOP
    assert diff_guest(bridged, hv(observed(intent())), "t", DISK).kind is ChangeKind.RESTART


def test_a_config_share_is_built_before_the_guest_starts() -> None:
    shared = intent(
        **{"update = ": 'config_shares = [{ tag = "seed", source = ".#seed" }]\nupdate = '}
    )
    diff = diff_lab("t", [shared], {"local": hv()}, prune=False, overlays={"box": None})
    plan = make_plan(diff, {"box (share seed)": "f#seed"})
    assert plan.to_build == ("f#seed",)
    assert plan.dependencies("box/disks") == ["build"]


def test_another_format_recreates_the_disk_even_with_update_switch() -> None:
    raw = intent(**{'size = "2GiB" }': 'size = "2GiB", format = "raw" }'})
    change = diff_guest(raw, hv(observed(intent())), "t", DISK)
    assert change.kind is ChangeKind.RECREATE
    assert ("format", "qcow2", "raw") in [(r.field, r.before, r.after) for r in change.reasons]
