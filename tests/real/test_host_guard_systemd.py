"""The host's guard on a host that runs systemd: activation and guard as transient units.

NixOS hosts run systemd, where reconcile starts the activation and the guard with
`systemd-run` (docs/hosts.md, "The guard"), each a unit of its own that outlives the SSH
session. The host is testbed/systemd_host.py's (systemd as PID 1 of its own namespaces)
with an sshd unit on its loopback, its own system profiles (a tmpfs over
/nix/var/nix/profiles, so this machine's are untouched) and the demo's unit script for
sshd calling `systemctl`; reconcile runs inside its network namespace, as a controller
on the same network would. A new system that stops sshd is rolled back by the guard's
unit while reconcile cannot reach the host.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.systemd_host import SystemdHost
from tests.support.flakes import demo_flake
from tests.support.stack import remove_tree
from tests.support.waiting import wait_until

pytestmark = pytest.mark.real

BASE = Path("/var/lib/reconcile-tests/guard-systemd")
SYSTEMS = """
  sd-good = { message = "guarded under systemd"; };
  sd-no-sshd = { message = "stops sshd under systemd"; sshd = false; };
"""
CONFIRM_S = 10
SSHD_UNIT = "test-sshd.service"


def _keys(ssh: Path) -> tuple[str, Path]:
    ssh.mkdir(mode=0o700, parents=True)
    for name in ("host_key", "client_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ssh / name)], check=True
        )
    host_key = " ".join((ssh / "host_key.pub").read_text().split()[:2])
    (ssh / "authorized_keys").write_text((ssh / "client_key.pub").read_text())
    (ssh / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1:22\nHostKey {ssh / 'host_key'}\n"
        f"AuthorizedKeysFile {ssh / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "StrictModes no\nUseDNS no\nPidFile none\nPrintMotd no\n"
    )
    return host_key, ssh / "client_key"


def _steps(ssh: Path) -> list[str]:
    """The host's side, before its systemd starts: sshd as a unit its target wants, the
    demo's sshd unit script (switch-to-configuration's `unit sshd start|stop`) as
    systemctl, its own system profiles and an empty ~/.bashrc."""
    sshd = (
        f"[Service]\nExecStart=/usr/sbin/sshd -D -e -f {ssh / 'sshd_config'}\n"
        "RuntimeDirectory=sshd\nKillMode=process\n"
    )
    script = (
        '#!/bin/sh\ncase "$1" in start|stop) exec systemctl "$1" '
        + SSHD_UNIT
        + " ;; esac\nexit 2\n"
    )
    (BASE / "bashrc").write_text("")
    return [
        f"printf %s {shlex.quote(sshd)} > /etc/systemd/system/{SSHD_UNIT}",
        "mkdir -p /etc/systemd/system/reconcile-test.target.d",
        f"printf '[Unit]\\nWants={SSHD_UNIT}\\n' > "
        "/etc/systemd/system/reconcile-test.target.d/sshd.conf",
        "mkdir -p /run/demo-units",
        f"printf %s {shlex.quote(script)} > /run/demo-units/sshd",
        "chmod 755 /run/demo-units/sshd",
        "mount -t tmpfs tmpfs /nix/var/nix/profiles",
        f"if [ -e /root/.bashrc ]; then mount --bind {BASE / 'bashrc'} /root/.bashrc; fi",
    ]


class Lab:
    def __init__(self, host: SystemdHost, flake: Path, host_key: str, identity: Path) -> None:
        self.host = host
        self.flake = flake
        self.manifest = BASE / "lab.toml"
        self.host_key = host_key
        self.identity = identity
        self.system = "sd-good"

    def write(self) -> str:
        self.manifest.write_text(
            f'[lab]\nname = "gs"\nflake = "{self.flake}"\nstate_dir = "{BASE / "state"}"\n'
            f"""
[hosts.bm1]
system = ".#packages.x86_64-linux.{self.system}"
ssh = {{ target = "root@127.0.0.1", connect_timeout = "3s", host_key = "{self.host_key}", \
identity = "{self.identity}" }}
health = [{{ tcp = 22 }}]
health_timeout = "3s"
confirm_timeout = "{CONFIRM_S}s"
"""
        )
        return str(self.manifest)

    def argv(self, *args: str) -> list[str]:
        return self.host.inside([sys.executable, "-m", "reconcile", *args])

    def link(self, path: str) -> str:
        return self.host.run(["readlink", "-f", path], check=False).stdout.strip()


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    remove_tree(BASE)
    BASE.mkdir(parents=True)
    flake = demo_flake(BASE / "flake", SYSTEMS)
    host_key, identity = _keys(BASE / "ssh")
    with SystemdHost(BASE / "host", steps=_steps(BASE / "ssh")) as host:
        wait_until(
            "the host's sshd",
            lambda: (
                host.run(["systemctl", "is-active", SSHD_UNIT], check=False).stdout.strip()
                == "active"
            ),
            10,
        )
        yield Lab(host, flake, host_key, identity)
    remove_tree(BASE)


def test_activation_and_guard_are_units_and_the_guard_rolls_back(lab: Lab) -> None:
    host = lab.host
    proc = subprocess.run(
        lab.argv("apply", lab.write(), "--yes"), capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    good = lab.link("/run/current-system")
    assert "sd-good" in good and lab.link("/nix/var/nix/profiles/system") == good

    lab.system = "sd-no-sshd"
    run = subprocess.Popen(
        lab.argv("apply", lab.write(), "--yes"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # the guard is a unit of its own, running while reconcile cannot reach the host
        wait_until("the guard's unit", lambda: host.units("reconcile-guard-*"), 60)
        wait_until(
            "sshd stopped by the new system",
            lambda: (
                host.run(["systemctl", "is-active", SSHD_UNIT], check=False).stdout.strip()
                != "active"
            ),
            60,
        )
        out, err = run.communicate(timeout=180)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 4, out + err
    assert f"rolled back to {good} by the host's guard (not confirmed in time)" in out, out
    # back on it, and its activation (a unit too) started sshd again through systemctl
    assert lab.link("/run/current-system") == good
    assert lab.link("/nix/var/nix/profiles/system") == good
    active = host.run(["systemctl", "is-active", SSHD_UNIT], check=False).stdout.strip()
    assert active == "active"
    logs = host.run(["sh", "-c", "cat /run/reconcile/guards/*.log"]).stdout
    assert "not confirmed in time" in logs
    time.sleep(1)
    assert not host.units("reconcile-guard-*")  # the guard's unit is done and collected
