"""A hostile manifest makes `validate` and `plan` run nothing it controls.

Each file in tests/manifests/hostile/ is one vector: a value that, passed on to libvirt, git,
make or nix, would run a command, read another makefile, write a file or skip a host key
check. The real CLI must refuse it with its located message (the `.err` golden, where
`@TMP@` stands for the test's directory), exit 1 without a traceback, and leave the marker
file that each payload would create absent.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.support.cli import reconcile

HOSTILE = ROOT / "tests" / "manifests" / "hostile"
CASES = sorted(HOSTILE.glob("*.toml"))


def _scene(tmp: Path) -> None:
    """What the payloads point at: a script and a makefile that create the marker, and a
    harmless kernel tree (a git repository whose Makefile does nothing)."""
    marker = tmp / "marker"
    script = tmp / "evil.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\n")
    script.chmod(0o755)
    (tmp / "evil.config").write_text(f"$(shell touch {marker})\nall:\n")
    tree = tmp / "linux"
    tree.mkdir()
    (tree / "Makefile").write_text("%:\n\t@true\n")
    git = ["git", "-C", str(tree), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "Makefile"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "tree"], check=True)


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_hostile_manifest_is_refused_and_runs_nothing(
    case: Path, tmp_path: Path, update_golden: bool
) -> None:
    _scene(tmp_path)
    manifest = tmp_path / case.name
    manifest.write_text(case.read_text().replace("@TMP@", str(tmp_path)))
    expected = case.with_suffix(".err")
    for command in ("validate", "plan"):
        proc = reconcile(command, str(manifest), timeout=120)
        err = proc.stderr.replace(str(tmp_path), "@TMP@")
        if update_golden and command == "validate":
            expected.write_text(err)
        assert proc.returncode == 1, (command, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert err == expected.read_text(), command
        assert err.startswith(f"@TMP@/{case.name}:"), "located as FILE:LINE: key.path"
        assert not (tmp_path / "marker").exists(), f"{command} ran the payload"
        assert not (tmp_path / "state").exists(), f"{command} wrote state"


def test_corpus_has_a_golden_per_vector() -> None:
    assert len(CASES) >= 15
    assert sorted(HOSTILE.glob("*.err")) == [c.with_suffix(".err") for c in CASES]
