"""The gate: lint, format, types and layering run as tests, so `pytest` alone is the gate."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    found = BIN / name
    return str(found) if found.exists() else (shutil.which(name) or name)


@pytest.mark.parametrize(
    "argv",
    [
        [tool("ruff"), "check", "reconcile", "tests", "scripts", "bench"],
        [tool("ruff"), "format", "--check", "reconcile", "tests", "scripts", "bench"],
        [tool("mypy")],
        [tool("lint-imports")],
    ],
    ids=["ruff-check", "ruff-format", "mypy-strict", "import-linter"],
)
def test_tool(argv: list[str]) -> None:
    argv = [a for a in argv if a not in {"scripts", "bench"} or (ROOT / a).is_dir()]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
