"""LibvirtHypervisor against libvirt's `test:///default` driver: real libvirt, no daemon.

The test driver accepts our whole domain XML (virtiofs, memfd backing, seclabel, a network
NIC) and keeps persistent and live definitions apart, but boots nothing: shutdown is
immediate and instant. Its state is shared by every connection in this process, so each
test uses unique names and removes what it made.
"""

from __future__ import annotations

import marshal
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import libvirt
import pytest

from reconcile.adapters import libvirt as libvirt_adapter
from reconcile.adapters import parsed_domains
from reconcile.adapters.libvirt import (
    HypervisorError,
    LibvirtHypervisor,
    Pin,
    UnmanagedDomainError,
)
from reconcile.core.desired import Accel, GuestMode
from reconcile.core.errors import ProbeError, ReconcileError
from reconcile.core.guests.domain_xml import DomainFacts, DomainSpec
from reconcile.core.guests.identity import MARK_NAMESPACE
from reconcile.core.guests.observed import DomainState
from tests.support.domains import build_domain_spec

URI = "test:///default"


@pytest.fixture
def raw() -> Iterator[Any]:
    """A plain libvirt connection, to set up what reconcile must not touch."""
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.open(URI)
    yield conn
    conn.close()


@pytest.fixture
def hv() -> Iterator[LibvirtHypervisor]:
    with LibvirtHypervisor(URI, poll_s=0.01) as hypervisor:
        yield hypervisor


@pytest.fixture
def lab(raw: Any) -> Iterator[str]:
    """A unique lab name; every domain whose name starts with it is removed afterwards."""
    name = f"t{uuid.uuid4().hex[:8]}"
    yield name
    for dom in raw.listAllDomains(0):
        if dom.name().startswith(name):
            if dom.isActive():
                dom.destroy()
            dom.undefine()


def spec_for(lab: str, guest: str, tmp_path: Path, **overrides: Any) -> DomainSpec:
    args: dict[str, Any] = {
        "lab": lab,
        "guest": guest,
        "mode": GuestMode.IMAGELESS,
        "toplevel": "/nix/store/0000000000000000000000000000000a-demo",
        "accel": Accel.QEMU,
        "memory_mib": 256,
        "vcpus": 1,
        "kernel": Path("/vmlinuz"),
        "initrd": tmp_path / "initrd.gz",
        "cmdline": "root=tmpfs console=ttyS0,115200",
        "modules": Path("/lib/modules"),
        "shares": (),
        "network": "default",  # the test driver has one
        "mac": None,
        "serial_log": tmp_path / "guests" / guest / "serial.log",
    }
    args.update(overrides)
    return build_domain_spec(**args)


def define_raw(raw: Any, name: str, metadata: str = "") -> None:
    raw.defineXML(
        f"<domain type='test'><name>{name}</name>{metadata}<memory unit='MiB'>64</memory>"
        "<os><type>hvm</type></os></domain>"
    )


def test_define_observe_start_shutdown_undefine(
    hv: LibvirtHypervisor, lab: str, tmp_path: Path
) -> None:
    spec = spec_for(lab, "a", tmp_path)
    hv.define(spec)
    assert spec.serial_log.parent.is_dir()  # libvirt would not create it

    observed = hv.observe()
    assert observed.error is None and observed.domains is not None
    dom = observed.domains[spec.name]
    assert (dom.name, dom.uuid, dom.state, dom.live) == (
        spec.name,
        spec.uuid,
        DomainState.SHUTOFF,
        None,
    )
    assert dom.config == DomainFacts.from_spec(spec)
    assert observed.domains is not None and spec.name not in observed.unknown
    assert observed.domains[spec.name].mark is not None

    hv.start(spec.name)
    hv.start(spec.name)  # already running: nothing to do
    running = hv.probe(spec.name)
    assert running is not None and running.state is DomainState.RUNNING
    assert running.live == DomainFacts.from_spec(spec)

    with pytest.raises(HypervisorError, match="running"):
        hv.undefine(spec.name)

    assert hv.shutdown(spec.name, timeout_s=5) is True
    stopped = hv.probe(spec.name)
    assert stopped is not None and stopped.state is DomainState.SHUTOFF
    assert hv.shutdown(spec.name, timeout_s=5) is True  # already off

    hv.undefine(spec.name)
    assert hv.probe(spec.name) is None
    after = hv.observe().domains
    assert after is not None and spec.name not in after


