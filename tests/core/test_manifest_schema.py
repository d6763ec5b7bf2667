"""The schema is a valid 2020-12 schema, documents itself, and the examples follow it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest

from reconcile.core.desired import Accel, GuestMode
from reconcile.core.manifest import parse_manifest
from reconcile.core.manifest.schema import manifest_schema
from tests.conftest import ROOT

EXAMPLES = sorted((ROOT / "manifests").glob("*.toml"))


def test_schema_is_valid_2020_12() -> None:
    schema = manifest_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_package_copy_is_the_schema_file() -> None:
    assert manifest_schema() == __import__("json").loads(
        (ROOT / "schema" / "manifest.schema.json").read_text()
    )


def _properties(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        for key, prop in node.get("properties", {}).items():
            found.append((f"{path}.{key}", prop))
        for key, value in node.items():
            found.extend(_properties(value, f"{path}/{key}"))
    return found


def test_every_property_has_a_description() -> None:
    schema = manifest_schema()
    missing = [
        path
        for path, prop in _properties(schema)
        if "description" not in prop
        and "description" not in schema["$defs"].get(prop.get("$ref", "").split("/")[-1], {})
    ]
    assert missing == []


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_examples_validate(example: Path) -> None:
    assert example.read_text().startswith("#:schema ../schema/manifest.schema.json")
    manifest = parse_manifest(example.read_bytes(), example)
    assert manifest.lab.name


def test_lab_manifest_as_values() -> None:
    path = ROOT / "manifests" / "lab.toml"
    manifest = parse_manifest(path.read_bytes(), path)
    guest = manifest.guests["xfs-4k"]
    assert guest.mode is GuestMode.IMAGELESS
    assert (guest.memory_mib, guest.vcpus, guest.kernel) == (4096, 4, "next")
    assert guest.shares[0].source == Path("/srv/results/xfs-4k")
    assert guest.shares[0].writable
    # defaults come from the schema
    assert manifest.guests["xfs-1k"].kernel_params == ()
    assert manifest.guests["xfs-1k"].boot_timeout_s == 180
    assert manifest.hypervisors["local"].accel is Accel.KVM
    # paths relative to the manifest's directory; a local flake is a path: reference
    assert manifest.lab.flake == f"path:{ROOT / 'manifests' / '..' / 'nix'}"
    assert manifest.guests["nfs-server"].ssh is not None
    assert manifest.guests["nfs-server"].ssh.known_hosts == ROOT / "manifests" / "known_hosts"
    assert manifest.hosts["bm1"].ssh.user == "root"
    assert manifest.hosts["bm1"].health[1].value == 22
    assert manifest.gitops is not None
    assert manifest.gitops.interval_s == 900


def test_single_hypervisor_is_the_default(tmp_path: Path) -> None:
    text = b"""[lab]
name = "t"
state_dir = "state"
[hypervisors.only]
accel = "qemu"
[kernels.k]
image = "/vmlinuz"
[guests.a]
mode = "imageless"
system = "demo-a"
kernel = "k"
"""
    manifest = parse_manifest(text, tmp_path / "m.toml")
    assert manifest.guests["a"].hypervisor == "only"
    assert manifest.hypervisors["only"].uri == "qemu:///system"
    assert manifest.lab.state_dir == tmp_path / "state"
