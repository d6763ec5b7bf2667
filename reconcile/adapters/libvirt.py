"""libvirt behind one class; the only module that imports libvirt-python.

Facts this code relies on (libvirt 9.0 / QEMU 7.2 on Debian 12, checked on the test machine):
- Only VIR_ERR_NO_DOMAIN means absent. Errors from the RPC layer mean the connection is
  gone: the whole hypervisor is unknown, not just one domain.
- A handle from listAllDomains carries the domain's id (-1 when inactive), so telling
  active from inactive costs no round trip; only active domains pay for state() and the
  live XMLDesc.
- `virsh undefine` of a running domain leaves it running but transient: it has no inactive
  XML (XMLDesc with VIR_DOMAIN_XML_INACTIVE returns its running definition), isPersistent()
  is 0 and it is listed by listAllDomains(VIR_CONNECT_LIST_DOMAINS_TRANSIENT). defineXML
  with the same name and UUID makes it persistent again while it runs (same id, no
  restart). isPersistent() is a round trip (not cached in the handle), so observe asks
  once per hypervisor with the transient list, and only when some domain is active.
- `<serial type='file'>` is opened by virtlogd as root (0600) and truncated at each start,
  so readiness can be read from it; its directory must exist (libvirt does not create it).
- An ACPI shutdown needs `<features><acpi/>` and a guest that acts on the power button; one
  pressed during early boot is lost, so it is pressed again while waiting.
- Domains carry `<seclabel type='none' model='dac'/>` (see core.domain), so QEMU, running as
  libvirt-qemu, opens the kernel and initrd itself: they must be readable by that user.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import libvirt

from reconcile.adapters.parsed_domains import ParsedDomains
from reconcile.core.desired import Hypervisor
from reconcile.core.errors import ProbeError, ReconcileError
from reconcile.core.guests.disk import DiskDefinition
from reconcile.core.guests.disk_xml import DiskDomainSpec, render_disk_xml
from reconcile.core.guests.domain_xml import (
    READY_KEY,
    READY_NAMESPACE,
    DomainFacts,
    DomainSpec,
    parse_domain_xml,
    ready_xml,
    render_domain_xml,
)
from reconcile.core.guests.imageless import GuestDefinition
from reconcile.core.guests.libvirt_uri import HINT as URI_HINT
from reconcile.core.guests.libvirt_uri import (
    SshAuth,
    Transport,
    UriRefused,
    connection_uri,
    parse_uri,
)
from reconcile.core.guests.observed import DomainState, HypervisorObservation, ObservedDomain
from reconcile.logs import get_logger

log = get_logger(__name__)

T = TypeVar("T")

_STATES = {
    libvirt.VIR_DOMAIN_RUNNING: DomainState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: DomainState.RUNNING,  # running, waiting on a resource
    libvirt.VIR_DOMAIN_PAUSED: DomainState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTOFF: DomainState.SHUTOFF,
    libvirt.VIR_DOMAIN_CRASHED: DomainState.CRASHED,
}
_CONNECTION_DOMAINS = frozenset({libvirt.VIR_FROM_RPC, libvirt.VIR_FROM_REMOTE})
_RETRYABLE_CODES = frozenset(
    {libvirt.VIR_ERR_OPERATION_TIMEOUT, libvirt.VIR_ERR_AGENT_UNRESPONSIVE}
)
# Drop whatever libvirt keeps beside the definition, so nothing of the guest lingers. Drivers
# without NVRAM or checkpoints (the test driver) refuse those flags: then the basic set.
_UNDEFINE_BASIC = (
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
)
_UNDEFINE_FULL = (
    _UNDEFINE_BASIC
    | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
    | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
)
_LIBVIRTD_HINT = (
    "is libvirtd running? start it with `libvirtd -d` (and `virtlogd -d`), "
    "then check `virsh -c {uri} list --all`"
)
SHUTDOWN_RESEND_S = 5.0
# A daemon that stops answering (hung, or its host gone) closes the connection after
# interval * count seconds, and every call waiting on it fails: no call hangs for ever.
KEEPALIVE = (5, 6)

_events_lock = threading.Lock()
_events_started = False


def _start_event_loop() -> None:
    """libvirt sends keepalives from an event loop only: one daemon thread per process,
    registered before the first connection opens."""
    global _events_started  # noqa: PLW0603 (libvirt's event loop is process-wide)
    with _events_lock:
        if _events_started:
            return
        libvirt.virEventRegisterDefaultImpl()
        threading.Thread(target=_run_events, name="libvirt-events", daemon=True).start()
        _events_started = True


def _run_events() -> None:
    while True:
        libvirt.virEventRunDefaultImpl()


READERS = 8  # domains whose XML is read at once (see LibvirtHypervisor._read_all)


@dataclass(frozen=True)
class _Lost:
    """Reading a domain found the connection gone."""

    error: ReconcileError


class HypervisorError(ReconcileError):
    """A libvirt call failed; `retryable` for a busy daemon or a timeout."""

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        code: int | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message, hint=hint)
        self.code = code
        self.retryable = retryable


SSH_CONNECT_TIMEOUT_S = 10.0


def _reachable(uri: str) -> None:
    """A qemu+ssh hypervisor's SSH port answers within the timeout. libvirt's own connect
    has none: a host that is down would hold the run for the kernel's SYN retries (~2 min)."""
    target = parse_uri(uri).ssh_target
    try:
        socket.create_connection((target.host, target.port), SSH_CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise HypervisorError(
            f"cannot connect to {uri}: {target.authority} unreachable "
            f"({exc.strerror or str(exc) or 'timed out'})",
            hint=f"is {target.host} up with its SSH port {target.port} open? Its guests are "
            "unknown this run; nothing was changed on it",
        ) from None


class HostKeyError(HypervisorError):
    """The hypervisor's SSH host key is not the pinned one: nothing was sent."""


class UnmanagedDomainError(ReconcileError):
    """No mark, no touch: the domain was not defined by reconcile (or not for this guest)."""


def _is_absent(exc: libvirt.libvirtError) -> bool:
    return bool(exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN)


def _connection_lost(exc: libvirt.libvirtError) -> bool:
    return exc.get_error_domain() in _CONNECTION_DOMAINS


def _message(exc: libvirt.libvirtError) -> str:
    return str(exc.get_error_message() or exc)


def _quiet(_ctx: object, _error: object) -> None:
    """libvirt prints every error to stderr by default; ours are raised and logged instead."""


def _is_local(uri: str) -> bool:
    return not urlsplit(uri).netloc


@dataclass(frozen=True)
class Pin:
    """A qemu+ssh hypervisor's pinned host key (`host_key` or a `known_hosts` file) and the
    key to log in with."""

    host_key: str | None = None
    known_hosts: Path | None = None
    identity: Path | None = None


def _pinned_text(uri: str, pin: Pin | None) -> str:
    """The known_hosts text reconcile hands libvirt for a qemu+ssh URI: the pin only."""
    target = parse_uri(uri).ssh_target
    if pin is not None and pin.host_key is not None:
        return target.known_hosts_line(pin.host_key)
    if pin is None or pin.known_hosts is None:
        connection_uri(uri)  # raises: no pin
        raise AssertionError("unreachable")
    try:
        text = pin.known_hosts.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise HypervisorError(
            f"cannot read known_hosts {pin.known_hosts}: {getattr(exc, 'strerror', exc)}",
            hint="check the hypervisor's known_hosts in the manifest",
        ) from None
    lines = target.pinned_lines(text)
    if not lines:
        keyscan = " ".join(("ssh-keyscan", *target.port_args, target.host))
        raise HypervisorError(
            f"{pin.known_hosts} pins no key for {target.host} (port {target.port}): "
            "refusing to connect",
            hint=f"add its key: {keyscan} >> {pin.known_hosts} (and check it), or set host_key",
        )
    return lines


class LibvirtHypervisor:
    """One hypervisor URI. The connection opens on first use; `close()` ends it.

    Only URIs that `core.libvirt_uri` allows are opened (the manifest refuses the others
    too); a qemu+ssh URI is opened over libssh2 trusting the pinned key only.
    Safe to share between threads: libvirt connections are, and opening is locked.
    """

    def __init__(
        self,
        uri: str,
        *,
        poll_s: float = 0.25,
        keepalive: tuple[int, int] = KEEPALIVE,
        pin: Pin | None = None,
        parsed: Path | None = None,
    ) -> None:
        """`parsed` keeps the facts of domain XML already parsed (adapters/parsed_domains.py)."""
        self.uri = uri
        self._memo = ParsedDomains(parsed) if parsed is not None else None
        self._pin = pin
        self._poll_s = poll_s
        self._keepalive = keepalive
        self._conn: Any = None
        self._lock = threading.Lock()
        # Domains read at once (_read_all). libvirt's test driver runs inside this process:
        # there readers only contend (0.212 -> 0.268 ms a guest from 1000 to 10,000
        # domains, bench/slope.py), so it is read by one.
        self.readers = 1 if uri.startswith("test:") else READERS

    # --- connection -----------------------------------------------------------------

    def _connection(self) -> Any:
        with self._lock:
            if self._conn is None:
                libvirt.registerErrorHandler(_quiet, None)
                _start_event_loop()
                try:
                    conn = self._open()
                except libvirt.libvirtError as exc:
                    raise self._error(exc, "connect to") from None
                interval, count = self._keepalive
                try:
                    conn.setKeepAlive(interval, count)
                except libvirt.libvirtError as exc:  # drivers without a daemon have none
                    log.debug("no keepalive", uri=self.uri, error=_message(exc))
                self._conn = conn
            return self._conn

    def _open(self) -> Any:
        """libvirt.open on the URI reconcile allows, as core.libvirt_uri translates it."""
        try:
            remote_ssh = parse_uri(self.uri).transport is Transport.SSH
            if not remote_ssh:
                return self._call("open", libvirt.open, connection_uri(self.uri))
            text = _pinned_text(self.uri, self._pin)
        except UriRefused as refused:
            raise HypervisorError(
                f"refusing to connect to {self.uri}: {refused.message}",
                hint=f"check the hypervisor's uri in the manifest: {refused.hint}"
                if refused.hint == URI_HINT
                else refused.hint,
            ) from None
        _reachable(self.uri)
        # The pinned keys go to a private file that lives only while libvirt opens: it reads
        # known_hosts during the handshake, and a plan leaves nothing behind.
        directory = Path(tempfile.mkdtemp(prefix="reconcile-libvirt-"))
        try:
            known_hosts = directory / "known_hosts"
            known_hosts.write_text(text)
            identity = self._pin.identity if self._pin is not None else None
            uri = connection_uri(
                self.uri,
                SshAuth(
                    PurePosixPath(known_hosts),
                    PurePosixPath(identity) if identity is not None else None,
                ),
            )
            return self._call("open", libvirt.open, uri)
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except libvirt.libvirtError as exc:
                log.debug("libvirt close failed", uri=self.uri, error=_message(exc))

    def __enter__(self) -> LibvirtHypervisor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, call: str, fn: Callable[..., T], *args: object, domain: str = "") -> T:
        started = time.monotonic()
        try:
            return fn(*args)
        finally:
            seconds = round(time.monotonic() - started, 6)
            log.debug("libvirt", call=call, uri=self.uri, domain=domain, seconds=seconds)

    def _error(
        self,
        exc: libvirt.libvirtError,
        action: str,
        name: str = "",
        kind: type[ReconcileError] = HypervisorError,
    ) -> ReconcileError:
        """A reconcile error for a failed call; forgets a connection that is gone."""
        subject = f"domain {name!r} on {self.uri}" if name else self.uri
        message = f"cannot {action} {subject}: {_message(exc)}"
        code = exc.get_error_code()
        hint: str | None = None
        if "HOST KEY VERIFICATION FAILED" in message or "verify the session host key" in message:
            self._forget()
            message = f"{message} (the pinned host key does not match: refusing to connect)"
            hint = (
                "if the key really changed, pin the new one (from `ssh-keyscan HOST`) in the "
                "hypervisor's host_key or known_hosts"
            )
            if kind is HypervisorError:
                return HostKeyError(message, hint=hint, code=code)
            return kind(message, hint=hint)
        if code == libvirt.VIR_ERR_NO_CONNECT:
            self._forget()
            hint = "no libvirt driver for this URI: check the hypervisor's uri in the manifest"
        elif _connection_lost(exc):
            self._forget()
            hint = _LIBVIRTD_HINT.format(uri=self.uri)
        elif "Permission denied" in message and action == "start":
            # <seclabel type='none'>: libvirt does not chown the kernel and initrd for QEMU.
            hint = (
                "QEMU runs as its own user (libvirt-qemu on Debian) and opens the kernel and "
                "initrd itself: they and every directory above them must be readable by it"
            )
        elif name and self.uri.startswith("qemu") and _is_local(self.uri):
            hint = f"QEMU's own log: /var/log/libvirt/qemu/{name}.log"
        if kind is HypervisorError:
            retryable = code in _RETRYABLE_CODES or _connection_lost(exc)
            return HypervisorError(message, hint=hint, code=code, retryable=retryable)
        return kind(message, hint=hint)

    def _forget(self) -> None:
        # Called with or without the lock held elsewhere: a plain swap is enough.
        self._conn = None

    @contextmanager
    def _errors(
        self, action: str, name: str = "", kind: type[ReconcileError] = HypervisorError
    ) -> Iterator[None]:
        try:
            yield
        except libvirt.libvirtError as exc:
            raise self._error(exc, action, name, kind) from None

    # --- observing ------------------------------------------------------------------

    def _read(
        self,
        dom: Any,
        name: str,
        persistent: bool | None = None,
        active: bool | None = None,
    ) -> ObservedDomain:
        """One listed domain; libvirtError and ProbeError pass through to the caller.

        `persistent` None asks libvirt (a round trip, only for an active domain: an
        inactive one is always persistent); `active` None reads the handle's id.
        """
        parse = parse_domain_xml if self._memo is None else self._memo.parse
        config = parse(
            self._call("XMLDesc", dom.XMLDesc, libvirt.VIR_DOMAIN_XML_INACTIVE, domain=name)
        )
        state, live = DomainState.SHUTOFF, None
        if active is None:
            active = dom.ID() != -1  # cached in the handle: no round trip
        if active:
            raw_state = self._call("state", dom.state, domain=name)[0]
            state = _STATES.get(raw_state, DomainState.OTHER)
            if state.active:
                live = parse(self._call("XMLDesc", dom.XMLDesc, 0, domain=name))
            if persistent is None:
                persistent = bool(self._call("isPersistent", dom.isPersistent, domain=name))
        persistent = True if persistent is None else persistent
        return ObservedDomain(name, str(dom.UUIDString()), state, config, live, persistent)

    def _read_all(
        self, handles: list[Any], transient: set[str], active: set[str]
    ) -> list[tuple[str, ObservedDomain | str | _Lost | None]]:
        """Each handle read: its domain, why it is unknown, None if it vanished meanwhile,
        or _Lost if the connection went (then every domain not yet read is unknown too).

        Several at once over the one connection to a daemon: libvirtd formats one domain's
        XML while this process parses another's. 1000 domains took 300-390 ms one at a time and
        205-217 ms 8 at a time on this project's 2-core machine (docs/performance.md).
        """

        def one(dom: Any) -> tuple[str, ObservedDomain | str | _Lost | None]:
            name = str(dom.name())
            try:
                return name, self._read(
                    dom, name, persistent=name not in transient, active=name in active
                )
            except ProbeError as exc:
                return name, exc.message
            except libvirt.libvirtError as exc:
                if _is_absent(exc):
                    return name, None
                error = self._error(exc, "read", name)
                return name, _Lost(error) if _connection_lost(exc) else error.message

        def run(part: list[Any]) -> list[tuple[str, ObservedDomain | str | _Lost | None]]:
            return [one(dom) for dom in part]

        readers = self.readers
        if len(handles) <= readers:
            return run(handles)
        read: list[tuple[str, ObservedDomain | str | _Lost | None]] = [("", None)] * len(handles)
        with ThreadPoolExecutor(max_workers=readers, thread_name_prefix="libvirt-read") as pool:
            parts = pool.map(run, [handles[i::readers] for i in range(readers)])
            for i, part in enumerate(parts):
                read[i::readers] = part  # in the order listed, as one reader would give them
        return read

    def observe(self, prefix: str = "") -> HypervisorObservation:
        """Every domain on the hypervisor, with one list call; never raises for libvirt.

        Only domains whose name starts with `prefix` are read; the others are listed by
        name in `others` (a no-op plan does not pay for the XML of domains that cannot be
        its own). A domain that vanishes while being read is skipped (it is absent now).
        One that cannot be read otherwise is reported in `unknown`; a lost connection makes
        the whole observation an error, because every domain not yet read is unknown too.
        """
        started = time.monotonic()
        try:
            conn = self._connection()
            listed_all = self._call("listAllDomains", conn.listAllDomains, 0)
            handles: list[Any] = []
            others: list[str] = []
            for dom in listed_all:
                name = str(dom.name())  # cached in the handle: no round trip
                if name.startswith(prefix):
                    handles.append(dom)
                else:
                    others.append(name)
            # The running ones in one more list: asking each handle for its id costs ~10 us
            # a domain (libvirt-python lets the event loop's thread run), 10 ms for 1000.
            listed = self._call(
                "listAllDomains", conn.listAllDomains, libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE
            )
            active = {name for dom in listed if (name := str(dom.name())).startswith(prefix)}
            transient: set[str] = set()
            if active:  # only an active domain can be transient
                listed = self._call(
                    "listAllDomains",
                    conn.listAllDomains,
                    libvirt.VIR_CONNECT_LIST_DOMAINS_TRANSIENT,
                )
                transient = {str(dom.name()) for dom in listed}
        except HypervisorError as exc:
            return HypervisorObservation(self.uri, None, error=_with_hint(exc))
        except libvirt.libvirtError as exc:
            return HypervisorObservation(self.uri, None, error=_with_hint(self._error(exc, "list")))
        domains: dict[str, ObservedDomain] = {}
        unknown: dict[str, str] = {}
        for name, seen in self._read_all(handles, transient, active):
            if isinstance(seen, ObservedDomain):
                domains[name] = seen
            elif isinstance(seen, _Lost):
                return HypervisorObservation(self.uri, None, error=_with_hint(seen.error))
            elif seen is not None:
                unknown[name] = seen
        if self._memo is not None:
            self._memo.save()
        log.debug(
            "observed",
            uri=self.uri,
            domains=len(domains),
            unknown=len(unknown),
            seconds=round(time.monotonic() - started, 4),
        )
        return HypervisorObservation(self.uri, domains, None, unknown, tuple(others))

    def probe(self, name: str) -> ObservedDomain | None:
        """The domain now, for a re-check before acting; None only when it does not exist."""
        conn = self._probe_connection()
        try:
            dom = self._call("lookupByName", conn.lookupByName, name, domain=name)
            return self._read(dom, name)
        except libvirt.libvirtError as exc:
            if _is_absent(exc):
                return None
            raise self._error(exc, "read", name, ProbeError) from None

    def _probe_connection(self) -> Any:
        try:
            return self._connection()
        except HypervisorError as exc:
            raise ProbeError(exc.message, hint=exc.hint) from None

    # --- acting: every method checks the mark first ---------------------------------

    def _lookup(self, name: str) -> Any | None:
        conn = self._connection()
        try:
            return self._call("lookupByName", conn.lookupByName, name, domain=name)
        except libvirt.libvirtError as exc:
            if _is_absent(exc):
                return None
            raise self._error(exc, "look up", name) from None

    def _facts(self, dom: Any, name: str) -> DomainFacts:
        with self._errors("read", name):
            xml = self._call("XMLDesc", dom.XMLDesc, libvirt.VIR_DOMAIN_XML_INACTIVE, domain=name)
        return parse_domain_xml(xml)

    def _owned(self, name: str, action: str) -> Any:
        """The domain's handle, after checking it carries our mark (re-read, not cached)."""
        dom = self._lookup(name)
        if dom is None:
            raise HypervisorError(
                f"cannot {action} domain {name!r} on {self.uri}: no such domain",
                code=libvirt.VIR_ERR_NO_DOMAIN,
            )
        if self._facts(dom, name).mark is None:
            raise _refusal(action, name, self.uri)
        return dom

    def _is_active(self, dom: Any, name: str) -> bool:
        try:
            return bool(self._call("isActive", dom.isActive, domain=name))
        except libvirt.libvirtError as exc:
            if _is_absent(exc):
                return False
            raise self._error(exc, "read", name) from None

    def define(self, spec: DomainSpec | DiskDomainSpec) -> None:
        """Define (or redefine) the domain; the deterministic UUID keeps libvirt's identity.

        An existing domain of that name must carry our mark for the same lab and guest.
        """
        existing = self._lookup(spec.name)
        if existing is not None:
            mark = self._facts(existing, spec.name).mark
            if mark is None:
                raise _refusal("redefine", spec.name, self.uri)
            if (mark.lab, mark.name) != (spec.mark.lab, spec.mark.name):
                raise UnmanagedDomainError(
                    f"refusing to redefine domain {spec.name!r} on {self.uri}: it belongs to "
                    f"lab {mark.lab!r}, guest {mark.name!r}",
                    hint="two lab/guest pairs give the same domain name: rename one",
                )
        if _is_local(self.uri):
            # virtlogd opens the serial log but will not create its directory.
            spec.serial_log.parent.mkdir(parents=True, exist_ok=True)
        conn = self._connection()
        with self._errors("define", spec.name):
            xml = (
                render_disk_xml(spec)
                if isinstance(spec, DiskDomainSpec)
                else render_domain_xml(spec)
            )
            self._call("defineXML", conn.defineXML, xml, domain=spec.name)
        log.info("defined", uri=self.uri, domain=spec.name, spec_hash=spec.mark.spec_hash)

    def start(self, name: str) -> None:
        """Start the domain; already running is fine."""
        dom = self._owned(name, "start")
        if self._is_active(dom, name):
            log.debug("already running", uri=self.uri, domain=name)
            return
        with self._errors("start", name):
            self._call("create", dom.create, domain=name)
        log.info("started", uri=self.uri, domain=name)

    def mark_ready(self, name: str, toplevel: str) -> None:
        """Record on the running definition only that this boot reached readiness."""
        dom = self._owned(name, "mark ready")
        with self._errors("mark ready", name):
            self._call(
                "setMetadata",
                dom.setMetadata,
                libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                ready_xml(toplevel),
                READY_KEY,
                READY_NAMESPACE,
                libvirt.VIR_DOMAIN_AFFECT_LIVE,
                domain=name,
            )

    def shutdown(self, name: str, timeout_s: float) -> bool:
        """ACPI shutdown, then destroy after `timeout_s`. True when the guest stopped itself."""
        dom = self._owned(name, "shut down")
        deadline = time.monotonic() + timeout_s
        next_press = 0.0
        while self._is_active(dom, name):
            now = time.monotonic()
            if now >= deadline:
                log.warning("shutdown timed out, destroying", domain=name, timeout_s=timeout_s)
                self._destroy(dom, name)
                return False
            if now >= next_press:
                self._press_power_button(dom, name)
                next_press = now + SHUTDOWN_RESEND_S
            time.sleep(self._poll_s)
        log.info("shut down", uri=self.uri, domain=name)
        return True

    def _press_power_button(self, dom: Any, name: str) -> None:
        # Default flags: QEMU then presses the ACPI power button, since our XML has no guest
        # agent channel (the test driver refuses the explicit ACPI flag).
        try:
            self._call("shutdown", dom.shutdown, domain=name)
        except libvirt.libvirtError as exc:
            # It may have stopped since the last check; anything else is a real failure.
            if self._is_active(dom, name):
                raise self._error(exc, "shut down", name) from None

    def destroy(self, name: str) -> None:
        """Stop the domain at once (its definition stays); already stopped is fine."""
        dom = self._owned(name, "destroy")
        if not self._is_active(dom, name):
            log.debug("already stopped", uri=self.uri, domain=name)
            return
        self._destroy(dom, name)

    def _destroy(self, dom: Any, name: str) -> None:
        try:
            self._call("destroy", dom.destroy, domain=name)
        except libvirt.libvirtError as exc:
            if self._is_active(dom, name):
                raise self._error(exc, "destroy", name) from None
        log.info("destroyed", uri=self.uri, domain=name)

    def console(self, definition: GuestDefinition | DiskDefinition) -> Path:
        """The domain XML sends the serial console to the definition's log file."""
        return definition.serial_log

    def resize_disk(self, name: str, target: str, size_bytes: int) -> None:
        """Grow a running domain's disk (QEMU's block_resize); the guest sees it at once."""
        dom = self._owned(name, "resize a disk of")
        with self._errors("resize a disk of", name):
            self._call(
                "blockResize",
                dom.blockResize,
                target,
                size_bytes,
                libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES,
                domain=name,
            )
        log.info("resized", uri=self.uri, domain=name, disk=target, bytes=size_bytes)

    def leases(self, network: str) -> dict[str, str]:
        """MAC -> IPv4 address of the DHCP leases of a libvirt network (read-only)."""
        conn = self._connection()
        with self._errors("read the leases of network", network):
            net = self._call("networkLookupByName", conn.networkLookupByName, network)
            found = self._call("DHCPLeases", net.DHCPLeases)
        return {
            lease["mac"].lower(): lease["ipaddr"]
            for lease in found
            if lease.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV4 and lease.get("mac")
        }

    def undefine(self, name: str) -> None:
        """Remove the definition. A running domain is refused: it would linger as transient."""
        dom = self._owned(name, "undefine")
        if self._is_active(dom, name):
            raise HypervisorError(
                f"cannot undefine domain {name!r} on {self.uri}: it is running",
                hint="shut it down or destroy it first",
            )
        with self._errors("undefine", name):
            try:
                self._call("undefineFlags", dom.undefineFlags, _UNDEFINE_FULL, domain=name)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_INVALID_ARG:
                    raise
                self._call("undefineFlags", dom.undefineFlags, _UNDEFINE_BASIC, domain=name)
        log.info("undefined", uri=self.uri, domain=name)


def for_hypervisor(hypervisor: Hypervisor, parsed: Path | None = None) -> LibvirtHypervisor:
    """The manifest's hypervisor, with its pin (qemu+ssh); `parsed` as LibvirtHypervisor's."""
    pin = Pin(hypervisor.host_key, hypervisor.known_hosts, hypervisor.identity)
    return LibvirtHypervisor(hypervisor.uri, pin=pin, parsed=parsed)


def _refusal(action: str, name: str, uri: str) -> UnmanagedDomainError:
    return UnmanagedDomainError(
        f"refusing to {action} domain {name!r} on {uri}: it carries no reconcile mark",
        hint="reconcile never changes domains it did not define; rename or remove it yourself",
    )


def _with_hint(error: ReconcileError) -> str:
    return f"{error.message} (hint: {error.hint})" if error.hint else error.message
