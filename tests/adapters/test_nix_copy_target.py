"""What `nix copy` (Nix 2.8) hands OpenSSH for a host: the destination bare, the port and
the pinned known_hosts from NIX_SSHOPTS. An `ssh` on PATH records its argv and fails, so
nothing leaves this machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconcile.adapters import deploy, process
from reconcile.core.desired import Ssh
from reconcile.core.errors import CommandError

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHf0ZbUiv2XH5hs3mSz0t8Kb0cYt6a9eXr0JqG3VZbWc"
RECORDER = '#!/bin/sh\nprintf "%s\\n" "$@" > "$(dirname "$0")/argv"\nexit 1\n'


def ssh(host: str, port: int) -> Ssh:
    return Ssh("deploy", host, port, KEY, None, None, 5, 30)


@pytest.fixture
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(RECORDER)
    (bin_dir / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{process.child_env()['PATH']}")
    return bin_dir / "argv"


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    source = tmp_path_factory.mktemp("closure") / "reconcile-nix-copy-target"
    source.write_text("a path for nix copy to send\n")
    return process.run(["nix-store", "--add", str(source)], timeout=60).stdout.strip()


@pytest.mark.parametrize(
    ("host", "port", "destination", "known"),
    [
        ("10.0.0.2", 22, "deploy@10.0.0.2", "10.0.0.2"),
        ("bm1.lab.example", 2222, "deploy@bm1.lab.example", "[bm1.lab.example]:2222"),
        ("fd00::5", 2222, "deploy@fd00::5", "[fd00::5]:2222"),
        ("fd00::5", 22, "deploy@fd00::5", "fd00::5"),
    ],
)
def test_nix_copy_runs_ssh_with_the_bare_destination_and_the_port(
    recorded: Path,
    store_path: str,
    tmp_path: Path,
    host: str,
    port: int,
    destination: str,
    known: str,
) -> None:
    target = ssh(host, port)
    known_hosts = deploy.known_hosts_file(target, tmp_path / "bm1.known_hosts")
    assert known_hosts.read_text() == f"{known} {KEY}\n"
    with pytest.raises(CommandError):
        deploy.copy_closure(target, store_path, known_hosts, 30, {})
    argv = recorded.read_text().splitlines()
    assert argv[0] == destination
    assert argv[argv.index("-p") + 1] == str(port)
    assert f"UserKnownHostsFile={known_hosts}" in argv
    assert argv[-1] == "nix-daemon --stdio"
