"""The gate: lint, format, types and layering run as tests, so `pytest` alone is the gate."""

from __future__ import annotations

import ast
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
        [tool("ruff"), "check", "reconcile", "testbed", "tests", "scripts", "bench"],
        [tool("ruff"), "format", "--check", "reconcile", "testbed", "tests", "scripts", "bench"],
        [tool("mypy")],
        [tool("lint-imports")],
    ],
    ids=["ruff-check", "ruff-format", "mypy-strict", "import-linter"],
)
def test_tool(argv: list[str]) -> None:
    argv = [a for a in argv if a not in {"scripts", "bench"} or (ROOT / a).is_dir()]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("tree", ["bench", "testbed"])
def test_does_not_import_tests(tree: str) -> None:
    """bench/ and testbed/ stand on their own: what they share with tests/ lives in testbed/."""
    found = []
    for path in sorted((ROOT / tree).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            found += [
                f"{path.relative_to(ROOT)}:{node.lineno} {n}"
                for n in names
                if n.split(".")[0] == "tests"
            ]
    assert found == []


def test_the_cli_imports_no_ssh_library_until_a_lab_needs_one() -> None:
    """fabric and paramiko (~60 ms) load only for hosts, builders or remote hypervisors."""
    probe = "import sys, reconcile.cli; print(sorted({'fabric', 'paramiko'} & set(sys.modules)))"
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert proc.stdout.strip() == "[]", proc.stdout


def test_a_plan_of_a_lab_without_hosts_imports_no_ssh_library(tmp_path: Path) -> None:
    """Not at import, and not while observing either (the hosts' probe ran, for no hosts)."""
    manifest = tmp_path / "lab.toml"
    manifest.write_text(
        f'[lab]\nname = "q"\nflake = "{ROOT / "nix"}"\nstate_dir = "{tmp_path / "state"}"\n'
        '[hypervisors.test]\nuri = "test:///default"\naccel = "qemu"\n'
    )
    probe = (
        "import sys; from reconcile.cli import main; code = main(['plan', sys.argv[1]]); "
        "print(code, sorted({'fabric', 'paramiko'} & set(sys.modules)))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, str(manifest)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.strip().splitlines()[-1] == "0 []", proc.stdout + proc.stderr
