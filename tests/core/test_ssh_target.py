"""One SSH target, every spelling: OpenSSH argv, known_hosts, URIs (IPv6 in brackets), Nix."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconcile.core.hosts.baremetal import HostIntent, diff_host
from reconcile.core.manifest import parse_manifest
from reconcile.core.ssh_target import SshTarget
from tests.conftest import ROOT

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHf0ZbUiv2XH5hs3mSz0t8Kb0cYt6a9eXr0JqG3VZbWc"
SCHEMA = json.loads((ROOT / "schema" / "manifest.schema.json").read_text())
TARGET_PATTERN = SCHEMA["$defs"]["ssh"]["properties"]["target"]["pattern"]


def spellings(target: SshTarget) -> dict[str, str]:
    """Every spelling that ends up as an argument, a file's text or a URI."""
    return {
        "host": target.host,
        "user": target.user,
        "port": target.port_args[1],
        "destination": target.destination,
        "known_hosts_name": target.known_hosts_name,
        "known_hosts_line": target.known_hosts_line(KEY),
        "authority": target.authority,
        "str": str(target),
        "nix_store_uri": target.nix_store_uri,
    }


def test_ipv4_on_the_default_port() -> None:
    target = SshTarget("root", "10.0.0.2")
    assert spellings(target) == {
        "host": "10.0.0.2",
        "user": "root",
        "port": "22",
        "destination": "root@10.0.0.2",
        "known_hosts_name": "10.0.0.2",
        "known_hosts_line": f"10.0.0.2 {KEY}\n",
        "authority": "root@10.0.0.2:22",
        "str": "root@10.0.0.2:22",
        "nix_store_uri": "ssh-ng://root@10.0.0.2",
    }
    assert target.port_args == ("-p", "22")
    assert not target.ipv6


def test_hostname_on_another_port() -> None:
    target = SshTarget("deploy", "bm1.lab.example", 2222)
    assert target.destination == "deploy@bm1.lab.example"
    assert target.port_args == ("-p", "2222")
    assert target.known_hosts_name == "[bm1.lab.example]:2222"
    assert target.known_hosts_line(KEY + " comment") == f"[bm1.lab.example]:2222 {KEY}\n"
    assert target.authority == "deploy@bm1.lab.example:2222"
    assert target.nix_store_uri == "ssh-ng://deploy@bm1.lab.example"  # the port: NIX_SSHOPTS


def test_ipv6_is_bracketed_in_uris_and_known_hosts_never_in_argv() -> None:
    target = SshTarget("root", "fd00::5", 2222)
    assert target.ipv6
    # OpenSSH's argv: bare (`ssh root@[fd00::5]` looks up "[fd00::5]" as a name)
    assert target.destination == "root@fd00::5"
    assert "[" not in target.host
    assert target.known_hosts_name == "[fd00::5]:2222"
    assert target.authority == "root@[fd00::5]:2222"
    assert str(target) == "root@[fd00::5]:2222"
    assert target.nix_store_uri == "ssh-ng://root@[fd00::5]"


def test_ipv6_on_the_default_port_is_bare_in_known_hosts_as_openssh_writes_it() -> None:
    target = SshTarget("root", "::1")
    assert target.known_hosts_name == "::1"
    assert target.known_hosts_line(KEY) == f"::1 {KEY}\n"
    assert target.authority == "root@[::1]:22"
    assert target.nix_store_uri == "ssh-ng://root@[::1]"


@pytest.mark.parametrize(
    ("user", "host", "port"),
    [
        ("root", "-oProxyCommand=x", 22),
        ("-oProxyCommand=x", "h", 22),
        ("root", "", 22),
        ("", "h", 22),
        ("root", "[fd00::5]", 22),  # brackets are a spelling, not part of the host
        ("root", "a b", 22),
        ("root", "user@h", 22),
        ("root", "h/x", 22),
        ("ro ot", "h", 22),
        ("root", "h", 0),
        ("root", "h", 65536),
        ("root", "h", True),
    ],
)
def test_values_that_could_become_options_or_syntax_are_refused(
    user: str, host: str, port: int
) -> None:
    with pytest.raises(ValueError, match=r"not an SSH|not a TCP"):
        SshTarget(user, host, port)


def test_pinned_lines_keep_only_this_host() -> None:
    salt = b"0123456789abcdefghij"
    digest = hmac.new(salt, b"[hv]:2222", hashlib.sha1).digest()
    hashed = f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"
    text = "\n".join(
        [
            "# comment",
            f"other {KEY}",
            f"hv {KEY}",  # port 22 only
            "[hv]:2222,alias ssh-rsa AAAAB3",
            f"{hashed} ecdsa-sha2-nistp256 AAAAE2",
            f"@cert-authority [hv]:2222 {KEY}",
            "*.example,[hv]:2222 ssh-ed25519 WILD",
            "!bad,[hv]:2222 ssh-ed25519 NEGATED",
            "garbage",
        ]
    )
    assert SshTarget("root", "hv", 2222).pinned_lines(text) == (
        "[hv]:2222 ssh-rsa AAAAB3\n"
        "[hv]:2222 ecdsa-sha2-nistp256 AAAAE2\n"
        "[hv]:2222 ssh-ed25519 WILD\n"
    )
    assert SshTarget("root", "hv").pinned_lines(text) == f"hv {KEY}\n"
    assert SshTarget("root", "nobody").pinned_lines(text) == ""
    six = f"fd00::5 {KEY}\n[fd00::5]:2222 ssh-rsa AAAAB3\n"
    assert SshTarget("root", "fd00::5").pinned_lines(six) == f"fd00::5 {KEY}\n"
    assert SshTarget("root", "fd00::5", 2222).pinned_lines(six) == "[fd00::5]:2222 ssh-rsa AAAAB3\n"


def manifest_ssh(target: str, port: int = 22):  # type: ignore[no-untyped-def]
    manifest = parse_manifest(
        f"""
[lab]
name = "t"
state_dir = "/s"
[hosts.bm1]
system = "s"
ssh = {{ target = "{target}", port = {port}, host_key = "{KEY}" }}
""".encode(),
        Path("/m.toml"),
    )
    return manifest.hosts["bm1"]


def test_the_manifest_target_unbracketed_once_and_spelled_by_the_target() -> None:
    host = manifest_ssh("deploy@[fd00::5]", 2222)
    assert (host.ssh.user, host.ssh.host, host.ssh.port) == ("deploy", "fd00::5", 2222)
    assert host.ssh.target == SshTarget("deploy", "fd00::5", 2222)
    assert manifest_ssh("10.0.0.2").ssh.target == SshTarget("root", "10.0.0.2", 22)
    # what plans and drift show for the host (HostChange.target)
    change = diff_host(HostIntent(host, "/nix/store/x", "i"), None, "unreachable")
    assert change.target == "deploy@[fd00::5]:2222"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    target=st.from_regex(TARGET_PATTERN, fullmatch=True),
    port=st.integers(min_value=1, max_value=65535),
)
def test_every_target_the_schema_admits_spells_without_a_leading_dash(
    target: str, port: int
) -> None:
    ssh = manifest_ssh(target, port).ssh
    got = spellings(ssh.target)  # constructing it raises nothing for a valid manifest
    for name, value in got.items():
        assert not value.startswith("-"), (name, value)
        assert not any(c.isspace() for c in value.rstrip("\n").replace(f" {KEY}", "")), name
    assert "[" not in got["destination"] and "[" not in got["host"]
    if ":" in ssh.host:  # IPv6: in brackets wherever a URI has it
        assert f"@[{ssh.host}]" in got["authority"] and got["nix_store_uri"].endswith("]")
