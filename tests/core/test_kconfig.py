"""Kconfig logic: parsing, the build key, the required-option check, the plan of a kernel change."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from reconcile.core.guests.diff import ChangeKind
from reconcile.core.guests.intent import guest_intent
from reconcile.core.kernels.kconfig import (
    build_key,
    describe_missing,
    fix_fragment,
    missing_options,
    parse_config,
    render_fragment,
    required_options,
)
from reconcile.core.manifest import parse_manifest
from reconcile.core.plan.diff import diff_lab
from reconcile.core.plan.graph import make_plan
from tests.core.test_plan import KERNEL, MANIFEST, intents, observation, running

KEY = {
    "source": "commit:abc",
    "base_config": "target:tinyconfig",
    "fragments": ["f1"],
    "options": [("XFS_FS", "y")],
    "toolchain": "gcc 12",
}


def test_parse_and_render_round_trip() -> None:
    text = 'CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C="x y"\nCONFIG_D=0x10\n# comment\n'
    assert parse_config(text) == {"A": "y", "B": "n", "C": "x y", "D": "0x10"}
    assert parse_config(render_fragment(parse_config(text).items())) == parse_config(text)


def test_build_key_changes_with_each_input_and_only_them() -> None:
    base = build_key(**KEY)  # type: ignore[arg-type]
    assert build_key(**KEY) == base  # type: ignore[arg-type]
    for field, other in [
        ("source", "commit:abc+dirty:1234"),
        ("base_config", "target:defconfig"),
        ("fragments", ["f2"]),
        ("options", [("XFS_FS", "m")]),
        ("toolchain", "gcc 13"),
    ]:
        assert build_key(**{**KEY, field: other}) != base, field  # type: ignore[arg-type]
    # the order of `set` is not an input: a table has no order
    two = {**KEY, "options": [("A", "y"), ("B", "y")]}
    swapped = {**KEY, "options": [("B", "y"), ("A", "y")]}
    assert build_key(**two) == build_key(**swapped)  # type: ignore[arg-type]


def test_required_options_follow_the_consoles() -> None:
    serial = required_options(["root=tmpfs console=ttyS0,115200 init=/x"])
    assert "SERIAL_8250_CONSOLE" in serial and "VIRTIO_CONSOLE" not in serial
    both = required_options(["console=ttyS0", "console=hvc0"])
    assert "VIRTIO_CONSOLE" in both


def test_missing_message_names_options_guests_and_the_fix() -> None:
    config = {"VIRTIO_PCI": "y", "VIRTIO_FS": "m", "FUSE_FS": "y", "DEVTMPFS": "y"}
    missing = missing_options(config, required_options(["console=ttyS0"]))
    assert [m.option for m in missing] == [
        "VIRTIO_FS",
        "TMPFS",
        "SERIAL_8250",
        "SERIAL_8250_CONSOLE",
    ]
    message = describe_missing("next", missing, ["xfs-4k", "xfs-1k"])
    assert message == (
        "kernel 'next' lacks what imageless guests need built in: VIRTIO_FS (module), "
        "TMPFS (not set), SERIAL_8250 (not set), SERIAL_8250_CONSOLE (not set); "
        "guests that boot it: xfs-1k, xfs-4k"
    )
    assert fix_fragment(missing).splitlines()[0] == "CONFIG_VIRTIO_FS=y"


def test_a_kernel_change_restarts_only_the_guests_that_boot_it() -> None:
    a, b, c = intents()
    observed = observation(running(a), running(b), running(c))
    new_kernel = replace(KERNEL, image=Path("/state/kernels/host-2/bzImage"), digest="2" * 64)
    manifest = parse_manifest(MANIFEST, Path("/lab/m.toml"))
    b2 = guest_intent(manifest, b.guest, b.toplevel, new_kernel)  # only b boots the new one
    plan = make_plan(diff_lab("t", [a, b2, c], observed, prune=False), {}, {"host": "/k/host-2"})
    assert {ch.name: ch.kind for ch in plan.diff.changes} == {
        "a": ChangeKind.NOOP,
        "b": ChangeKind.RESTART,
        "c": ChangeKind.NOOP,
    }
    assert plan.action_keys() == [
        "kernel:host",
        "b/define",
        "b/shutdown",
        "b/start",
        "b/wait-ready",
    ]
    assert plan.dependencies("b/define") == ["kernel:host"]
    assert plan.kernels_to_build == (("host", "/k/host-2"),)
