"""libvirt connection URIs: which ones a manifest may name, and what reconcile really opens.

Pure. A libvirt URI can make the client run programs (`?command=`, `?netcat=`, the `ext`
transport), talk to arbitrary sockets (`?socket=`) or skip verification (`?no_verify=1`,
`?no_tty=1`, `known_hosts_verify=ignore`). A manifest may therefore name only these, with
no query string and no fragment:

    qemu:///system   qemu:///session
    qemu+ssh://[user@]host[:port]/system|session      (with a pinned host key)
    qemu+tls://host[:port]/system
    test:///default  test:///<absolute path of a test driver XML file>

A `qemu+ssh://` hypervisor is opened through libvirt's libssh2 transport with reconcile's
own parameters, so the host key is checked against the pinned one only:
`qemu+libssh2://user@host:port/PATH?known_hosts=FILE&known_hosts_verify=normal&sshauth=...`
(checked on libvirt 9.0: a wrong key fails with "SSH HOST KEY VERIFICATION FAILED", an
empty file with "Can't verify the session host key", both before authentication).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePosixPath
from urllib.parse import quote

from reconcile.core.ssh_target import DEFAULT_PORT, DEFAULT_USER, SshTarget

# One spelling of what the schema's `hypervisor.uri` pattern admits (kept equal by a test).
_USER = r"[A-Za-z_][A-Za-z0-9._-]{0,31}"
_HOST = r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}|\[[0-9A-Fa-f:.]+\]"
_PORT = r"[1-9][0-9]{0,4}"
_URI = re.compile(
    r"(?P<driver>qemu|test)(?:\+(?P<transport>ssh|tls))?://"
    rf"(?:(?P<user>{_USER})@)?(?P<host>{_HOST})?(?::(?P<port>{_PORT}))?"
    r"(?P<path>/[^?#\s\x00-\x1f\x7f]*)"
)
_TEST_FILE = re.compile(r"/[A-Za-z0-9._/+-]+")

HINT = (
    "allowed: qemu:///system, qemu:///session, qemu+ssh://[user@]host[:port]/system "
    "(or /session) with a pinned host_key or known_hosts, qemu+tls://host[:port]/system, "
    "test:///default; no query parameters (?...) and no fragment (#...)"
)


class Transport(StrEnum):
    LOCAL = "local"
    SSH = "ssh"
    TLS = "tls"


@dataclass(frozen=True)
class LibvirtUri:
    """An allowed URI, taken apart."""

    driver: str  # "qemu" or "test"
    transport: Transport
    user: str | None
    host: str | None  # without IPv6 brackets
    port: int | None
    path: str  # "/system", "/session", "/default" or a test file

    @property
    def remote(self) -> bool:
        return self.transport is not Transport.LOCAL

    @property
    def ssh_target(self) -> SshTarget:
        """A qemu+ssh URI's host as libssh2 reaches it: the user defaults to root, the
        port to 22."""
        assert self.transport is Transport.SSH and self.host is not None
        return SshTarget(self.user or DEFAULT_USER, self.host, self.port or DEFAULT_PORT)


class UriRefused(ValueError):
    """Why a URI is not one reconcile opens; `hint` says what is."""

    def __init__(self, message: str, hint: str = HINT) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def parse_uri(uri: str) -> LibvirtUri:
    """The URI taken apart, or UriRefused saying what about it is not allowed."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F or c.isspace() for c in uri):
        raise UriRefused("a libvirt URI cannot contain spaces or control characters")
    if "?" in uri:
        raise UriRefused(
            "query parameters are not allowed in a libvirt URI "
            f"({uri[uri.index('?') :]!r}): some run commands or skip host key checks",
        )
    if "#" in uri:
        raise UriRefused("a fragment (#...) is not allowed in a libvirt URI")
    scheme = uri.partition("://")[0]
    driver, _, transport = scheme.partition("+")
    if driver not in ("qemu", "test"):
        raise UriRefused(f"libvirt driver {driver!r} is not supported: use qemu (or test)")
    if transport and transport not in ("ssh", "tls"):
        raise UriRefused(
            f"transport {transport!r} is not allowed"
            + (" (it runs a command)" if transport == "ext" else "")
            + ": use qemu+ssh:// with a pinned host key, or qemu+tls://",
        )
    match = _URI.fullmatch(uri)
    if match is None:
        raise UriRefused(f"not a libvirt URI reconcile opens: {uri!r}")
    kind = Transport(match["transport"] or "local")
    host = match["host"]
    path = match["path"]
    if driver == "test":
        if kind is not Transport.LOCAL or host or match["user"] or match["port"]:
            raise UriRefused("the test driver is local: test:///default")
        if path != "/default" and not (
            _TEST_FILE.fullmatch(path) and ".." not in path.split("/") and path.count("/") > 1
        ):
            raise UriRefused("the test driver takes test:///default or test:///<absolute file>")
        return LibvirtUri(driver, kind, None, None, None, path)
    allowed = {
        Transport.LOCAL: ("/system", "/session"),
        Transport.SSH: ("/system", "/session"),
        Transport.TLS: ("/system",),
    }[kind]
    if path not in allowed:
        raise UriRefused(f"path {path!r} is not allowed here: use {' or '.join(allowed)}")
    if kind is Transport.LOCAL and (host or match["user"] or match["port"]):
        raise UriRefused("a local qemu URI names no host: qemu:///system")
    if kind is not Transport.LOCAL and not host:
        raise UriRefused(f"a qemu+{kind} URI needs a host: qemu+{kind}://HOST/system")
    if kind is Transport.TLS and match["user"]:
        raise UriRefused("qemu+tls authenticates with certificates: remove the user@")
    port = int(match["port"]) if match["port"] else None
    if port is not None and port > 65535:
        raise UriRefused(f"port {port} is out of range")
    return LibvirtUri(driver, kind, match["user"], host.strip("[]") if host else None, port, path)


@dataclass(frozen=True)
class SshAuth:
    """How reconcile logs in to a qemu+ssh hypervisor: its key file, else the agent."""

    known_hosts: PurePosixPath
    identity: PurePosixPath | None = None


def connection_uri(uri: str, auth: SshAuth | None = None) -> str:
    """What reconcile passes to libvirt for an allowed manifest URI.

    Local and TLS URIs are opened as they are. A qemu+ssh URI becomes libvirt's libssh2
    transport with the pinned known_hosts file, strict verification and reconcile's own
    authentication; it refuses to open without `auth`.
    """
    parsed = parse_uri(uri)
    if parsed.transport is not Transport.SSH:
        return uri
    if auth is None:
        raise UriRefused(
            "a qemu+ssh hypervisor needs a pinned host key",
            'add host_key = "ssh-ed25519 AAAA..." (from `ssh-keyscan HOST`) '
            'or known_hosts = "path/to/known_hosts" to the hypervisor',
        )
    params = [
        ("known_hosts", str(auth.known_hosts)),
        ("known_hosts_verify", "normal"),
    ]
    if auth.identity is not None:
        params += [("sshauth", "privkey,agent"), ("keyfile", str(auth.identity))]
    else:  # libssh2's privkey method needs a key file: without one, only the agent
        params.append(("sshauth", "agent"))
    query = "&".join(f"{k}={quote(v, safe='/,')}" for k, v in params)
    return f"qemu+libssh2://{parsed.ssh_target.authority}{parsed.path}?{query}"
