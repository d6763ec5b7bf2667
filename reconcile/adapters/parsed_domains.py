"""Domain XML already parsed, by the sha256 of the XML: a memo of parse_domain_xml.

Parsing is most of this process's share of observing unchanged domains (ElementTree, about
70 us a domain; 1000 of them are 70 ms of a no-op plan), and libvirt gives the same bytes
for a domain nobody changed. Each hypervisor's facts are kept in one file of the lab's
state directory (StateLayout.parsed_domains) as plain values in `marshal` format, under
the core's code (core_digest: a change to any module of the core is a miss). The XML is the
whole key, so a change made out of band (`virsh setmaxmem`, `virsh edit`) is a miss and is
parsed: the memo can only be used for the same bytes, never to skip reading them.

Only the entries of the last observation are kept. What could not be parsed (unreadable
XML, a malformed mark) is never kept: it is parsed, and refused, again. A file that cannot
be read, or holds anything else, is a miss; one that cannot be written costs a parse next
time.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import threading
from pathlib import Path

from reconcile.adapters.core_digest import core_digest
from reconcile.core.guests.domain_xml import (
    DomainFacts,
    PlainFacts,
    facts_from_plain,
    facts_to_plain,
    parse_domain_xml,
)

FORMAT = "reconcile-parsed-domains/1"


class ParsedDomains:
    """One hypervisor's memo, loaded on first use; thread-safe (domains are read at once)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._known: dict[str, PlainFacts] | None = None
        self._seen: dict[str, PlainFacts] = {}
        self._parsed = 0  # parsed in this observation (not found in the memo)

    def parse(self, xml: str) -> DomainFacts:
        """parse_domain_xml(xml), from the memo when these bytes were parsed before."""
        key = hashlib.sha256(xml.encode()).hexdigest()
        plain = self._load().get(key)
        if plain is not None:
            try:
                facts = facts_from_plain(plain)
            except (TypeError, ValueError):
                plain = None
        if plain is None:
            facts = parse_domain_xml(xml)  # ProbeError passes through: nothing is kept
            plain = facts_to_plain(facts)
            with self._lock:
                self._parsed += 1
        with self._lock:
            self._seen[key] = plain
        return facts

    def save(self) -> None:
        """Keep what this observation saw (only if it differs from what was kept), and
        start the next observation afresh."""
        with self._lock:
            seen, parsed = self._seen, self._parsed
            known = self._known or {}
            self._known, self._seen, self._parsed = seen, {}, 0
        if not parsed and seen.keys() == known.keys():
            return
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Readable by its owner only, as libvirt keeps domain configs: a domain's
            # command line and QEMU arguments are in it.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(marshal.dumps((FORMAT, core_digest(), seen)))
            tmp.replace(self.path)  # whole or not at all: a reader never sees half a file
        except (OSError, ValueError):
            tmp.unlink(missing_ok=True)

    def _load(self) -> dict[str, PlainFacts]:
        with self._lock:
            if self._known is None:
                self._known = _read(self.path)
            return self._known


def _read(path: Path) -> dict[str, PlainFacts]:
    try:
        # A file of the lab's own state directory, which only its owner writes; loading
        # it makes values and runs nothing, and anything but this shape is refused.
        found = marshal.loads(path.read_bytes())  # noqa: S302
    except (OSError, ValueError, EOFError, TypeError):
        return {}
    if (
        not isinstance(found, tuple)
        or len(found) != 3
        or found[:2] != (FORMAT, core_digest())
        or not isinstance(found[2], dict)
    ):
        return {}
    return found[2]
