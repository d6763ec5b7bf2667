"""The host's own guard, end to end: it rolls back by itself when the controller cannot
confirm, and never once it has confirmed (docs/hosts.md, "The guard").

The hosts are testbed/hosts.py's network namespaces with a real sshd, their own /nix and
/run; the flake is a copy of nix/ with a system whose activation stops the host's SSH
daemon (`sshd = false`: through the host's /run/demo-units/sshd, as NixOS's switch stops
sshd.service for a system without it). Every other demo system's activation starts sshd
again when it is not running, as a NixOS system with sshd does, so the host is reachable
again once its guard has activated the previous system.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.hosts import TestHost, build_demo_closure, netns_pids
from tests.support.cli import reconcile
from tests.support.flakes import demo_flake
from tests.support.stack import remove_tree
from tests.support.waiting import wait_until

pytestmark = pytest.mark.real

BASE = Path("/var/lib/reconcile-tests/host-guard")
EXTRA_SYSTEMS = """
  guard-a = { message = "guard a"; };
  guard-b = { message = "guard b"; };
  guard-c = { message = "guard c"; };
  guard-d = { message = "guard d"; };
  no-sshd = { message = "stops sshd"; sshd = false; };
"""
HEALTH = '["grep", "-qx", "ok", "/run/current-system/etc/reconcile-health"]'
CONFIRM_S = 10
GUARDS = "/run/reconcile/guards"


class Lab:
    def __init__(self, root: Path, flake: Path, host: TestHost, extra: str = "") -> None:
        self.root = root
        self.flake = flake
        self.state = root / "state"
        self.manifest = root / "lab.toml"
        self.host = host
        self.extra = extra
        self.health = f"[{{ tcp = 22 }}, {{ command = {HEALTH} }}]"
        self.system = "guard-a"

    def write(self) -> Path:
        h = self.host
        ssh = f'host_key = "{h.host_key_line}", identity = "{h.identity}"'
        self.manifest.write_text(
            f'[lab]\nname = "guard"\nflake = "{self.flake}"\nstate_dir = "{self.state}"\n'
            f"""
