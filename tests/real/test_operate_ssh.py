"""`reconcile ssh` against a real sshd in a network namespace: the pinned key or nothing.

The lab's state directory has a space and a `%` in its name, so the known_hosts path
reaches OpenSSH quoted and unexpanded (core/ssh_login.py).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.hosts import TestHost

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def host() -> Iterator[TestHost]:
    with TestHost() as made:
        yield made


def write_lab(root: Path, host: TestHost, ssh: str) -> Path:
    path = root / "lab.toml"
    path.write_text(
        f'[lab]\nname = "ops"\nstate_dir = "{root / "state dir %h"}"\n\n'
        f'[hosts.bm1]\nsystem = "bm1"\n'
        f'ssh = {{ target = "root@{host.address}", connect_timeout = "5s", {ssh} }}\n'
    )
    return path


def reconcile_ssh(lab: Path, *words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconcile", "ssh", str(lab), "bm1", *words],
        stdin=subprocess.DEVNULL,  # no terminal: ssh cannot ask anything
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_ssh_runs_the_command_with_the_pinned_key(host: TestHost, tmp_path: Path) -> None:
    lab = write_lab(
        tmp_path, host, f'host_key = "{host.host_key_line}", identity = "{host.identity}"'
    )
    proc = reconcile_ssh(lab, "--", "echo", "hello")
    assert (proc.returncode, proc.stdout) == (0, "hello\n"), proc.stderr
    # the words arrive as OpenSSH sends them: joined with spaces, for the remote shell
    proc = reconcile_ssh(lab, "--", "printf", "%s-%s", "a", "b")
    assert (proc.returncode, proc.stdout) == (0, "a-b"), proc.stderr
    proc = reconcile_ssh(lab, "--", "exit 7")
    assert proc.returncode == 7  # ssh's exit code is the remote command's
    # joined, `sh -c 'exit 7'` is `sh -c exit 7` there: quote for the remote shell yourself
    assert reconcile_ssh(lab, "--", "sh", "-c", "exit 7").returncode == 0
    assert reconcile_ssh(lab, "--", "sh", "-c", "'exit 7'").returncode == 7
    known_hosts = tmp_path / "state dir %h" / "ssh" / "bm1.known_hosts"
    assert known_hosts.read_text() == f"{host.address} {host.host_key_line}\n"


def test_ssh_with_a_known_hosts_file(host: TestHost, tmp_path: Path) -> None:
    lab = write_lab(
        tmp_path, host, f'known_hosts = "{host.known_hosts}", identity = "{host.identity}"'
    )
    proc = reconcile_ssh(lab, "--", "echo", "pinned")
    assert (proc.returncode, proc.stdout) == (0, "pinned\n"), proc.stderr


def test_a_wrong_pinned_key_is_refused_and_nothing_runs(host: TestHost, tmp_path: Path) -> None:
    wrong = host.client_key_line  # a real key, but not the host's
    assert wrong != host.host_key_line
    marker = tmp_path / "ran"  # the test host shares this file system (not /nix, /run)
    lab = write_lab(tmp_path, host, f'host_key = "{wrong}", identity = "{host.identity}"')
    proc = reconcile_ssh(lab, "--", "touch", str(marker))
    assert proc.returncode == 255, proc.stdout + proc.stderr
    assert "Host key verification failed" in proc.stderr
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in proc.stderr
    assert not marker.exists()  # nothing ran
    # and nothing was learnt: the file still holds only the (wrong) pin
    known_hosts = tmp_path / "state dir %h" / "ssh" / "bm1.known_hosts"
    assert known_hosts.read_text() == f"{host.address} {wrong}\n"


def test_an_unpinned_host_is_never_trusted_on_first_use(host: TestHost, tmp_path: Path) -> None:
    other = tmp_path / "known_hosts"
    other.write_text(f"elsewhere.example {host.host_key_line}\n")  # the key, another host
    lab = write_lab(tmp_path, host, f'known_hosts = "{other}", identity = "{host.identity}"')
    marker = tmp_path / "ran"
    proc = reconcile_ssh(lab, "--", "touch", str(marker))
    assert proc.returncode == 1
    assert f"pins no key for {host.address}: refusing to connect" in proc.stderr
    assert not marker.exists()
