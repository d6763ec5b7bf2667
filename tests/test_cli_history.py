"""The history command and a damaged history database, through the CLI's entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconcile.cli import main


def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "lab.toml"
    path.write_text(f'[lab]\nname = "h"\nstate_dir = "{tmp_path / "state"}"\n')
    return path


def test_history_lists_nothing_then_reports_a_corrupt_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = manifest(tmp_path)
    assert main(["history", str(path)]) == 0
    assert "No runs recorded yet." in capsys.readouterr().out
    (tmp_path / "state" / "history.sqlite").write_bytes(b"not a database" * 1000)
    assert main(["history", str(path)]) == 1
    err = capsys.readouterr().err
    assert "history.sqlite" in err and "corrupt" in err and "hint:" in err
    assert "Traceback" not in err
