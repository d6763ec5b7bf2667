"""Which libvirt URIs a manifest may name, and the exact URI reconcile opens for each."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import jsonschema
import pytest

from reconcile.core.errors import ManifestError
from reconcile.core.guests.libvirt_uri import (
    SshAuth,
    Transport,
    UriRefused,
    connection_uri,
    parse_uri,
)
from reconcile.core.manifest import parse_manifest
from reconcile.core.manifest.schema import ecma_anchors
from reconcile.core.ssh_target import SshTarget
from tests.support.schema import subschema_at

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHVhmTUhVpvXYpbmqi7rMc9QIr4ldbyGFPIWu5SnU6RB"
AUTH = SshAuth(PurePosixPath("/tmp/r/known_hosts"))

ALLOWED = [
    "qemu:///system",
    "qemu:///session",
    "qemu+ssh://rack2/system",
    "qemu+ssh://root@rack2.lab.example/system",
    "qemu+ssh://admin@10.0.0.5:2222/session",
    "qemu+ssh://root@[fd00::5]:22/system",
    "qemu+tls://hv1.example/system",
    "qemu+tls://hv1.example:16514/system",
    "test:///default",
    "test:///tmp/driver.xml",
]
REFUSED = [
    "qemu+ssh://root@h/system?command=/tmp/evil.sh",
    "qemu+ssh://root@h/system?netcat=/tmp/evil.sh",
    "qemu+ssh://root@h/system?keyfile=/root/.ssh/id",
    "qemu+ssh://root@h/system?no_tty=1",
    "qemu+tls://h/system?no_verify=1",
    "qemu:///system?socket=/tmp/sock",
    "qemu:///system#x",
    "qemu:///system\n",
    "qemu:///system ",
    "qemu+ext:///system?command=/bin/sh",
    "qemu+ext:///system",
    "qemu+unix:///system",
    "qemu+tcp://h/system",
    "qemu+libssh2://root@h/system",
    "qemu+libssh://root@h/system",
    "lxc:///system",
    "xen:///",
    "qemu:///embed",
    "qemu://h/system",
    "qemu+tls://root@h/system",
    "qemu+tls://h/session",
    "qemu+ssh:///system",
    "qemu+ssh://-oProxyCommand=x/system",
    "qemu+ssh://root@h:0/system",
    "qemu+ssh://root@h:99999/system",
    "test:///../etc/x.xml",
    "test://h/default",
    "",
]


@pytest.mark.parametrize("uri", ALLOWED)
def test_allowed(uri: str) -> None:
    parse_uri(uri)


@pytest.mark.parametrize("uri", REFUSED)
def test_refused(uri: str) -> None:
    with pytest.raises(UriRefused) as refused:
        parse_uri(uri)
    assert refused.value.hint


def _schema_accepts(uri: str) -> bool:
    node = subschema_at(("hypervisors", "x", "uri"))
    assert node is not None
    return jsonschema.Draft202012Validator({"pattern": ecma_anchors(node["pattern"])}).is_valid(uri)


@pytest.mark.parametrize("uri", ALLOWED + REFUSED)
def test_schema_pattern_and_check_agree(uri: str) -> None:
    """The schema's pattern is the same allowlist; what a regex says badly (`..` in a test
    file path, a port above 65535) is left to the semantic check, which uses parse_uri."""
    try:
        parse_uri(uri)
        allowed = True
    except UriRefused:
        allowed = False
    assert _schema_accepts(uri) == allowed or uri in SEMANTIC_ONLY


SEMANTIC_ONLY = {"test:///../etc/x.xml", "qemu+ssh://root@h:99999/system"}


@pytest.mark.parametrize("uri", sorted(SEMANTIC_ONLY))
def test_semantic_check_refuses_what_the_pattern_admits(uri: str) -> None:
    text = f'[lab]\nname = "t"\n[hypervisors.h]\nuri = "{uri}"\nhost_key = "{KEY}"\n'
    with pytest.raises(ManifestError) as caught:
        parse_manifest(text.encode(), Path("t.toml"))
    (problem,) = caught.value.problems
    assert (problem.line, problem.path) == (4, "hypervisors.h.uri")


def test_parsed_parts() -> None:
    parsed = parse_uri("qemu+ssh://admin@[fd00::5]:2222/session")
    assert (parsed.transport, parsed.user, parsed.host, parsed.port, parsed.path) == (
        Transport.SSH,
        "admin",
        "fd00::5",
        2222,
        "/session",
    )
    assert parse_uri("qemu:///system").remote is False


def test_ssh_target_defaults_to_root_on_22() -> None:
    assert parse_uri("qemu+ssh://rack2/system").ssh_target == SshTarget("root", "rack2", 22)
    target = parse_uri("qemu+ssh://admin@[fd00::5]:2222/session").ssh_target
    assert target == SshTarget("admin", "fd00::5", 2222)


@pytest.mark.parametrize("uri", ["qemu:///system", "qemu+tls://hv/system", "test:///default"])
def test_local_and_tls_open_as_written(uri: str) -> None:
    assert connection_uri(uri) == uri


def test_ssh_becomes_libssh2_with_the_pinned_file_and_the_agent() -> None:
    assert connection_uri("qemu+ssh://rack2.lab.example/system", AUTH) == (
        "qemu+libssh2://root@rack2.lab.example:22/system"
        "?known_hosts=/tmp/r/known_hosts&known_hosts_verify=normal&sshauth=agent"
    )


def test_ssh_with_an_identity_and_odd_characters_in_paths() -> None:
    auth = SshAuth(PurePosixPath("/tmp/a b/known&hosts"), PurePosixPath("/keys/id_ed25519"))
    assert connection_uri("qemu+ssh://admin@[fd00::5]:2222/session", auth) == (
        "qemu+libssh2://admin@[fd00::5]:2222/session"
        "?known_hosts=/tmp/a%20b/known%26hosts&known_hosts_verify=normal"
        "&sshauth=privkey,agent&keyfile=/keys/id_ed25519"
    )


def test_ssh_without_a_pin_is_refused() -> None:
    with pytest.raises(UriRefused, match="pinned host key") as refused:
        connection_uri("qemu+ssh://root@rack2/system")
    assert "host_key" in refused.value.hint


def test_refused_uri_is_never_translated() -> None:
    with pytest.raises(UriRefused):
        connection_uri("qemu+ssh://root@h/system?command=/bin/sh", AUTH)
