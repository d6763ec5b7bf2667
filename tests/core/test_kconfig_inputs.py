"""What a kernel's `config` and `set` may be: nothing from the manifest reaches make as an
option, and no `set` value adds a line to the fragment."""

from __future__ import annotations

import jsonschema
import pytest

from reconcile.core.kernels.kconfig import (
    CONFIG_TARGETS,
    ConfigFile,
    ConfigTarget,
    base_config,
    render_fragment,
)
from reconcile.core.manifest.schema import ecma_anchors
from tests.support.schema import subschema_at

TARGETS = [*sorted(CONFIG_TARGETS), "x86_64_defconfig", "i386_defconfig", "multi_v7_defconfig"]
FILES = ["./my.config", "/srv/configs/guest.config", "arch/x86/configs/x.config", "a b/c"]
REFUSED = [
    "--eval=$(shell touch /tmp/m)config",
    "-f/tmp/evil.config",
    "-fconfig",
    "kvm_guest.config",
    "olddefconfig",
    "randconfig",
    "oldconfig",
    "menuconfig",
    "config",
    "X86_defconfig",
    "_defconfig",
    "defconfig\n",
    "-/x",
    "VAR=1/x",  # has a `/`: a path (copied, never passed to make), so allowed below
    "",
]


@pytest.mark.parametrize("text", TARGETS)
def test_targets(text: str) -> None:
    assert base_config(text) == ConfigTarget(text)


@pytest.mark.parametrize("text", [*FILES, "VAR=1/x"])
def test_files(text: str) -> None:
    assert base_config(text) == ConfigFile(text)


@pytest.mark.parametrize("text", [t for t in REFUSED if t != "VAR=1/x"])
def test_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is neither a make config target"):
        base_config(text)


@pytest.mark.parametrize("text", TARGETS + FILES + REFUSED)
def test_schema_pattern_agrees(text: str) -> None:
    node = subschema_at(("kernels", "k", "config"))
    assert node is not None
    schema = {"pattern": ecma_anchors(node["pattern"]), "minLength": 1}
    try:
        base_config(text)
        allowed = True
    except ValueError:
        allowed = False
    assert jsonschema.Draft202012Validator(schema).is_valid(text) == allowed


@pytest.mark.parametrize(
    "value", ["y\nCONFIG_MODULES=y", "y\n", "a\rb", 'a" CONFIG_X="y', "a\\", "\x00", ""]
)
def test_set_values_that_would_break_their_line_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="one line"):
        render_fragment([("XFS_FS", value)])
    node = subschema_at(("kernels", "k", "set", "XFS_FS"))
    assert node is not None
    schema = {"pattern": ecma_anchors(node["pattern"]), "minLength": 1}
    assert not jsonschema.Draft202012Validator(schema).is_valid(value)


def test_set_names_are_checked_too() -> None:
    with pytest.raises(ValueError):
        render_fragment([("X\nCONFIG_Y", "y")])


def test_ordinary_values_render_one_line_each() -> None:
    text = render_fragment([("A", "y"), ("B", "n"), ("C", "console=ttyS0 quiet"), ("D", "0x10")])
    assert text.splitlines() == [
        "CONFIG_A=y",
        "# CONFIG_B is not set",
        'CONFIG_C="console=ttyS0 quiet"',
        "CONFIG_D=0x10",
    ]
