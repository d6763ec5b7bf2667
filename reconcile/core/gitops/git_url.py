"""What kind of git repository address a `gitops.repo` is, as git itself would read it. Pure.

git picks a transport from the address's shape: `<scheme>://...`, `<helper>::<address>`
(a remote helper: `ext::` runs any command), scp-like `[user@]host:path` (ssh, when a colon
comes before any slash), else a local path. reconcile accepts only transports that move
data and run nothing of the repository's choosing: local paths and `file://`, `git://`,
`http(s)://` and ssh. An ssh address is told apart because its host key must be pinned.
"""

from __future__ import annotations

import re
from enum import StrEnum


class Transport(StrEnum):
    LOCAL = "local"  # a path or file://
    SSH = "ssh"
    HTTP = "http"  # http:// or https://
    GIT = "git"  # git://


_SCHEMES = {
    "file": Transport.LOCAL,
    "ssh": Transport.SSH,
    "git+ssh": Transport.SSH,
    "ssh+git": Transport.SSH,
    "http": Transport.HTTP,
    "https": Transport.HTTP,
    "git": Transport.GIT,
}
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_HELPER = re.compile(r"[A-Za-z0-9][A-Za-z0-9+.-]*::")

# What git's own protocol filter (GIT_ALLOW_PROTOCOL) lets through: the same list.
ALLOWED_PROTOCOLS = "file:git:http:https:ssh"


def transport(repo: str) -> Transport | None:
    """The transport git would use for `repo`, or None when it is not one reconcile allows
    (a remote helper such as `ext::`, an unknown scheme, an option-like `-...`)."""
    if not repo or repo.startswith("-"):
        return None
    if _HELPER.match(repo):
        return None
    scheme = _SCHEME.match(repo)
    if scheme:
        return _SCHEMES.get(scheme.group(1).lower())
    colon, slash = repo.find(":"), repo.find("/")
    if colon > 0 and (slash < 0 or colon < slash):
        return Transport.SSH  # scp-like user@host:path
    return Transport.LOCAL
