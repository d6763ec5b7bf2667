"""What the CLI prints for a bug: one line and a hint, no traceback unless --debug."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconcile import cli
from reconcile.orchestration import pipeline


def _broken(_path: Path, **_kw: object) -> None:
    raise RuntimeError("a bug")


def test_an_internal_error_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(pipeline, "load", _broken)
    assert cli.main(["validate", str(tmp_path / "lab.toml")]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[0] == "error: internal error: RuntimeError: a bug"
    assert "Traceback" not in err and "--debug" in err


def test_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(pipeline, "load", _broken)
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["--debug", "validate", str(tmp_path / "lab.toml")])
