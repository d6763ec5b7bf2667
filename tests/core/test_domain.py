"""The domain XML as a value: rendering, parsing libvirt's rewrite of it, identity, hashing."""

from __future__ import annotations

import marshal
import re
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest

from reconcile.core.desired import Accel, GuestMode, Share
from reconcile.core.errors import ProbeError
from reconcile.core.guests.domain_xml import (
    DiskFacts,
    DomainFacts,
    DomainSpec,
    NicFacts,
    ShareFacts,
    facts_from_plain,
    facts_to_plain,
    parse_domain_xml,
    render_domain_xml,
)
from reconcile.core.guests.identity import MARK_NAMESPACE, Mark, domain_uuid, mac_address
from tests.support.domains import build_domain_spec

GOLDEN = Path(__file__).parent / "golden"
TOPLEVEL = "/nix/store/0000000000000000000000000000000a-nixos-system-demo-a"


def sample(**overrides: Any) -> DomainSpec:
    args: dict[str, Any] = {
        "lab": "demo",
        "guest": "a",
        "mode": GuestMode.IMAGELESS,
        "toplevel": TOPLEVEL,
        "accel": Accel.QEMU,
        "memory_mib": 512,
        "vcpus": 2,
        "kernel": Path("/boot/vmlinuz-6.1.0-56-amd64"),
        "initrd": Path("/var/lib/reconcile/demo/initrd/a.cpio.gz"),
        "cmdline": f"root=tmpfs console=ttyS0,115200 console=hvc0 init={TOPLEVEL}/init",
        "modules": Path("/lib/modules/6.1.0-56-amd64"),
        "shares": (Share("results", Path("/srv/results/a"), writable=True),),
        "network": "default",
        "mac": None,
        "serial_log": Path("/var/lib/reconcile/demo/guests/a/serial.log"),
    }
    args.update(overrides)
    return build_domain_spec(**args)


def test_render_matches_golden(update_golden: bool) -> None:
    golden = GOLDEN / "domain-imageless.xml"
    rendered = render_domain_xml(sample())
    if update_golden:
        golden.write_text(rendered)
    assert rendered == golden.read_text()


@pytest.mark.parametrize(
    "spec",
    [
        sample(),
        sample(network=None, modules=None, shares=()),
        sample(accel=Accel.KVM, mac="52:54:00:aa:bb:cc", protect=True),
        sample(cmdline="quote=' amp=& lt=< gt=> dq=\"", guest="odd<&>"),
    ],
    ids=["full", "minimal", "kvm-mac-protect", "escaping"],
)
def test_render_then_parse_round_trips(spec: DomainSpec) -> None:
    facts = parse_domain_xml(render_domain_xml(spec))
    assert facts == DomainFacts.from_spec(spec)
    assert facts.mark == spec.mark
    assert facts.managed


def test_parse_what_libvirt_returns() -> None:
    # Captured from libvirt 9.0 (qemu:///system, inactive XML) after defining sample():
    # memory in KiB, added controllers, addresses, a reordered <seclabel>.
    facts = parse_domain_xml((GOLDEN / "domain-as-libvirt-returns.xml").read_text())
    assert facts == DomainFacts.from_spec(sample())


def test_shares_and_nics_are_ordered_facts() -> None:
    facts = parse_domain_xml(render_domain_xml(sample()))
    assert dict(facts.shares) == {
        "store": "/nix/store",
        "modules": "/lib/modules/6.1.0-56-amd64",
        "results": "/srv/results/a",
    }
    assert facts.shares[0] == ShareFacts("store", "/nix/store")
    assert facts.nics == (NicFacts(mac_address("demo", "a"), "default"),)


UNMARKED = """<domain type='kvm'>
  <name>{name}</name>
  <uuid>3b2c9f3e-27f1-4a8e-9d6b-6a0d8b1e2f10</uuid>
  {metadata}
  <memory unit='{unit}'>{memory}</memory>
  <vcpu placement='static' current='1'>2</vcpu>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type><boot dev='hd'/></os>
  <devices>
    <interface type='bridge'><mac address='52:54:00:12:34:56'/><source bridge='br0'/></interface>
  </devices>
</domain>"""