def test_shutdown_that_times_out_destroys(hv: LibvirtHypervisor, lab: str, tmp_path: Path) -> None:
    spec = spec_for(lab, "a", tmp_path)
    hv.define(spec)
    hv.start(spec.name)
    assert hv.shutdown(spec.name, timeout_s=0) is False
    dom = hv.probe(spec.name)
    assert dom is not None and dom.state is DomainState.SHUTOFF


def test_redefine_keeps_uuid_and_changes_only_the_persistent_definition(
    hv: LibvirtHypervisor, lab: str, tmp_path: Path
) -> None:
    spec = spec_for(lab, "a", tmp_path)
    hv.define(spec)
    hv.start(spec.name)
    bigger = spec_for(lab, "a", tmp_path, memory_mib=512)
    hv.define(bigger)
    dom = hv.probe(spec.name)
    assert dom is not None and dom.uuid == spec.uuid
    assert dom.config == DomainFacts.from_spec(bigger)
    assert dom.live == DomainFacts.from_spec(spec)  # a restart is pending
    hv.destroy(spec.name)
    hv.destroy(spec.name)  # already stopped: nothing to do
    dom = hv.probe(spec.name)
    assert dom is not None and dom.state is DomainState.SHUTOFF and dom.live is None


def test_unmarked_domain_is_never_touched(
    hv: LibvirtHypervisor, raw: Any, lab: str, tmp_path: Path
) -> None:
    name = f"{lab}-a"  # exactly the name a desired guest would get
    define_raw(raw, name)
    raw.lookupByName(name).create()

    observed = hv.observe()
    assert observed.domains is not None
    assert observed.domains[name].mark is None

    for act in (
        lambda: hv.define(spec_for(lab, "a", tmp_path)),
        lambda: hv.start(name),
        lambda: hv.shutdown(name, timeout_s=1),
        lambda: hv.destroy(name),
        lambda: hv.undefine(name),
    ):
        with pytest.raises(UnmanagedDomainError, match="no reconcile mark"):
            act()

    still = raw.lookupByName(name)
    assert still.isActive() and still.isPersistent()
    assert "urn:reconcile" not in still.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)


def test_a_domain_marked_for_another_guest_is_not_redefined(
    hv: LibvirtHypervisor, lab: str, tmp_path: Path
) -> None:
    # ("<lab>-x", "y") and ("<lab>", "x-y") both name the domain "<lab>-x-y".
    hv.define(spec_for(f"{lab}-x", "y", tmp_path))
    with pytest.raises(UnmanagedDomainError, match="belongs to lab"):
        hv.define(spec_for(lab, "x-y", tmp_path))


def test_malformed_mark_is_unknown_and_refused(hv: LibvirtHypervisor, raw: Any, lab: str) -> None:
    name = f"{lab}-broken"
    metadata = (
        f"<metadata><r:domain xmlns:r='{MARK_NAMESPACE}'><r:lab>{lab}</r:lab></r:domain></metadata>"
    )
    define_raw(raw, name, metadata)
    observed = hv.observe()
    assert observed.domains is not None and name not in observed.domains
    assert "malformed reconcile mark" in observed.unknown[name]
    with pytest.raises(ProbeError):
        hv.probe(name)
    with pytest.raises(ProbeError, match="malformed"):
        hv.destroy(name)


def test_missing_domain(hv: LibvirtHypervisor, lab: str) -> None:
    assert hv.probe(f"{lab}-nobody") is None
    with pytest.raises(HypervisorError, match="no such domain") as caught:
        hv.start(f"{lab}-nobody")
    assert caught.value.code == libvirt.VIR_ERR_NO_DOMAIN


PIN = Pin(
    host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHVhmTUhVpvXYpbmqi7rMc9QIr4ldbyGFPIWu5SnU6RB"
)


