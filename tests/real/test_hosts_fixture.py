"""The baremetal-host test fixture itself: pinned SSH, its own Nix store, its own /run.

One host is shared across the module; the tests run in order (copy, then switch).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.hosts import TestHost, build_demo_closure, netns_names

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def host() -> Iterator[TestHost]:
    with TestHost() as h:
        yield h
    assert h.leftovers() == []


@pytest.fixture(scope="module")
def closure() -> str:
    return build_demo_closure("demo-a")


def nix_copy(
    host: TestHost, path: str, *, extra: tuple[str, ...] = (), known_hosts: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nix", "copy", *extra, "--to", host.store_uri("ssh-ng"), path],
        env=host.nix_env(known_hosts),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def other_key_known_hosts(host: TestHost, tmp_path: Path) -> Path:
    key = tmp_path / "other"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30
    )
    line = " ".join((tmp_path / "other.pub").read_text().split()[:2])
    known = tmp_path / "known_hosts"
    known.write_text(host.known_hosts_line(line) + "\n")
    return known


def test_host_shape(host: TestHost) -> None:
    assert host.netns.startswith("rctest-") and host.netns in netns_names()
    assert host.address == f"10.253.{host.index}.2" and host.port == 22
    assert host.host_key_line.startswith("ssh-ed25519 AAAA")
    assert host.known_hosts.read_text() == f"{host.address} {host.host_key_line}\n"
    assert host.mount_ns != os.readlink("/proc/self/ns/mnt")


def test_ssh_with_pinned_key_runs_true(host: TestHost) -> None:
    start = time.monotonic()
    proc = host.run("true", check=False)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - start < 5
    assert "StrictHostKeyChecking=yes" in host.ssh_argv("true")


def test_wrong_or_unknown_host_key_is_refused(host: TestHost, tmp_path: Path) -> None:
    wrong = other_key_known_hosts(host, tmp_path)
    proc = host.run("true", check=False, known_hosts=wrong)
    assert proc.returncode == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in proc.stderr
    assert "Host key verification failed" in proc.stderr
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    proc = host.run("true", check=False, known_hosts=empty)
    assert proc.returncode == 255
    assert "Host key verification failed" in proc.stderr


def test_host_has_its_own_empty_store_and_run(host: TestHost, closure: str) -> None:
    assert Path(closure).exists()  # in this machine's store
    assert not host.has_path(closure)
    listing = host.run("ls -A /nix/store; ls -A /run").stdout.split()
    assert Path(closure).name not in listing
    assert "current-system" not in listing and "sshd" in listing
    assert host.current_system() is None


def test_nix_copy_needs_pinned_key_and_fills_the_hosts_store(
    host: TestHost, closure: str, tmp_path: Path
) -> None:
    wrong = other_key_known_hosts(host, tmp_path)
    refused = nix_copy(host, closure, extra=("--no-check-sigs",), known_hosts=wrong)
    assert refused.returncode != 0
    assert "Host key verification failed" in refused.stderr
    # the host keeps require-sigs = true and paths built here are unsigned
    unsigned = nix_copy(host, closure)
    assert unsigned.returncode != 0
    assert "lacks a valid signature" in unsigned.stderr
    assert not host.has_path(closure)

    start = time.monotonic()
    copied = nix_copy(host, closure, extra=("--no-check-sigs",))
    elapsed = time.monotonic() - start
    assert copied.returncode == 0, copied.stderr
    assert elapsed < 10
    assert host.has_path(closure)
    assert (
        host.dir / "nix" / "store" / Path(closure).name / "bin/switch-to-configuration"
    ).exists()
    again = nix_copy(host, closure, extra=("--no-check-sigs",))
    assert again.returncode == 0 and "copying 0 paths" in again.stderr


def test_switch_points_the_hosts_current_system_only(host: TestHost, closure: str) -> None:
    if not host.has_path(closure):
        assert nix_copy(host, closure, extra=("--no-check-sigs",)).returncode == 0
    root_before = (
        os.readlink("/run/current-system") if os.path.lexists("/run/current-system") else None
    )
    proc = host.run([f"{closure}/bin/switch-to-configuration", "switch"], check=False)
    assert proc.returncode == 0, proc.stderr
    assert host.current_system() == closure
    root_after = (
        os.readlink("/run/current-system") if os.path.lexists("/run/current-system") else None
    )
    assert root_after == root_before


def test_killed_network_makes_the_host_unreachable(host: TestHost) -> None:
    host.kill_network()
    try:
        proc = host.run("true", check=False, timeout=20)
        assert proc.returncode == 255
        assert "connect to host" in proc.stderr
    finally:
        host.restore_network()
    assert host.run("true", check=False).returncode == 0


def test_cleanup_leaves_nothing_even_with_a_session_open_and_an_error() -> None:
    seen: dict[str, object] = {}
    session: subprocess.Popen[bytes] | None = None
    with pytest.raises(ZeroDivisionError), TestHost() as h:
        seen.update(netns=h.netns, pid=h.sshd_pid, dir=h.dir, veth=h.veth)
        session = subprocess.Popen(h.ssh_argv("sleep 60"), stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while "sleep" not in h.run("ps -o comm= -e || ps", check=False).stdout:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        1 / 0  # noqa: B018 - the failure a test might have
    assert h.leftovers() == []
    assert seen["netns"] not in netns_names()
    assert not Path(f"/proc/{seen['pid']}").exists()
    assert not Path(str(seen["dir"])).exists()
    assert str(seen["dir"]) not in Path("/proc/self/mounts").read_text()
    assert session is not None
    assert session.wait(timeout=10) != 0  # the host went away under it
