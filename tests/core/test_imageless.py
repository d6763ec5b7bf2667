"""The imageless definition and its spec hash, on the production code (core/guests/imageless.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from reconcile.core.desired import Accel, Guest, GuestMode, Network, NetworkKind, Share
from reconcile.core.guests.imageless import (
    RENDER_VERSION,
    BootKernel,
    GuestDefinition,
    define,
    kernel_identity,
    spec_hash,
)
from reconcile.core.layout import StateLayout
from tests.core.test_plan import MANIFEST, intents

STATE = Path("/var/lib/reconcile/demo")
LAYOUT = StateLayout(STATE)
KERNEL = BootKernel(Path("/boot/vmlinuz"), "ab" * 32, Path("/k/lib/modules/6.1.0"), ("m.ko",))


def guest(**overrides: Any) -> Guest:
    manifest_guest = next(iter(intents(MANIFEST))).guest
    return dataclasses.replace(manifest_guest, **overrides)


def definition(**overrides: Any) -> GuestDefinition:
    toplevel = "/nix/store/" + "a" * 32 + "-s"
    g = guest(**overrides)
    return define("demo", g, accel=Accel.QEMU, toplevel=toplevel, kernel=KERNEL, layout=LAYOUT)


def _perturbed(value: Any) -> Any:
    """Another value of the same type."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, Accel):
        return Accel.KVM if value is Accel.QEMU else Accel.QEMU
    if isinstance(value, Path):
        return value / "x"
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, tuple):
        return (*value, value[0]) if value else ("x",)
    raise AssertionError(f"no perturbation for {type(value)}")


def _leaf_changes(value: Any, path: str = "") -> list[tuple[str, Any]]:
    """(path, a copy of `value` with that one leaf field changed) for every leaf, recursively."""
    found: list[tuple[str, Any]] = []
    for field in dataclasses.fields(value):
        current = getattr(value, field.name)
        here = f"{path}.{field.name}" if path else field.name
        if dataclasses.is_dataclass(current):
            for sub, changed in _leaf_changes(current, here):
                found.append((sub, dataclasses.replace(value, **{field.name: changed})))
        elif isinstance(current, tuple) and current and dataclasses.is_dataclass(current[0]):
            for i, item in enumerate(current):
                for sub, changed in _leaf_changes(item, f"{here}[{i}]"):
                    items = (*current[:i], changed, *current[i + 1 :])
                    found.append((sub, dataclasses.replace(value, **{field.name: items})))
        else:
            found.append((here, dataclasses.replace(value, **{field.name: _perturbed(current)})))
    return found


BASE = definition(
    network=Network(NetworkKind.LIBVIRT, "default", None),
    shares=(Share("r", Path("/srv/r"), True),),
)
CHANGES = _leaf_changes(BASE)


def test_every_field_is_reached() -> None:
    paths = {p for p, _ in CHANGES}
    assert {"memory_mib", "vcpus", "cmdline", "toplevel", "serial_log", "render"} <= paths
    assert {"kernel.image", "kernel.digest", "kernel.early_modules", "mark.protect"} <= paths
    assert {"network.mac", "shares[2].writable", "shares[0].source"} <= paths


@pytest.mark.parametrize(("path", "changed"), CHANGES, ids=[p for p, _ in CHANGES])
def test_the_hash_follows_every_field_of_the_definition(path: str, changed: Any) -> None:
    assert spec_hash(changed) != spec_hash(BASE), path


def test_the_hash_is_stable() -> None:
    # Pinned: a change here redefines every domain in the field (a restart of each running
    # guest). Bump RENDER_VERSION on purpose when the rendered XML changes, then update it.
    assert RENDER_VERSION == 1
    assert BASE.spec_hash == ("b34f6e836d6b187e5155c1b884516b5cb969a14568b3e75332f0ea1e7586b07f")


def test_the_manifest_reaches_the_definition() -> None:
    d = definition(memory_mib=768, vcpus=3, kernel_params=("quiet",), protect=True)
    assert (d.memory_mib, d.vcpus, d.mark.protect) == (768, 3, True)
    assert d.cmdline.endswith(" quiet") and f"init={d.toplevel}/init" in d.cmdline
    assert [s.tag for s in d.shares[:2]] == ["store", "modules"]
    assert d.shares[1].origin == "/k/lib/modules"  # the directory holding <release>
    assert d.serial_log == STATE / "guests" / d.mark.name / "serial.log"


def test_the_mark_carries_the_hash_and_the_kernel() -> None:
    mark = BASE.ownership
    assert mark.spec_hash == BASE.spec_hash
    assert mark.kernel == kernel_identity(KERNEL) == f"/boot/vmlinuz sha256:{'ab' * 6}"
    assert (mark.lab, mark.name, mark.mode) == ("demo", BASE.mark.name, GuestMode.IMAGELESS.value)
