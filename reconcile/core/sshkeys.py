"""Pinned SSH host keys as the manifest gives them: `TYPE BASE64`, checked without a library.

The schema's pattern admits the shape; this reads the key blob's own type name (the first
field of the SSH wire encoding), so a truncated paste or a key of another type is an error
at validation, not an exception from the SSH library at connect time.
"""

from __future__ import annotations

import base64
import binascii

# The host key types both the schema and the SSH adapter (paramiko) accept.
HOST_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
)
_MIN_BLOB = {"ssh-ed25519": 51, "ssh-rsa": 150, "ecdsa-sha2-nistp256": 100}


def host_key_problem(text: str) -> str | None:
    """Why `text` is not a usable pinned host key, or None."""
    kind, _, data = text.partition(" ")
    if kind not in HOST_KEY_TYPES:
        return f"unsupported host key type {kind!r}; use one of: {', '.join(HOST_KEY_TYPES)}"
    try:
        blob = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return "the key is not valid base64 (was it cut when pasted?)"
    if len(blob) < 4:
        return "the key is too short to be a public key (was it cut when pasted?)"
    size = int.from_bytes(blob[:4], "big")
    inner = blob[4 : 4 + size]
    if size > len(blob) - 4 or inner != kind.encode():
        return (
            f"the key data is not a {kind} key (it says {inner[:40].decode(errors='replace')!r})"
            if size <= len(blob) - 4
            else "the key data is truncated"
        )
    if len(blob) < _MIN_BLOB.get(kind, 0):
        return "the key data is truncated"
    return None
