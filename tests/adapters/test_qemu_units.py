"""The pieces of adapters/qemu_units.py that need no systemd: unit names, the quoting of
a command line for a unit property, and the ExecStopPost script (run by a real sh, with a
stand-in `systemctl`). The units themselves: tests/real/test_qemu_units.py."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from reconcile.adapters import qemu_units
from reconcile.core.errors import ReconcileError
from reconcile.core.guests.qemu_argv import RunDir


def test_unit_names_come_from_the_domain() -> None:
    run = RunDir(Path("/state/qemu/local/lab-a"))
    assert qemu_units.unit(run) == "reconcile-lab-a.service"
    assert qemu_units.unit(run, 1) == "reconcile-lab-a-fs1.service"
    with pytest.raises(ReconcileError):
        qemu_units.unit(RunDir(Path("/state/x/Odd name")))


def test_a_command_line_reaches_the_program_unchanged(tmp_path: Path) -> None:
    """What systemd makes of exec_line, read back with its rules for the cases that
    matter: quotes and backslashes survive, `$` stays literal (tests/real/test_qemu_units.py
    has the real systemd run it)."""
    argv = ["/bin/sh", "-c", 'printf "%s\\n" "$0" $HOME 100%', "a b"]
    line = qemu_units.exec_line(argv)
    assert "$$0" in line and "100%" in line and '\\"' in line
    # systemd's unquoting, by hand: $$ -> $, then the double-quoted words
    assert shlex.split(line.replace("$$", "$")) == argv


def test_stopped_records_the_exit_and_stops_virtiofsd_after_qemu(tmp_path: Path) -> None:
    run = tmp_path / "lab-a"
    run.mkdir()
    for name in ("live.json", "qemu.pid", "qmp.sock", "fs0.sock", "fs1.sock"):
        (run / name).write_text("x")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text(f'#!/bin/sh\necho "$*" >> {tmp_path}/calls\n')
    (bin_dir / "systemctl").chmod(0o755)
    units = ["reconcile-lab-a-fs0.service", "reconcile-lab-a-fs1.service"]
    for code, status, wanted in (("exited", "0", 0), ("killed", "KILL", 1), ("exited", "3", 3)):
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
               "EXIT_CODE": code, "EXIT_STATUS": status}  # fmt: skip
        done = subprocess.run(
            ["/bin/sh", "-c", qemu_units.STOPPED, str(run), *units], env=env, check=False
        )
        assert done.returncode == 0
        assert json.loads((run / "exit.json").read_text())["code"] == wanted
    assert sorted(p.name for p in run.iterdir()) == ["exit.json"]
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[0] == "stop --no-block -- " + " ".join(units)