@pytest.mark.parametrize(
    ("uri", "pin", "hint"),
    [
        ("bogus:///nowhere", None, "check the hypervisor's uri"),
        # Port 1 on loopback: nothing listens, so the SSH port check is refused at once.
        ("qemu+ssh://root@127.0.0.1:1/system", PIN, "its SSH port 1 open"),
        ("qemu:///system?socket=/nonexistent/libvirt-sock", None, "no query parameters"),
        ("qemu+ssh://root@127.0.0.1:1/system", None, "add host_key"),
        ("qemu+ext:///system?command=/bin/true", None, "check the hypervisor's uri"),
    ],
    ids=["no-driver", "no-daemon", "query-refused", "unpinned-ssh", "ext-transport"],
)
def test_unreachable_hypervisor_is_an_observation_error(
    uri: str, pin: Pin | None, hint: str, tmp_path: Path
) -> None:
    with LibvirtHypervisor(uri, pin=pin) as hv:
        observed = hv.observe()
        assert observed.domains is None
        assert observed.error is not None and hint in observed.error
        with pytest.raises(ProbeError) as probe_error:
            hv.probe("anything")
        assert probe_error.value.hint is not None and hint in probe_error.value.hint
        with pytest.raises(HypervisorError) as define_error:
            hv.define(spec_for("t", "a", tmp_path))
        assert isinstance(define_error.value, ReconcileError)
        assert define_error.value.hint is not None and hint in define_error.value.hint


def test_connection_is_lazy_and_reopens_after_close(lab: str, tmp_path: Path) -> None:
    hv = LibvirtHypervisor("bogus:///never-opened")
    hv.close()  # nothing was opened: nothing to do
    with LibvirtHypervisor(URI) as real:
        spec = spec_for(lab, "a", tmp_path)
        real.define(spec)
        real.close()
        assert real.probe(spec.name) is not None


def test_observed_state_mapping(hv: LibvirtHypervisor, raw: Any, lab: str, tmp_path: Path) -> None:
    spec = spec_for(lab, "a", tmp_path)
    hv.define(spec)
    hv.start(spec.name)
    raw.lookupByName(spec.name).suspend()
    paused = hv.probe(spec.name)
    assert paused is not None and paused.state is DomainState.PAUSED
    assert paused.state.active and paused.live is not None
    hv.destroy(spec.name)


def test_spec_changes_are_visible_to_a_diff(
    hv: LibvirtHypervisor, lab: str, tmp_path: Path
) -> None:
    spec = spec_for(lab, "a", tmp_path)
    hv.define(spec)
    dom = hv.probe(spec.name)
    assert dom is not None and dom.mark == spec.mark
    changed = replace(spec, definition=replace(spec.definition, vcpus=2))
    assert dom.config != DomainFacts.from_spec(changed)


def test_a_transient_domain_is_observed_and_defining_it_makes_it_persistent(
    hv: LibvirtHypervisor, raw: Any, lab: str, tmp_path: Path
) -> None:
    spec = spec_for(lab, "a", tmp_path)
    hv.define(spec)
    hv.start(spec.name)
    observed = hv.observe().domains
    assert observed is not None and observed[spec.name].persistent
    raw.lookupByName(spec.name).undefine()  # `virsh undefine` of the running domain
    observed = hv.observe().domains
    assert observed is not None
    transient = observed[spec.name]
    assert not transient.persistent and transient.state is DomainState.RUNNING
    assert transient.mark is not None  # what it has is read: its running definition
    probed = hv.probe(spec.name)
    assert probed is not None and not probed.persistent
    hv.define(spec)  # the same spec: persistent again, still running
    again = hv.probe(spec.name)
    assert again is not None and again.persistent and again.state is DomainState.RUNNING


