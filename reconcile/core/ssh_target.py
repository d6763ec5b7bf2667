"""Where an SSH connection goes, and every way a tool wants that spelled. Pure.

One value, `SshTarget(user, host, port)`, with the host as a name, an IPv4 address or an
IPv6 address *without* brackets (the manifest's `[fd00::5]` is unbracketed when it is
built). Each consumer gets its own spelling from it, so brackets and ports are decided in
one place:

    destination      root@fd00::5           OpenSSH's argv (and ssh-keyscan's host): no brackets
    port_args        ("-p", "2222")         OpenSSH's port option
    known_hosts_name [fd00::5]:2222          a known_hosts line's host (plain `fd00::5` on 22)
    authority        root@[fd00::5]:2222     in a URI (libvirt's), and for people
    nix_store_uri    ssh-ng://root@[fd00::5] Nix 2.8 takes no port in it: `port_args` go in
                                             NIX_SSHOPTS (it unbrackets a bracketed host)

The values come validated from the manifest (the schema's `ssh.target` and libvirt URI
patterns); construction checks them again, so no spelling can begin with `-` and be read
as an option, and none holds whitespace, `@`, `/` or brackets.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

# What the schema admits (`ssh.target`, `hypervisor.uri`), the IPv6 form without brackets.
_USER = re.compile(r"[A-Za-z_][A-Za-z0-9._-]{0,31}")
_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}|[0-9A-Fa-f:.]+")

DEFAULT_PORT = 22
DEFAULT_USER = "root"


@dataclass(frozen=True)
class SshTarget:
    user: str
    host: str  # a name, an IPv4 address, or an IPv6 address without brackets
    port: int = DEFAULT_PORT

    def __post_init__(self) -> None:
        if not _USER.fullmatch(self.user):
            raise ValueError(f"not an SSH user name: {self.user!r}")
        if not _HOST.fullmatch(self.host):
            raise ValueError(f"not an SSH host (a name, IPv4 or bare IPv6): {self.host!r}")
        if type(self.port) is not int or not 1 <= self.port <= 65535:
            raise ValueError(f"not a TCP port: {self.port!r}")

    @property
    def ipv6(self) -> bool:
        return ":" in self.host

    @property
    def uri_host(self) -> str:
        """The host as a URI (RFC 3986) or `host:port` pair spells it: IPv6 in brackets."""
        return f"[{self.host}]" if self.ipv6 else self.host

    @property
    def destination(self) -> str:
        """OpenSSH's destination argument, `user@host`: OpenSSH takes an IPv6 address bare
        (it would look `[::1]` up as a name)."""
        return f"{self.user}@{self.host}"

    @property
    def port_args(self) -> tuple[str, str]:
        """OpenSSH's (and ssh-keyscan's) port option."""
        return ("-p", str(self.port))

    @property
    def known_hosts_name(self) -> str:
        """The host's name in a known_hosts line, as OpenSSH writes and looks it up."""
        return self.host if self.port == DEFAULT_PORT else f"[{self.host}]:{self.port}"

    @property
    def authority(self) -> str:
        """`user@host:port` with an IPv6 host in brackets: a URI's authority, and how the
        target is shown to people (plans, drift, messages)."""
        return f"{self.user}@{self.uri_host}:{self.port}"

    @property
    def nix_store_uri(self) -> str:
        """The `nix copy --to` store. Nix 2.8 hands the part after `ssh-ng://` to ssh as its
        destination (unbracketing a bracketed host) and reads no port from it: the port goes
        in NIX_SSHOPTS as `port_args`."""
        return f"ssh-ng://{self.user}@{self.uri_host}"

    def known_hosts_line(self, host_key: str) -> str:
        """The one known_hosts line pinning `host_key` (`TYPE BASE64`, a comment dropped)."""
        kind, data = host_key.split()[:2]
        return f"{self.known_hosts_name} {kind} {data}\n"

    def pinned_lines(self, known_hosts: str) -> str:
        """The lines of a known_hosts text that pin this host and port, rewritten with a plain
        name. Marker lines (`@cert-authority`, `@revoked`), wildcards and negations are not
        carried over: only keys listed for exactly this host are trusted."""
        out = []
        for raw in known_hosts.splitlines():
            fields = raw.split()
            if len(fields) < 3 or fields[0].startswith(("#", "@")):
                continue
            if self._names_match(fields[0]):
                out.append(f"{self.known_hosts_name} {fields[1]} {fields[2]}\n")
        return "".join(out)

    def _names_match(self, field: str) -> bool:
        wanted = self.known_hosts_name
        if field.startswith("|1|"):  # hashed: |1|salt|hmac-sha1(salt, name)
            try:
                salt_b64, digest_b64 = field[3:].split("|", 1)
                salt, digest = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
            except ValueError:
                return False
            mac = hmac.new(salt, wanted.encode(), hashlib.sha1).digest()
            return hmac.compare_digest(mac, digest)
        names = field.split(",")
        return wanted in names and not any(n.startswith("!") for n in names)

    def __str__(self) -> str:
        return self.authority
