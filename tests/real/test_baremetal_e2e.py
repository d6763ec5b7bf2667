"""Baremetal hosts end to end: the real CLI, real sshd in network namespaces, real Nix.

Each host (testbed/hosts.py) has its own address, its own /nix (so `nix copy`
really copies) and its own /run. The flake is a copy of nix/ with extra demo systems:
one whose health check fails, one whose activation fails, one that exits 4 (degraded)
and one whose activation is slow enough to cut the connection under it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from reconcile.adapters import deploy
from reconcile.core.errors import CommandError
from reconcile.core.manifest import parse_manifest
from testbed.hosts import TestHost, build_demo_closure
from tests.conftest import ROOT
from tests.support.cli import reconcile
from tests.support.stack import remove_tree

pytestmark = pytest.mark.real

BASE = Path("/var/lib/reconcile-tests/baremetal")
EXTRA_SYSTEMS = """
  host-a = { message = "host a"; };
  host-b = { message = "host b"; };
  unhealthy = { message = "unhealthy"; healthy = false; };
  failing = { message = "failing"; switchBehaviour = "fail"; };
  degraded = { message = "degraded"; switchBehaviour = "degraded"; };
  slow = { message = "slow"; switchDelay = 4; };
  slow2 = { message = "slow 2"; switchDelay = 4; };
  slow3 = { message = "slow 3"; switchDelay = 4; };
  fresh = { message = "never deployed"; };
}
"""
HEALTH = '["grep", "-qx", "ok", "/run/current-system/etc/reconcile-health"]'


class Lab:
    def __init__(self, root: Path, hosts: dict[str, TestHost]) -> None:
        self.root = root
        self.flake = root / "flake"
        self.state = root / "state"
        self.manifest = root / "lab.toml"
        self.hosts = hosts
        self.systems = {name: "host-a" for name in hosts}
        self.ssh_extra: dict[str, str] = {}
        self.health: dict[str, str] = {}

    def write(self) -> Path:
        text = f'[lab]\nname = "bm"\nflake = "{self.flake}"\nstate_dir = "{self.state}"\n'
        for name, host in sorted(self.hosts.items()):
            ssh = self.ssh_extra.get(
                name, f'host_key = "{host.host_key_line}", identity = "{host.identity}"'
            )
            text += f"""
