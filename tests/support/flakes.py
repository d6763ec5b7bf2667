"""A copy of the demo flake for a real test, with systems of the test's own."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import ROOT


def demo_flake(dest: Path, extra_systems: str = "") -> Path:
    """nix/ copied to `dest` with busybox in place; `extra_systems` (lines of
    `name = { ... };`) added to systems.nix."""
    shutil.copytree(ROOT / "nix", dest, ignore=shutil.ignore_patterns("result*"))
    shutil.copy2("/bin/busybox", dest / "bb" / "busybox")
    if extra_systems:
        systems = dest / "systems.nix"
        text = systems.read_text().rstrip()
        assert text.endswith("}")
        systems.write_text(text[:-1] + extra_systems.rstrip() + "\n}\n")
    return dest
