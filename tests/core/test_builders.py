"""Nix remote builders as Nix's machine lines, and kernels made on builders (pure)."""

from __future__ import annotations

import base64
from dataclasses import replace
from pathlib import Path

import pytest

from reconcile.core.builders import builder_ssh, builders_option, kernels_built_on, machine_line
from reconcile.core.desired import KernelBuild
from reconcile.core.errors import ManifestError
from reconcile.core.manifest import parse_manifest
from reconcile.core.plan.diff import diff_lab
from reconcile.core.plan.graph import make_plan
from reconcile.core.plan.report import render_json, render_text
from tests.core.test_plan import intents, observation

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


KERNELS = f"""
[lab]
name = "t"
state_dir = "/state"
[builders.big]
target = "nix@build1.lab.example"
host_key = "{KEY}"
[kernels.next]
source = "/srv/linux"
builder = "big"
[kernels.here]
source = "/srv/linux"
"""


def test_a_kernel_names_the_builder_its_make_runs_on() -> None:
    m = parse_manifest(KERNELS.encode(), Path("/lab/m.toml"))
    assert isinstance(m.kernels["next"].source, KernelBuild)
    assert m.kernels["next"].source.builder == "big"
    assert isinstance(m.kernels["here"].source, KernelBuild)
    assert m.kernels["here"].source.builder is None
    assert kernels_built_on(m, ["here", "next"]) == {"next": "builder big (nix@build1.lab.example)"}
    ssh = builder_ssh(m.builders["big"], 600.0)
    assert (ssh.target.destination, ssh.port, ssh.host_key) == ("nix@build1.lab.example", 22, KEY)


@pytest.mark.parametrize(
    ("kernel", "path", "message", "hint"),
    [
        (
            'source = "/srv/linux"\nbuilder = "bgi"',
            "kernels.k.builder",
            "unknown builder 'bgi'",
            "did you mean 'big'?",
        ),
        (
            'source = "/srv/linux"\nbuilder = "other"',
            "kernels.k.builder",
            "unknown builder 'other'",
            "defined builders: big",
        ),
        (
            'image = "/vmlinuz"\nbuilder = "big"',
            "kernels.k.builder",
            "only kernels built from `source` take this key",
            None,
        ),
    ],
)
def test_a_kernels_builder_must_be_one_and_only_for_a_build(
    kernel: str, path: str, message: str, hint: str | None
) -> None:
    text = KERNELS.partition("[kernels.next]")[0] + f"[kernels.k]\n{kernel}\n"
    with pytest.raises(ManifestError) as raised:
        parse_manifest(text.encode(), Path("/lab/m.toml"))
    [problem] = raised.value.problems
    assert (problem.path, problem.message, problem.hint) == (path, message, hint)


def test_without_builders_the_hint_says_to_add_one() -> None:
    text = '[lab]\nname = "t"\nstate_dir = "/state"\n[kernels.k]\nsource = "/l"\nbuilder = "b"\n'
    with pytest.raises(ManifestError) as raised:
        parse_manifest(text.encode(), Path("/lab/m.toml"))
    [problem] = raised.value.problems
    assert problem.message == "unknown builder 'b'"
    assert problem.hint == "no builders is defined: add a [builders.b] table"


def test_the_plan_says_which_builder_makes_a_kernel() -> None:
    a, b, c = intents()
    plan = make_plan(
        diff_lab("t", [a, b, c], observation(), prune=False),
        {},
        {"host": "/k/host-2", "other": "/k/other-1"},
    )
    # (the guests boot `host`; a kernel no change needs is not built)
    assert plan.kernels_to_build == (("host", "/k/host-2"),)
    plan = replace(plan, kernels_built_on={"host": "builder big (nix@build1.lab.example)"})
    text = render_text(plan)
    assert (
        "Kernels to build (1):\n  * host in /k/host-2, on builder big (nix@build1.lab.example)\n"
        in text
    )
    assert render_json(plan)["kernels_to_build"] == [
        {
            "kernel": "host",
            "directory": "/k/host-2",
            "built_on": "builder big (nix@build1.lab.example)",
        }
    ]
    here = replace(plan, kernels_built_on={})
    assert "  * host in /k/host-2\n" in render_text(here)
    assert render_json(here)["kernels_to_build"][0]["built_on"] == "here"