def unmarked(
    *, name: str = "demo-a", metadata: str = "", unit: str = "KiB", memory: str = "1048576"
) -> str:
    return UNMARKED.format(name=name, metadata=metadata, unit=unit, memory=memory)


def test_unmarked_domain_has_no_mark() -> None:
    facts = parse_domain_xml(unmarked())
    assert facts.mark is None
    assert not facts.managed
    assert facts.domain_type == "kvm"
    assert (facts.kernel, facts.initrd, facts.cmdline) == (None, None, "")
    assert facts.vcpus == 2
    assert facts.nics == (NicFacts("52:54:00:12:34:56", "br0"),)


@pytest.mark.parametrize(
    "metadata",
    [
        "<metadata/>",
        "<metadata><other:x xmlns:other='https://example.org/other'>1</other:x></metadata>",
        # A later, incompatible version of our mark is not ours to touch.
        "<metadata><r:domain xmlns:r='urn:reconcile:domain:2'><r:lab>demo</r:lab>"
        "</r:domain></metadata>",
    ],
    ids=["empty", "foreign-namespace", "other-version"],
)
def test_foreign_metadata_is_not_a_mark(metadata: str) -> None:
    assert parse_domain_xml(unmarked(metadata=metadata)).mark is None


def test_mark_survives_other_metadata_and_any_prefix() -> None:
    xml = render_domain_xml(sample())
    for old, new in (("<reconcile:", "<rc:"), ("</reconcile:", "</rc:"), ("s:reconcile=", "s:rc=")):
        xml = xml.replace(old, new)
    assert "<rc:lab>" in xml
    xml = xml.replace("<metadata>", "<metadata><o:x xmlns:o='https://example.org/o'/>")
    assert parse_domain_xml(xml).mark == sample().mark


def _mark_xml(protect: str = "false", drop: str = "") -> str:
    fields = {
        "lab": "demo",
        "name": "a",
        "mode": "imageless",
        "spec-hash": "00",
        "toplevel": TOPLEVEL,
        "kernel": "/vmlinuz",
        "protect": protect,
    }
    inner = "".join(f"<r:{k}>{v}</r:{k}>" for k, v in fields.items() if k != drop)
    return f"<metadata><r:domain xmlns:r='{MARK_NAMESPACE}'>{inner}</r:domain></metadata>"


def test_mark_without_protect_reads_as_unprotected() -> None:
    mark = parse_domain_xml(unmarked(metadata=_mark_xml(drop="protect"))).mark
    assert mark is not None
    assert (mark.lab, mark.name, mark.protect) == ("demo", "a", False)


@pytest.mark.parametrize(
    "metadata",
    [_mark_xml(drop="lab"), _mark_xml(drop="spec-hash"), _mark_xml(protect="maybe")],
    ids=["no-lab", "no-hash", "bad-protect"],
)
def test_malformed_mark_is_an_error_not_unmanaged(metadata: str) -> None:
    with pytest.raises(ProbeError, match="malformed reconcile mark"):
        parse_domain_xml(unmarked(metadata=metadata))


@pytest.mark.parametrize(
    ("unit", "memory", "kib"),
    [
        ("KiB", "1048576", 1048576),
        ("k", "1024", 1024),
        ("MiB", "512", 524288),
        ("M", "512", 524288),
        ("GiB", "4", 4194304),
        ("G", "1", 1048576),
        ("TiB", "1", 1 << 30),
        ("b", "1048576", 1024),
        ("bytes", "1025", 2),  # rounded up to whole KiB, as libvirt does
        ("KB", "1024", 1000),
        ("MB", "1", 977),
        ("GB", "1", 976563),
    ],
)
def test_memory_units(unit: str, memory: str, kib: int) -> None:
    assert parse_domain_xml(unmarked(unit=unit, memory=memory)).memory_kib == kib


def test_memory_without_unit_is_kib() -> None:
    xml = unmarked().replace(" unit='KiB'", "")
    facts = parse_domain_xml(xml)
    assert (facts.memory_kib, facts.memory_mib) == (1048576, 1024)


