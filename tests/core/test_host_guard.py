"""The host guard's scripts, run here with sh on a stand-in host (files in a temp dir).

The guard, the start and the confirmation are the very scripts reconcile sends; only their
paths point into the temp dir: a profile link, a current-system link, a previous system
whose switch-to-configuration records its call, and `nix-env` as a script that sets links.
The real tests (tests/real/test_host_guard.py) run them on a host over SSH.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconcile.core.hosts.guard import (
    CONFIRM,
    GUARD_SCRIPT,
    GUARD_STATE,
    START_BUSY,
    START_GUARD,
    ConfirmExit,
    GuardPhase,
    GuardSpec,
    GuardState,
    parse_guard_state,
)

NIX_ENV = """#!/bin/sh
# nix-env -p PROFILE --set PATH | --rollback: the guard's two uses, on links
echo "nix-env $*" >> "$(dirname "$2")/nix-env.calls"
case "$3" in
  --set) ln -sfn "$4" "$2" ;;
  --rollback) ;;  # no generations here: the guard must --set after it
esac
"""
SWITCH = """#!/bin/sh
here=$(dirname "$(dirname "$0")")
echo "$1" >> "$here/switched"
ln -sfn "$here" "$(dirname "$here")/current"
"""


@dataclass
class Host:
    root: Path

    @property
    def state(self) -> Path:
        return self.root / "run"

    @property
    def guards(self) -> Path:
        return self.state / "guards"

    @property
    def new(self) -> Path:
        return self.root / "new"

    @property
    def prev(self) -> Path:
        return self.root / "prev"

    @property
    def profile(self) -> Path:
        return self.root / "profile"

    @property
    def current(self) -> Path:
        return self.root / "current"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "PATH": f"{self.root / 'bin'}:{os.environ['PATH']}"}

    def sh(self, script: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", "-c", script, *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=30,
            check=False,
        )

    def start(self, name: str, confirm_s: int, status: str = "") -> GuardSpec:
        wait_s = 30 if status else 0  # as the performer: no activation, nothing to wait for
        guard = GuardSpec(name, str(self.new), str(self.prev), "switch", confirm_s, wait_s, status)
        done = self.sh(START_GUARD, str(self.guards), name, str(self.new), GUARD_SCRIPT)
        assert done.returncode == 0, done.stderr
        argv = guard.argv(str(self.profile))
        argv[1] = str(self.guards / f"{name}.sh")  # the guard's file, here
        argv[2] = str(self.guards)
        subprocess.Popen(
            argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        return guard

    def confirm(self, guard_id: str) -> int:
        done = self.sh(CONFIRM, str(self.state), str(self.new), guard_id, str(self.current))
        return done.returncode

    def state_of(self, guard_id: str) -> GuardPhase:
        return self.read(guard_id).phase

    def read(self, guard_id: str) -> GuardState:
        done = self.sh(GUARD_STATE, str(self.guards), guard_id)
        assert done.returncode == 0, done.stderr
        return parse_guard_state(done.stdout)

    def wait_for(self, guard_id: str, *phases: GuardPhase, timeout_s: float = 10) -> None:
        deadline = time.monotonic() + timeout_s
        while self.state_of(guard_id) not in phases:
            assert time.monotonic() < deadline, self.read(guard_id)
            time.sleep(0.05)

    def wait_exited(self, guard_id: str, timeout_s: float = 5) -> None:
        deadline = time.monotonic() + timeout_s
        while self.read(guard_id).alive is not False:
            assert time.monotonic() < deadline, f"guard {guard_id} still runs"
            time.sleep(0.05)

    def switched(self) -> list[str]:
        path = self.prev / "switched"
        return path.read_text().split() if path.exists() else []


def make_host(tmp_path: Path) -> Host:
    h = Host(tmp_path)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "nix-env").write_text(NIX_ENV)
    (tmp_path / "bin" / "nix-env").chmod(0o755)
    (h.prev / "bin").mkdir(parents=True)
    (h.prev / "bin" / "switch-to-configuration").write_text(SWITCH)
    (h.prev / "bin" / "switch-to-configuration").chmod(0o755)
    h.new.mkdir()
    h.profile.symlink_to(h.new)
    h.current.symlink_to(h.new)
    return h


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return make_host(tmp_path)


def test_unconfirmed_it_rolls_back_once_the_activation_ended(host: Host) -> None:
    status = host.root / "activate.status"
    host.start("guard-a", confirm_s=1, status=str(status))
    time.sleep(1.5)  # longer than confirm_timeout, but the activation has not ended yet
    assert host.state_of("guard-a") is GuardPhase.PENDING
    status.write_text("0\n")
    started = time.monotonic()
    host.wait_for("guard-a", GuardPhase.ROLLED_BACK)
    assert 0.8 < time.monotonic() - started < 3
    state = host.read("guard-a")
    assert state.rolled_back and not state.asked
    assert (state.switch_code, state.profile) == (0, "ok")
    assert "not confirmed in time" in state.log
    assert host.switched() == ["switch"]
    assert os.readlink(host.profile) == str(host.prev)
    assert os.readlink(host.current) == str(host.prev)
    # and the late confirmation loses: reported, nothing recorded as confirmed
    assert host.confirm("guard-a") == ConfirmExit.GUARD_WON
    assert not (host.state / "confirmed").exists()


def test_a_confirmed_generation_is_never_rolled_back(host: Host) -> None:
    host.start("guard-b", confirm_s=1)
    assert host.confirm("guard-b") == ConfirmExit.CONFIRMED
    assert (host.state / "confirmed").read_text().strip() == str(host.new)
    host.wait_exited("guard-b")
    time.sleep(1.5)  # past its deadline
    assert host.state_of("guard-b") is GuardPhase.CONFIRMED
    assert host.switched() == []
    assert os.readlink(host.profile) == str(host.new)


def test_asked_it_rolls_back_at_once(host: Host) -> None:
    host.start("guard-c", confirm_s=600)
    (host.guards / "guard-c.now").touch()
    host.wait_for("guard-c", GuardPhase.ROLLED_BACK, timeout_s=3)
    assert host.read("guard-c").asked
    assert host.switched() == ["switch"]


def test_confirm_and_rollback_race_and_exactly_one_wins(tmp_path: Path) -> None:
    """Confirmations sent around the guard's deadline: each guard either rolled back or
    was confirmed, never both, never neither."""
    hosts = []
    for i in range(16):
        root = tmp_path / str(i)
        root.mkdir()
        hosts.append(make_host(root))
    results: dict[int, int] = {}

    def one(i: int, h: Host) -> None:
        h.start("guard-r", confirm_s=1)
        time.sleep(0.7 + i * 0.05)  # 0.7 s to 1.45 s: either side of the deadline (and its
        # 0.2 s polls), some while the guard is between its rename and its switch
        results[i] = h.confirm("guard-r")

    threads = [threading.Thread(target=one, args=(i, h)) for i, h in enumerate(hosts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, h in enumerate(hosts):
        h.wait_exited("guard-r")
        state = h.read("guard-r")
        if results[i] == ConfirmExit.CONFIRMED:
            assert state.phase is GuardPhase.CONFIRMED and h.switched() == [], i
        else:
            assert results[i] == ConfirmExit.GUARD_WON, (i, results[i])
            assert state.phase is GuardPhase.ROLLED_BACK and h.switched() == ["switch"], i
            assert not (h.state / "confirmed").exists()


def test_a_new_guard_supersedes_waiting_ones_and_waits_for_one_rolling_back(
    host: Host,
) -> None:
    host.guards.mkdir(parents=True)
    (host.guards / "guard-old.pending").write_text(f"{host.new}\n")
    done = host.sh(START_GUARD, str(host.guards), "guard-x", str(host.new), GUARD_SCRIPT)
    assert done.returncode == 0, done.stderr
    assert (host.guards / "guard-old.superseded").exists()
    assert (host.guards / "guard-x.pending").read_text() == f"{host.new}\n"
    assert (host.guards / "guard-x.sh").read_text() == GUARD_SCRIPT
    (host.guards / "guard-x.pending").rename(host.guards / "guard-x.rollback")
    busy = host.sh(START_GUARD, str(host.guards), "guard-y", str(host.new), GUARD_SCRIPT)
    assert busy.returncode == START_BUSY and "guard-x.rollback" in busy.stdout
    assert not (host.guards / "guard-y.pending").exists()


def test_confirming_without_a_guard_id_wins_earlier_runs_guards_of_the_active_system(
    host: Host,
) -> None:
    """The next run's `verify` confirms what a run cut short left guarded."""
    host.start("guard-v", confirm_s=600)
    done = host.sh(CONFIRM, str(host.state), str(host.new), "", str(host.current))
    assert done.returncode == 0, done.stderr
    assert host.state_of("guard-v") is GuardPhase.CONFIRMED
    host.wait_exited("guard-v")


def test_a_guard_is_not_started_with_values_that_are_not_numbers(host: Host) -> None:
    host.guards.mkdir(parents=True)
    done = subprocess.run(
        ["sh", "-c", GUARD_SCRIPT, "sh", str(host.guards), "g", "/a", "/b", "switch",
         "1+1", "0", "", str(host.profile)],
        capture_output=True, text=True, timeout=10, check=False,
    )  # fmt: skip
    assert done.returncode == 2


@pytest.mark.parametrize(
    "output",
    ["", "phase=pending\n", "phase=nonsense\nalive=yes\nend=ok\n"],
)
def test_a_state_cut_short_is_an_error(output: str) -> None:
    with pytest.raises(ValueError, match="guard"):
        parse_guard_state(output)
