"""Every bad input gets its exact, located message and exit code 1, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconcile import cli
from tests.conftest import ROOT

BAD = ROOT / "tests" / "manifests" / "bad"
CASES = sorted(BAD.glob("*.toml"))


def run_validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["validate", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_bad_manifest_gives_exact_message(
    case: Path, capsys: pytest.CaptureFixture[str], update_golden: bool
) -> None:
    code, out, err = run_validate(case.relative_to(ROOT), capsys)
    expected = case.with_suffix(".err")
    if update_golden:
        expected.write_text(err)
    assert code == 1
    assert out == ""
    assert err == expected.read_text()
    assert "Traceback" not in err


def test_corpus_covers_every_case() -> None:
    assert len(CASES) >= 15
    assert sorted(BAD.glob("*.err")) == [c.with_suffix(".err") for c in CASES]


@pytest.fixture(autouse=True)
def _at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def test_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[lab]\nname = "caf\xe9"\n')
    code, _, err = run_validate(bad, capsys)
    assert code == 1
    assert f"{bad}:2:12: not valid UTF-8 (TOML files are UTF-8)" in err


def test_very_large_file_is_capped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "big.toml"
    big.write_text('[lab]\nname = "x"\n' + "# padding\n" * 120_000)
    code, _, err = run_validate(big, capsys)
    assert code == 1
    assert "manifests are capped at 1048576" in err


def test_deep_nesting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deep = tmp_path / "deep.toml"
    deep.write_text("[lab]\nname = " + "[" * 5000 + "]" * 5000 + "\n")
    code, _, err = run_validate(deep, capsys)
    assert code == 1
    assert err.startswith(f"{deep}:2:")
    assert "nested more than 100 levels" in err


def test_directory_and_missing_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_validate(tmp_path, capsys)
    assert (code, err.splitlines()[0]) == (1, f"{tmp_path}: is a directory, not a manifest file")
    code, _, err = run_validate(tmp_path / "nope.toml", capsys)
    assert (code, err.splitlines()[0]) == (1, f"{tmp_path / 'nope.toml'}: no such file")


@pytest.mark.parametrize("command", ["validate", "plan", "apply", "drift"])
@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "dev-null"])
def test_a_manifest_that_is_not_a_regular_file_is_refused_at_once(
    tmp_path: Path, command: str, kind: str
) -> None:
    path = tmp_path / "lab.toml"
    if kind == "fifo":
        os.mkfifo(path)  # nobody writes to it: reading would block for ever
    else:
        path.symlink_to("/dev/zero" if kind == "dev-zero" else "/dev/null")
    argv = [sys.executable, "-m", "reconcile", command, str(path)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 1
    words = "a FIFO" if kind == "fifo" else "a device"
    assert f"{path}: is {words}, not a regular file" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo_like = tmp_path / "secret.toml"
    fifo_like.write_text("[lab]\n")
    fifo_like.chmod(0)
    code, _, err = run_validate(fifo_like, capsys)
    # root may read anything; either it is read (and invalid) or refused, never a crash
    assert code == 1
    assert "Traceback" not in err


def test_as_a_process_no_traceback_and_exit_codes() -> None:
    bad = subprocess.run(
        [sys.executable, "-m", "reconcile", "validate", str(BAD / "wrong-types.toml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 1
    assert "Traceback" not in bad.stderr
    good = subprocess.run(
        [sys.executable, "-m", "reconcile", "validate", str(ROOT / "manifests" / "lab.toml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert good.returncode == 0, good.stderr
    assert "valid" in good.stdout


def test_debug_shows_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "reconcile", "--debug", "validate", str(tmp_path / "x.toml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr
