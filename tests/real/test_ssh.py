"""The SSH adapter against a real sshd in a network namespace: pinned keys, literal argv."""

from __future__ import annotations

import dataclasses
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from reconcile.adapters.ssh import HostKeyError, Session, UnreachableError, observe_host
from reconcile.core.desired import Ssh
from reconcile.core.errors import CommandError
from testbed.hosts import TestHost, build_demo_closure

pytestmark = pytest.mark.real

INJECTION = [
    "a; touch /tmp/pwned",
    "$(touch /tmp/pwned)",
    "`touch /tmp/pwned`",
    "it's",
    'say "hi"',
    "two\nlines",
    "  spaces  around ",
    "back\\slash",
    "*",
]


@pytest.fixture(scope="module")
def host() -> Iterator[TestHost]:
    with TestHost() as made:
        yield made


def target(host: TestHost, **change: object) -> Ssh:
    ssh = Ssh(
        user="root",
        host=host.address,
        port=host.port,
        host_key=host.host_key_line,
        known_hosts=None,
        identity=Path(host.identity),
        connect_timeout_s=5,
        command_timeout_s=30,
    )
    return dataclasses.replace(ssh, **change)  # type: ignore[arg-type]


def test_argv_arrives_literally(host: TestHost) -> None:
    session = Session(target(host))
    try:
        for value in INJECTION:
            out = session.run(["printf", "%s", value]).stdout
            assert out == value
        assert session.run(["sh", "-c", "test -e /tmp/pwned"], check=False).returncode == 1
    finally:
        session.close()


def test_pinned_by_known_hosts_file_too(host: TestHost) -> None:
    session = Session(target(host, host_key=None, known_hosts=host.known_hosts))
    try:
        assert session.run(["true"]).returncode == 0
    finally:
        session.close()


def test_wrong_key_is_refused_with_both_fingerprints(host: TestHost) -> None:
    wrong = paramiko.Ed25519Key(filename=str(host.identity))  # any key but the host's
    line = f"{wrong.get_name()} {wrong.get_base64()}"
    with pytest.raises(HostKeyError) as caught:
        Session(target(host, host_key=line)).run(["true"])
    message = caught.value.message
    assert "host key mismatch" in message
    assert message.count("SHA256:") == 2
    assert caught.value.hint is not None and host.host_key_line in caught.value.hint


def test_unknown_key_is_refused(host: TestHost, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(HostKeyError, match="is not pinned; refusing to connect"):
        Session(target(host, host_key=None, known_hosts=empty)).run(["true"])


def test_command_timeout_is_retryable(host: TestHost) -> None:
    session = Session(target(host))
    try:
        with pytest.raises(CommandError) as caught:
            session.run(["sleep", "5"], timeout_s=1)
        assert caught.value.retryable
    finally:
        session.close()


def test_observe_reads_the_switched_system(host: TestHost) -> None:
    closure = build_demo_closure("demo-a")
    session = Session(target(host))
    try:
        before = observe_host(session)
        assert before.current is None and not before.has_systemd
        assert len(before.boot_id) == 36
        assert host.has_path(closure) is False
        subprocess.run(
            ["nix", "copy", "--no-check-sigs", "--to", host.store_uri("ssh-ng"), closure],
            env=host.nix_env(),
            check=True,
            capture_output=True,
        )
        session.run([f"{closure}/bin/switch-to-configuration", "switch"])
        after = observe_host(session)
        assert after.current == closure
    finally:
        session.close()


def test_unreachable_host_is_an_error_not_a_hang(host: TestHost) -> None:
    host.kill_network()
    try:
        started = time.monotonic()
        with pytest.raises(UnreachableError, match="unreachable"):
            Session(target(host, connect_timeout_s=3)).run(["true"])
        assert time.monotonic() - started < 10
    finally:
        host.restore_network()


def test_the_users_ssh_config_adds_no_unpinned_hop(
    host: TestHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A ProxyJump in ~/.ssh/config would open a connection to a jump host whose key
    # nobody pinned (fabric follows it by default). The manifest alone says how to connect.
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(
        "Host *\n  ProxyJump nobody@jump.invalid\n  User nobody\n  Port 1\n"
    )
    monkeypatch.setenv("HOME", str(home))
    session = Session(target(host))
    try:
        assert session.run(["echo", "direct"]).stdout == "direct\n"
    finally:
        session.close()
