"""Pinned host keys are checked at validation: type, base64, and the blob's own type name."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from reconcile.core.sshkeys import HOST_KEY_TYPES, host_key_problem


@pytest.fixture(scope="module")
def real_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One real public key per type ssh-keygen makes, as `TYPE BASE64`."""
    keys = {}
    directory = tmp_path_factory.mktemp("keys")
    for kind, args in {
        "ssh-ed25519": ["-t", "ed25519"],
        "ssh-rsa": ["-t", "rsa", "-b", "2048"],
        "ecdsa-sha2-nistp256": ["-t", "ecdsa", "-b", "256"],
        "ecdsa-sha2-nistp384": ["-t", "ecdsa", "-b", "384"],
        "ecdsa-sha2-nistp521": ["-t", "ecdsa", "-b", "521"],
    }.items():
        path = directory / kind
        subprocess.run(["ssh-keygen", "-q", "-N", "", "-f", str(path), *args], check=True)
        keys[kind] = " ".join(Path(f"{path}.pub").read_text().split()[:2])
    return keys


def test_every_supported_type_is_accepted(real_keys: dict[str, str]) -> None:
    assert sorted(real_keys) == sorted(HOST_KEY_TYPES)
    for line in real_keys.values():
        assert host_key_problem(line) is None, line


def test_a_key_cut_when_pasted_is_refused(real_keys: dict[str, str]) -> None:
    kind, data = real_keys["ssh-ed25519"].split()
    assert "base64" in (host_key_problem(f"{kind} {data[:-3]}") or "")
    assert "truncated" in (host_key_problem(f"{kind} {data[:40]}") or "")


def test_a_key_of_another_type_than_it_says_is_refused(real_keys: dict[str, str]) -> None:
    data = real_keys["ssh-ed25519"].split()[1]
    assert "not a ssh-rsa key" in (host_key_problem(f"ssh-rsa {data}") or "")


def test_security_key_types_are_not_host_keys() -> None:
    problem = host_key_problem("sk-ssh-ed25519@openssh.com AAAA")
    assert problem is not None and "unsupported host key type" in problem
