"""Who a domain is: its name, UUID and MAC derived from lab and guest, and our ownership mark.

Pure. Identity is stable across runs and machines, so a redefinition keeps the same UUID
and MAC, and a guest's domain is found again by name.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass

# Our ownership mark lives in <metadata> under this namespace; libvirt keeps one element per
# namespace. Bump the version only with a migration: domains marked with another URI are
# unmanaged to this code.
MARK_NAMESPACE = "urn:reconcile:domain:1"
_UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, MARK_NAMESPACE)


@dataclass(frozen=True)
class Mark:
    """What reconcile writes into every domain it defines: no mark, no touch."""

    lab: str
    name: str  # the guest's name in the manifest, not the libvirt domain name
    mode: str  # a GuestMode value; kept as text so a mark from a newer version still reads
    spec_hash: str
    toplevel: str  # the system closure's store path
    kernel: str  # what identifies the kernel it was defined with (path, digest)
    protect: bool = False  # remembered so a guest removed from the manifest stays protected
    image: str = ""  # a disk guest's base image (the store path its overlay is backed by)


def domain_name(lab: str, guest: str) -> str:
    return f"{lab}-{guest}"


def _identity(lab: str, guest: str) -> str:
    # JSON keeps ("a-b", "c") and ("a", "b-c") apart, unlike the domain name.
    return json.dumps([lab, guest])


def domain_uuid(lab: str, guest: str) -> str:
    """Stable across runs and machines, so a redefinition keeps the domain's UUID."""
    return str(uuid.uuid5(_UUID_NAMESPACE, _identity(lab, guest)))


def mac_address(lab: str, guest: str) -> str:
    """52:54:00 (QEMU's locally administered, unicast prefix) plus 24 bits of a hash.

    24 bits collide with ~3% probability among 1000 guests on one network: the manifest's
    explicit `mac` is the way out.
    """
    digest = hashlib.sha256(("mac:" + _identity(lab, guest)).encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])