[hosts.{name}]
system = ".#packages.x86_64-linux.{self.systems[name]}"
ssh = {{ target = "root@{host.address}", connect_timeout = "3s", {ssh} }}
health = {self.health.get(name, f"[{{ tcp = 22 }}, {{ command = {HEALTH} }}]")}
health_timeout = "3s"
"""
        self.manifest.write_text(text)
        return self.manifest

    def write_with(self, extra: str) -> Path:
        """The manifest with `extra` lines added to every host's table."""
        text = self.write().read_text()
        self.manifest.write_text(text.replace('"3s"\n', f'"3s"\n{extra}\n'))
        return self.manifest

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return reconcile(*args, env=env)

    def apply(
        self, *extra: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.run("apply", str(self.write()), "--yes", *extra, env=env)

    def plan(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.run("plan", str(self.write()), *extra)

    def host_changes(self) -> dict[str, str]:
        proc = self.plan("--json")
        doc = json.loads(proc.stdout)
        return {h["host"]: h["change"] for h in doc["hosts"]}

    def toplevel(self, system: str) -> str:
        return build_demo_closure(system, self.flake)

    def assert_converged(self) -> None:
        proc = self.plan("--detailed-exitcode")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "No changes." in proc.stdout


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    root = BASE
    remove_tree(root)
    root.mkdir(parents=True)
    shutil.copytree(ROOT / "nix", root / "flake", ignore=shutil.ignore_patterns("result*"))
    shutil.copy2("/bin/busybox", root / "flake" / "bb" / "busybox")
    systems = root / "flake" / "systems.nix"
    text = systems.read_text().rstrip()
    assert text.endswith("}")
    systems.write_text(text[:-1] + EXTRA_SYSTEMS)
    with TestHost() as one, TestHost() as two:
        yield Lab(root, {"bm1": one, "bm2": two})
    remove_tree(root)


def output(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout + proc.stderr


def test_apply_copies_and_switches_then_plan_is_empty(lab: Lab) -> None:
    want = lab.toplevel("host-a")
    bm1 = lab.hosts["bm1"]
    assert not bm1.has_path(want)
    assert lab.host_changes() == {"bm1": "switch", "bm2": "switch"}
    proc = lab.apply()
    assert proc.returncode == 0, output(proc)
    assert "Plan: 2 host(s) to switch." in proc.stdout
    assert "Apply complete: 8 done (exit 0)." in proc.stdout
    for host in lab.hosts.values():
        assert host.current_system() == want
        # the closure crossed into the host's own store, not this machine's
        assert (host.dir / "nix" / "store" / Path(want).name / "bin").is_dir()
        assert host.has_path(want)
        profile = host.run(["readlink", "-f", "/nix/var/nix/profiles/system"]).stdout.strip()
        assert profile == want
    lab.assert_converged()
    again = lab.apply()
    assert again.returncode == 0 and "No changes." in again.stdout


def test_hosts_deploy_in_parallel(lab: Lab) -> None:
    lab.systems = {"bm1": "slow", "bm2": "slow"}  # activation takes 4 s
    proc = lab.run("--log-format", "json", "apply", str(lab.write()), "--yes")
    assert proc.returncode == 0, output(proc)
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    spans = {}
    for e in events:
        if e.get("action", "").endswith("/activate"):
            spans.setdefault(e["subject"], {})[e["event"]] = e["timestamp"]
    # each host's activation started before the other's ended: they overlapped
    assert spans["bm1"]["start"] < spans["bm2"]["done"]
    assert spans["bm2"]["start"] < spans["bm1"]["done"]
    lab.assert_converged()


def test_wrong_and_unknown_host_keys_are_refused_with_nothing_changed(lab: Lab) -> None:
    bm1 = lab.hosts["bm1"]
    before = bm1.current_system()
    other = lab.hosts["bm2"].host_key_line  # a real key, but not bm1's
    fresh = lab.toplevel("fresh")
    lab.systems["bm1"] = "fresh"
    lab.ssh_extra["bm1"] = f'host_key = "{other}", identity = "{bm1.identity}"'
    proc = lab.apply()
    assert proc.returncode == 1, output(proc)
    text = output(proc)
    assert "host key mismatch" in text and text.count("SHA256:") >= 2
    assert f'host_key = "{bm1.host_key_line}"' in text  # how to pin the right one
    assert "bm1" in proc.stdout.split("Apply results:")[-1]  # named in the summary
    assert bm1.current_system() == before
    assert not bm1.has_path(fresh)

    unknown = lab.root / "empty_known_hosts"
    unknown.write_text("")
    lab.ssh_extra["bm1"] = f'known_hosts = "{unknown}", identity = "{bm1.identity}"'
    proc = lab.apply()
    assert proc.returncode == 1, output(proc)
    assert "is not pinned; refusing to connect" in output(proc)
    assert bm1.current_system() == before
    assert not bm1.has_path(fresh)
    del lab.ssh_extra["bm1"]
    lab.systems["bm1"] = "slow"
    lab.assert_converged()


def test_unreachable_host_leaves_the_others_converged(lab: Lab) -> None:
    lab.systems = {"bm1": "host-a", "bm2": "host-a"}
    bm2 = lab.hosts["bm2"]
    bm2.kill_network()
    try:
        proc = lab.apply()
        assert proc.returncode == 1, output(proc)
        assert "bm2" in proc.stdout and "UNKNOWN" in proc.stdout
        assert "unreachable" in proc.stdout
        assert lab.hosts["bm1"].current_system() == lab.toplevel("host-a")
        plan = lab.plan()
        assert plan.returncode == 1 and "could not be observed" in plan.stderr
        drift = lab.run("drift", str(lab.manifest), "--format", "json")
        assert drift.returncode == 1, output(drift)
        items = {i["name"]: i for i in json.loads(drift.stdout)["items"]}
        assert items["bm2"]["status"] == "unknown" and "unreachable" in items["bm2"]["note"]
        assert items["bm1"]["status"] == "in-sync"
    finally:
        bm2.restore_network()
    assert bm2.current_system() == lab.toplevel("slow")  # untouched while unknown
    assert lab.host_changes() == {"bm1": "no-op", "bm2": "switch"}
    assert lab.apply().returncode == 0
    lab.assert_converged()


def test_nix_copy_pins_the_host_key_too(lab: Lab) -> None:
    """The copy is OpenSSH under nix, not paramiko: it refuses a key that is not pinned."""
    bm1 = lab.hosts["bm1"]
    toplevel = lab.toplevel("fresh")
    wrong = parse_manifest(lab.write().read_bytes(), lab.manifest).hosts["bm1"].ssh
    wrong = replace(wrong, host_key=lab.hosts["bm2"].host_key_line)
    known_hosts = deploy.known_hosts_file(wrong, lab.root / "ssh" / "wrong-bm1.known_hosts")
    with pytest.raises(CommandError) as refused:
        deploy.copy_closure(wrong, toplevel, known_hosts, 60, {})
    assert "Host key verification failed" in refused.value.output_tail
    assert not bm1.has_path(toplevel)


def test_failed_health_check_rolls_back_with_its_exit_code(lab: Lab) -> None:
    good = lab.toplevel("host-a")
    bm1 = lab.hosts["bm1"]
    lab.systems["bm1"] = "unhealthy"
    proc = lab.apply()
    assert proc.returncode == 4, output(proc)
    assert "ROLLED BACK" in proc.stdout
    assert "health checks failed" in proc.stdout and f"rolled back to {good}" in proc.stdout
    assert bm1.current_system() == good
    profile = bm1.run(["readlink", "-f", "/nix/var/nix/profiles/system"]).stdout.strip()
    assert profile == good
    assert lab.hosts["bm2"].current_system() == good  # the other host is untouched


def test_failed_activation_rolls_back(lab: Lab) -> None:
    good = lab.toplevel("host-a")
    lab.systems["bm1"] = "failing"
    proc = lab.apply()
    assert proc.returncode == 4, output(proc)
    assert "switch-to-configuration switch failed (exit 1)" in proc.stdout
    assert lab.hosts["bm1"].current_system() == good


def test_exit_4_of_switch_is_reported_degraded(lab: Lab) -> None:
    lab.systems["bm1"] = "degraded"
    proc = lab.apply()
    assert proc.returncode == 3, output(proc)
    assert "DEGRADED" in proc.stdout and "some units failed" in proc.stdout
    assert lab.hosts["bm1"].current_system() == lab.toplevel("degraded")
    lab.systems["bm1"] = "host-a"
    assert lab.apply().returncode == 0
    lab.assert_converged()


def sshd_sessions(host: TestHost) -> list[int]:
    out = subprocess.run(
        ["pgrep", "-P", str(host.sshd_pid)], capture_output=True, text=True, check=False
    )
    return [int(p) for p in out.stdout.split()]


def start_apply(lab: Lab) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "reconcile", "apply", str(lab.write()), "--yes"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_activation(host: TestHost, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        listing = host.run("ls /run/reconcile 2>/dev/null || true").stdout
        if ".log" in listing and ".status" not in listing:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError("activation never started")


def test_connection_cut_during_activation_is_recovered(lab: Lab) -> None:
    """Killing the SSH session mid-activation: the run reconnects and reads the result."""
    bm1 = lab.hosts["bm1"]
    lab.systems["bm1"] = "slow2"
    bm1.run("rm -rf /run/reconcile")
    proc = start_apply(lab)
    wait_for_activation(bm1, proc)
    killed = sshd_sessions(bm1)
    assert killed
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    assert "connection lost during activation" in err
    assert bm1.current_system() == lab.toplevel("slow2")
    lab.assert_converged()


def test_connection_down_past_the_deadline_is_recovered_by_the_next_run(lab: Lab) -> None:
    bm1 = lab.hosts["bm1"]
    lab.ssh_extra["bm1"] = (
        f'host_key = "{bm1.host_key_line}", identity = "{bm1.identity}", total_timeout = "8s"'
    )
    lab.systems["bm1"] = "slow3"  # its switch takes 4 s
    bm1.run("rm -rf /run/reconcile")
    proc = start_apply(lab)
    wait_for_activation(bm1, proc)
    bm1.kill_network()
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        bm1.restore_network()
    assert proc.returncode == 1, out + err
    # the activation went on without us; the next plan only has its health to check
    time.sleep(5)  # the detached activation's 4 s
    assert bm1.current_system() == lab.toplevel("slow3")
    assert lab.host_changes()["bm1"] == "verify"
    again = lab.apply()
    assert again.returncode == 0, output(again)
    assert "health done" in again.stdout
    del lab.ssh_extra["bm1"]
    lab.assert_converged()


def test_injection_corpus_arrives_literally(lab: Lab, tmp_path: Path) -> None:
    """A health command's argv with shell syntax in it arrives as one literal file name."""
    token = uuid.uuid4().hex[:8]
    corpus = (
        f"a; touch pwned-{token} $(touch pwned2-{token}) `touch pwned3-{token}` "
        "'q' \"dq\" \\ * & | > < \nnext"
    )
    directory = tmp_path / "inj"
    directory.mkdir()
    name = str(directory / corpus)
    lab.health["bm1"] = f"[{{ command = {json.dumps(['touch', name])} }}]"
    lab.systems["bm1"] = "host-b"
    try:
        proc = lab.apply()
    finally:
        del lab.health["bm1"]
    assert proc.returncode == 0, output(proc)
    assert [p.name for p in directory.iterdir()] == [corpus]
    for home in (Path("/root"), Path.cwd()):
        assert not list(home.glob(f"pwned*-{token}")), "a value became shell syntax"


def test_secret_passphrase_never_in_logs(lab: Lab, tmp_path: Path) -> None:
    bm2 = lab.hosts["bm2"]
    secret = "s3cret-Passphrase-42"
    key = tmp_path / "locked_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", secret, "-f", str(key)], check=True)
    with (bm2.dir / "ssh" / "authorized_keys").open("a") as keys:
        keys.write(Path(f"{key}.pub").read_text())
    lab.ssh_extra["bm2"] = (
        f'host_key = "{bm2.host_key_line}", identity = "{key}", passphrase_env = "RC_TEST_PASS"'
    )
    env = {"RC_TEST_PASS": secret}
    # each run copies (nix copy needs the key too, through the run's ssh-agent) and switches
    for fmt, system in (("json", "fresh"), ("console", "host-b")):
        lab.systems["bm2"] = system
        proc = lab.run(
            "--debug", "--log-format", fmt, "apply", str(lab.write()), "--yes", "--json", env=env
        )
        assert proc.returncode == 0, output(proc)
        assert "bm2/copy" in proc.stdout
        assert secret not in output(proc)
        assert bm2.current_system() == lab.toplevel(system)
    agents = subprocess.run(
        ["pgrep", "-x", "ssh-agent"], capture_output=True, text=True, check=False
    )
    assert agents.stdout.strip() == "", "the run's ssh-agent was left running"
    missing = lab.run("plan", str(lab.write()))
    assert missing.returncode == 1 and "RC_TEST_PASS, which is not set" in output(missing)
    del lab.ssh_extra["bm2"]


def test_boot_activation_reboots_only_when_allowed(lab: Lab) -> None:
    """`boot` sets the next boot; a reboot happens only with reboot = true, then the new
    boot id is awaited and health checked. The host's reboot is its user space only
    (testbed/hosts.py: fake_reboot), since it shares this machine's kernel."""
    root = lab.root / "reboot-lab"
    root.mkdir()
    with TestHost(fake_reboot=True) as host:
        other = Lab(root, {"bm3": host})
        other.flake = lab.flake
        other.health["bm3"] = "[{ tcp = 22 }]"
        boot_id = host.boot_id()
        other.systems["bm3"] = "host-a"
        proc = other.run("apply", str(other.write_with('activation = "boot"')), "--yes")
        assert proc.returncode == 0, output(proc)
        assert "bm3/reboot" not in proc.stdout and host.reboots() == 0
        assert host.boot_id() == boot_id
        plan = other.run("plan", str(other.write_with('activation = "boot"')))
        assert "set to boot at the next reboot (reboot = false)" in plan.stdout

        manifest = other.write_with('activation = "boot"\nreboot = true')
        changes = json.loads(other.run("plan", str(manifest), "--json").stdout)["hosts"]
        assert [c["change"] for c in changes] == ["reboot"]
        proc = other.run("apply", str(manifest), "--yes")
        assert proc.returncode == 0, output(proc)
        assert "reboot done" in proc.stdout and "health done" in proc.stdout
        assert host.reboots() == 1
        assert host.boot_id() != boot_id
        want = other.toplevel("host-a")
        assert host.run(["readlink", "/run/booted-system"]).stdout.strip() == want
        again = other.run("plan", str(manifest), "--detailed-exitcode")
        assert again.returncode == 0, output(again)