[hosts.bm1]
system = ".#packages.x86_64-linux.{self.system}"
ssh = {{ target = "root@{h.address}", connect_timeout = "3s", {ssh} }}
health = {self.health}
health_timeout = "3s"
confirm_timeout = "{CONFIRM_S}s"
{self.extra}
"""
        )
        return self.manifest

    def apply(self, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return reconcile("apply", str(self.write()), "--yes", env=env)

    def plan(self) -> dict[str, object]:
        proc = reconcile("plan", str(self.write()), "--json")
        assert proc.returncode in (0, 2), output(proc)
        hosts: list[dict[str, object]] = json.loads(proc.stdout)["hosts"]
        return hosts[0]

    def toplevel(self, system: str) -> str:
        return build_demo_closure(system, self.flake)


def output(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout + proc.stderr


def link(host: TestHost, path: str) -> str:
    return host.run(["readlink", "-f", path], check=False).stdout.strip()


def guard_files(host: TestHost, suffix: str) -> list[str]:
    listing = host.run(f"ls {GUARDS} 2>/dev/null || true").stdout.split()
    return [name for name in listing if name.endswith(suffix)]


def guard_processes(host: TestHost) -> list[int]:
    """The host's processes running a guard's script."""
    found = []
    for pid in netns_pids(host.netns):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(arg.startswith(GUARDS.encode()) for arg in argv):
            found.append(pid)
    return found


@pytest.fixture(scope="module")
def flake() -> Iterator[Path]:
    remove_tree(BASE)
    BASE.mkdir(parents=True)
    yield demo_flake(BASE / "flake", EXTRA_SYSTEMS)
    remove_tree(BASE)


@pytest.fixture
def lab(flake: Path, request: pytest.FixtureRequest) -> Iterator[Lab]:
    root = BASE / request.node.name
    root.mkdir()
    with TestHost(fake_reboot=True) as host:
        yield Lab(root, flake, host)


def test_a_system_that_stops_sshd_is_rolled_back_by_the_host_itself(lab: Lab) -> None:
    host = lab.host
    good = lab.toplevel("guard-a")
    assert lab.apply().returncode == 0
    assert host.current_system() == good

    lab.system = "no-sshd"
    bad = lab.toplevel("no-sshd")
    started = time.monotonic()
    proc = lab.apply()
    took = time.monotonic() - started
    text = output(proc)
    assert proc.returncode == 4, text
    assert "ROLLED BACK" in proc.stdout and "bm1" in proc.stdout.split("Apply results:")[-1]
    assert "health checks failed" in proc.stdout
    assert f"rolled back to {good} by the host's guard (not confirmed in time)" in proc.stdout
    # the controller could not reach the host to ask: the guard acted at its own deadline
    assert "cannot reach the host; its guard rolls back by itself" in text
    assert took > CONFIRM_S, took
    outcome = host.run(f"cat {GUARDS}/*.outcome").stdout.split()
    assert outcome == ["switch=0", "profile=ok", "why=timeout"]
    # back on the previous system, profile and all, and reachable again: its activation
    # started sshd (the fresh connections above proved it)
    assert host.current_system() == good
    assert link(host, "/nix/var/nix/profiles/system") == good
    assert host.sshd_running()
    log = host.run(f"cat {GUARDS}/*.log").stdout
    assert "not confirmed in time" in log and "start sshd" in log
    # the next plan shows the host on its previous system, to be switched again
    seen = lab.plan()
    assert (seen["change"], seen["before"], seen["after"]) == ("switch", good, bad)


def test_a_confirmed_generation_is_never_rolled_back(lab: Lab) -> None:
    host = lab.host
    assert lab.apply().returncode == 0
    lab.system = "guard-b"
    new = lab.toplevel("guard-b")
    # the controller dies right after the health step, which confirmed
    proc = lab.apply(env={"RECONCILE_FAULT": "kill-after:bm1/health"})
    assert proc.returncode == -9, output(proc)
    assert guard_files(host, ".confirmed")
    wait_until("the guard exits", lambda: not guard_processes(host), 5)
    time.sleep(CONFIRM_S + 2)  # past the guard's deadline
    assert host.current_system() == new
    assert link(host, "/nix/var/nix/profiles/system") == new
    assert guard_files(host, ".rollback") == [] and guard_files(host, ".outcome") == []
    assert lab.plan()["change"] == "no-op"


def test_a_controller_gone_before_confirming_leaves_the_rollback_to_the_host(lab: Lab) -> None:
    host = lab.host
    good = lab.toplevel("guard-a")
    assert lab.apply().returncode == 0
    lab.system = "guard-c"
    new = lab.toplevel("guard-c")
    # the controller dies after the activation, before any health check or confirmation
    proc = lab.apply(env={"RECONCILE_FAULT": "kill-before:bm1/health"})
    assert proc.returncode == -9, output(proc)
    assert host.current_system() == new
    assert lab.plan()["change"] == "verify"  # active, never confirmed
    wait_until("the host rolls back", lambda: host.current_system() == good, CONFIRM_S + 10)
    wait_until("the guard is done", lambda: guard_files(host, ".outcome"), 10)
    assert link(host, "/nix/var/nix/profiles/system") == good
    seen = lab.plan()
    assert (seen["change"], seen["before"]) == ("switch", good)
    # and a run that does confirm converges
    again = lab.apply()
    assert again.returncode == 0, output(again)
    assert host.current_system() == new


def test_an_unconfirmed_boot_activation_leaves_the_previous_system_to_boot(lab: Lab) -> None:
    """`boot`: the new system is only the default for the next boot, and an unconfirmed one
    is not even that: the guard puts the profile (what the test host's reboot boots) and
    the next-boot link back."""
    host = lab.host
    lab.extra = 'activation = "boot"'
    lab.health = "[{ tcp = 22 }]"
    good = lab.toplevel("guard-a")
    assert lab.apply().returncode == 0
    assert link(host, "/nix/var/nix/profiles/system") == good
    lab.system = "guard-d"
    new = lab.toplevel("guard-d")
    proc = lab.apply(env={"RECONCILE_FAULT": "kill-before:bm1/health"})
    assert proc.returncode == -9, output(proc)
    assert link(host, "/nix/var/nix/profiles/system") == new
    assert link(host, "/run/next-boot-system") == new
    wait_until(
        "the guard puts the boot back",
        lambda: link(host, "/run/next-boot-system") == good,
        CONFIRM_S + 10,
    )
    assert link(host, "/nix/var/nix/profiles/system") == good
    host.run("reboot")  # the test host's reboot: it boots the profile
    assert link(host, "/run/booted-system") == good


def test_a_boot_activation_with_reboot_is_guarded_again_after_the_reboot(lab: Lab) -> None:
    host = lab.host
    lab.health = "[{ tcp = 22 }]"
    assert lab.apply().returncode == 0
    lab.extra = 'activation = "boot"\nreboot = true'
    lab.system = "guard-b"
    new = lab.toplevel("guard-b")
    proc = lab.apply()
    assert proc.returncode == 0, output(proc)
    assert host.reboots() == 1
    # the guard of the new boot was confirmed; the one from before the reboot ended with
    # its /run (the test host's reboot forgets /run/reconcile, as a real one forgets /run)
    assert len(guard_files(host, ".confirmed")) == 1
    wait_until("the guards exit", lambda: not guard_processes(host), 5)
    time.sleep(CONFIRM_S + 2)
    assert link(host, "/run/booted-system") == new
    assert link(host, "/nix/var/nix/profiles/system") == new
    assert guard_files(host, ".outcome") == []
    assert lab.plan()["change"] == "no-op"


def last_boot(host: TestHost) -> str:
    """The entry the host's boot loader booted last."""
    entries = [line for line in host.boots_log().splitlines() if line.startswith("boot: entry ")]
    return entries[-1].removeprefix("boot: entry ") if entries else ""


@pytest.fixture
def loader_lab(flake: Path, request: pytest.FixtureRequest) -> Iterator[Lab]:
    """A host that boots with (the test host's stand-in for) systemd-boot."""
    root = BASE / request.node.name
    root.mkdir()
    with TestHost(boot_loader=True) as host:
        yield Lab(root, flake, host)


def test_a_new_system_that_never_comes_back_from_its_reboot_boots_the_previous_one(
    loader_lab: Lab,
) -> None:
    """The guard dies with its boot; the boot loader does not. The new system is booted
    once, the one that was booted stays the default, so the reset that follows a failed
    boot (a watchdog, a person: `power_cycle()` here) brings the previous system back, and
    the waiting run reports the host rolled back."""
    lab, host = loader_lab, loader_lab.host
    lab.health = "[{ tcp = 22 }]"
    lab.extra = 'activation = "boot"\nreboot = true'
    assert lab.apply().returncode == 0  # generation 1: nothing booted before, an ordinary reboot
    lab.system = "guard-b"
    good = lab.toplevel("guard-b")
    text = output(proc := lab.apply())
    assert proc.returncode == 0, text
    # generation 2 was booted once, and confirming it gave the default back to the loader
    assert last_boot(host) == "nixos-generation-2.conf"
    assert host.efi_variable("LoaderEntryOneShot") is None
    assert host.efi_variable("LoaderEntryDefault") is None
    assert link(host, "/run/booted-system") == good

    lab.system = "no-sshd"  # its boot never brings sshd up: to the controller, a dead host
    bad = lab.toplevel("no-sshd")
    plan = reconcile("plan", str(lab.write()))
    assert "reboot into it once (systemd-boot: the booted system stays the default" in (
        plan.stdout
    ), output(plan)
    run = subprocess.Popen(
        [sys.executable, "-m", "reconcile", "apply", str(lab.write()), "--yes"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until("the host reboots into the new system", lambda: host.reboots() == 3, 120)
        wait_until("its sshd is gone", lambda: not host.sshd_running(), 30)
        time.sleep(3)  # the run keeps polling a host that does not answer
        assert run.poll() is None
        assert host.efi_variable("LoaderEntryOneShot") is None  # used up by this boot
        assert host.efi_variable("LoaderEntryDefault") == "nixos-generation-2.conf"
        host.power_cycle()
        out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 4, out + err
    assert "ROLLED BACK" in out and "bm1" in out.split("Apply results:")[-1]
    assert f"the new system {bad} did not come back from its reboot" in out
    assert f"the boot loader booted {good}, which stayed the default" in out
    assert last_boot(host) == "nixos-generation-2.conf"  # the default, after the one-shot
    # back on it: booted, profile and boot default; what reconcile set is cleared
    assert link(host, "/run/booted-system") == good
    assert link(host, "/nix/var/nix/profiles/system") == good
    assert host.efi_variable("LoaderEntryDefault") is None
    seen = lab.plan()
    assert (seen["change"], seen["before"], seen["after"]) == ("switch", good, bad)