@pytest.mark.parametrize(
    "xml",
    [
        "<domain",
        "<network><name>x</name></network>",
        unmarked(unit="parsecs"),
        unmarked(memory="lots"),
        unmarked().replace("<memory unit='KiB'>1048576</memory>", ""),
        unmarked().replace(">2</vcpu>", ">two</vcpu>"),
    ],
    ids=["truncated", "not-a-domain", "unit", "memory-text", "no-memory", "vcpu"],
)
def test_unreadable_xml_is_a_probe_error(xml: str) -> None:
    with pytest.raises(ProbeError):
        parse_domain_xml(xml)


def test_identity_is_deterministic_and_distinct() -> None:
    assert domain_uuid("demo", "a") == domain_uuid("demo", "a")
    assert mac_address("demo", "a") == mac_address("demo", "a")
    # Same domain name, different lab/guest split: different identities.
    assert domain_uuid("a-b", "c") != domain_uuid("a", "b-c")
    assert mac_address("a-b", "c") != mac_address("a", "b-c")
    assert domain_uuid("demo", "a") != domain_uuid("demo", "b")
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
        domain_uuid("demo", "a"),
    )


def test_mac_is_qemu_prefixed_local_unicast() -> None:
    macs = {mac_address("demo", f"g{i}") for i in range(200)}
    assert len(macs) == 200
    for mac in macs:
        assert re.fullmatch(r"52:54:00(:[0-9a-f]{2}){3}", mac)
        first = int(mac[:2], 16)
        assert first & 0b10 and not first & 0b01  # locally administered, unicast


def test_spec_carries_identity_and_its_definitions_hash() -> None:
    spec = sample()
    assert spec.name == "demo-a"
    assert spec.uuid == domain_uuid("demo", "a")
    assert spec.definition.network is not None
    assert spec.definition.network.mac == mac_address("demo", "a")
    assert spec.mark.spec_hash == spec.definition.spec_hash
    assert [s.tag for s in spec.definition.shares] == ["store", "modules", "results"]


def test_the_initrd_is_not_hashed_its_inputs_are() -> None:
    # It is made after the build from the system's initrd and the early modules, which the
    # definition holds: a plan knows the hash before the closure exists.
    assert sample(initrd=Path("/tmp/other")).mark == sample().mark


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"shares": (Share("store", Path("/elsewhere"), writable=True),)}, "reserved"),
        ({"memory_mib": 0}, "positive"),
        (
            {"shares": (Share("x", Path("/a"), False), Share("x", Path("/b"), False))},
            "duplicate",
        ),
    ],
)
def test_invalid_specs_are_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sample(**change)


def test_facts_as_plain_values_round_trip_every_field() -> None:
    """What parsed_domains keeps: every field, nested ones included, none at its default."""
    facts = DomainFacts(
        name="t-a",
        uuid="u",
        domain_type="kvm",
        memory_kib=262144,
        vcpus=2,
        kernel="/k",
        initrd="/i",
        cmdline="console=ttyS0",
        shares=(ShareFacts("store", "/nix/store"), ShareFacts("modules", "/v")),
        nics=(NicFacts("52:54:00:00:00:01", "default"), NicFacts(None, None)),
        mark=Mark("t", "a", "disk", "h" * 64, "/nix/store/x", "k", True, "/nix/store/img"),
        ready="/nix/store/x",
        disks=(DiskFacts("vda", "/o.qcow2", "qcow2"),),
        qemu_args=("-netdev", "user,id=n0"),
    )
    assert all(getattr(facts, f.name) != f.default for f in fields(DomainFacts))
    assert all(getattr(facts.mark, f.name) != f.default for f in fields(Mark))
    plain = facts_to_plain(facts)
    assert marshal.loads(marshal.dumps(plain)) == plain  # plain values only
    assert facts_from_plain(marshal.loads(marshal.dumps(plain))) == facts
    unmarked = replace(facts, mark=None)
    assert facts_from_plain(facts_to_plain(unmarked)) == unmarked
    with pytest.raises((TypeError, ValueError)):
        facts_from_plain(plain[:-1])
