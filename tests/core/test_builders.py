"""Nix remote builders as Nix's machine lines (pure)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from reconcile.core.builders import builders_option, machine_line
from reconcile.core.errors import ManifestError
from reconcile.core.manifest import parse_manifest

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHVhmTUhVpvXYpbmqi7rMc9QIr4ldbyGFPIWu5SnU6RB"
MANIFEST = f"""
[lab]
name = "t"
state_dir = "/state"
build_locally = false
[builders.big]
target = "nix@build1.lab.example"
host_key = "{KEY}"
identity = "/keys/id"
systems = ["x86_64-linux", "aarch64-linux"]
max_jobs = 8
speed = 2
features = ["kvm", "big-parallel"]
[builders.small]
target = "10.0.0.9"
host_key = "{KEY}"
"""


def test_each_builder_is_one_machine_line_with_its_pinned_key() -> None:
    m = parse_manifest(MANIFEST.encode(), Path("/lab/m.toml"))
    assert not m.lab.build_locally
    big, small = m.builders["big"], m.builders["small"]
    pinned = base64.b64encode(KEY.encode()).decode()
    assert machine_line(big).split() == [
        "ssh-ng://nix@build1.lab.example",
        "x86_64-linux,aarch64-linux",
        "/keys/id",
        "8",
        "2",
        "kvm,big-parallel",
        "-",
        pinned,
    ]
    assert machine_line(small).split()[:3] == ["ssh-ng://root@10.0.0.9", "x86_64-linux", "-"]
    assert builders_option([big, small]).count(" ; ") == 1


def test_building_nowhere_is_refused() -> None:
    text = '[lab]\nname = "t"\nstate_dir = "/state"\nbuild_locally = false\n'
    with pytest.raises(ManifestError) as raised:
        parse_manifest(text.encode(), Path("/lab/m.toml"))
    [problem] = raised.value.problems
    assert problem.path == "lab.build_locally" and "nothing could build" in problem.message