def test_only_domains_with_the_prefix_are_read_the_others_are_listed_by_name(
    hv: LibvirtHypervisor, raw: Any, lab: str, tmp_path: Path
) -> None:
    spec = spec_for(lab, "a", tmp_path)
    hv.define(spec)
    xml = raw.lookupByName(spec.name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    # a copy of the guest's mark under a name without the lab's prefix
    other = f"x{lab}-copy"
    copy = xml.replace(f"<name>{spec.name}</name>", f"<name>{other}</name>")
    copy = copy.replace(f"<uuid>{raw.lookupByName(spec.name).UUIDString()}</uuid>", "")
    raw.defineXML(copy)
    try:
        everything = hv.observe()
        assert everything.domains is not None and other in everything.domains
        assert everything.domains[other].mark is not None
        ours = hv.observe(f"{lab}-")
        assert ours.domains is not None and set(ours.domains) == {spec.name}
        assert other in ours.others and spec.name not in ours.others
    finally:
        raw.lookupByName(other).undefine()


def test_many_domains_read_at_once_are_what_one_reader_finds(
    hv: LibvirtHypervisor, raw: Any, lab: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More domains than readers: the same domains, states, unknowns and order as one.

    The test driver is read by one reader (it runs in this process, where more contend);
    here it is given 8, as a connection to a daemon has, to check what they find."""
    assert hv.readers == 1
    names = [f"g{i:02d}" for i in range(3 * libvirt_adapter.READERS + 1)]
    for guest in names:
        hv.define(spec_for(lab, guest, tmp_path))
    raw.lookupByName(f"{lab}-g03").create()  # one running: its live XML is read too
    broken = f"{lab}-zz-broken"
    define_raw(raw, broken, f"<metadata><r:domain xmlns:r='{MARK_NAMESPACE}'/></metadata>")
    alone = hv.observe(f"{lab}-")
    readers: set[str] = set()
    read = hv._read

    def counted(*args: Any, **kwargs: Any) -> Any:
        readers.add(threading.current_thread().name)
        return read(*args, **kwargs)

    monkeypatch.setattr(hv, "_read", counted)
    monkeypatch.setattr(hv, "readers", libvirt_adapter.READERS)
    together = hv.observe(f"{lab}-")
    assert len(readers) > 1, readers
    assert together.domains is not None and alone.domains is not None
    assert sorted(together.domains) == [f"{lab}-{g}" for g in names]
    assert together == alone and list(together.domains) == list(alone.domains)  # in list order
    assert together.domains[f"{lab}-g03"].state is DomainState.RUNNING
    assert together.domains[f"{lab}-g03"].live is not None
    assert set(together.unknown) == {broken}


def test_domain_xml_parsed_before_is_not_parsed_again_and_any_change_is(
    raw: Any, lab: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The memo of parsed XML: the same bytes give the same facts unparsed; a change made
    out of band is new bytes, parsed; what cannot be parsed is refused every time."""
    memo = tmp_path / "parsed" / "test"
    with LibvirtHypervisor(URI, parsed=memo) as hv:
        for guest in ("a", "b"):
            hv.define(spec_for(lab, guest, tmp_path))
        broken = f"{lab}-broken"
        define_raw(raw, broken, f"<metadata><r:domain xmlns:r='{MARK_NAMESPACE}'/></metadata>")
        first = hv.observe(f"{lab}-")
        assert memo.is_file() and oct(memo.stat().st_mode & 0o777) == "0o600"
    parsed: list[str] = []
    parse = parsed_domains.parse_domain_xml

    def counted(xml: str) -> DomainFacts:
        parsed.append(xml)
        return parse(xml)

    monkeypatch.setattr(parsed_domains, "parse_domain_xml", counted)
    with LibvirtHypervisor(URI, parsed=memo) as hv:  # a new process would start like this
        again = hv.observe(f"{lab}-")
        assert again == first and set(again.unknown) == {broken}
        assert len(parsed) == 1 and f"<name>{broken}</name>" in parsed[0]  # refused again
        raw.lookupByName(f"{lab}-b").setMaxMemory(128 * 1024)  # out of band: new bytes
        parsed.clear()
        changed = hv.observe(f"{lab}-")
        assert changed.domains is not None
        assert changed.domains[f"{lab}-b"].config.memory_kib == 128 * 1024
        assert len(parsed) == 2  # b, and the broken one
        raw.lookupByName(f"{lab}-a").undefine()
        hv.observe(f"{lab}-")
    kept = marshal.loads(memo.read_bytes())[2]
    assert len(kept) == 1  # b's new XML: a is gone, and b's old bytes are not seen any more


@pytest.mark.parametrize(
    "content",
    [b"", b"not marshal", marshal.dumps(("another/1", "x", {})), marshal.dumps([1, 2, 3])],
)
def test_a_memo_of_another_format_or_code_is_not_used(
    raw: Any, lab: str, tmp_path: Path, content: bytes
) -> None:
    memo = tmp_path / "memo"
    with LibvirtHypervisor(URI, parsed=memo) as hv:
        hv.define(spec_for(lab, "a", tmp_path))
        want = hv.observe(f"{lab}-")
        old = marshal.loads(memo.read_bytes())
        memo.write_bytes(content)
        assert hv.observe(f"{lab}-") == want
    for stale in [
        (old[0], "another core", {k: (*v[:3], 1, *v[4:]) for k, v in old[2].items()}),
        (*old[:2], {k: ("not", "facts") for k in old[2]}),  # this code's, but no facts
    ]:
        memo.write_bytes(marshal.dumps(stale))
        with LibvirtHypervisor(URI, parsed=memo) as hv:
            assert hv.observe(f"{lab}-") == want
    assert marshal.loads(memo.read_bytes())[1] == old[1]  # rewritten under this code
