"""The qemu driver's command lines and record (core/guests/qemu_argv.py), and its manifest rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconcile.core.desired import Accel, GuestMode, Share
from reconcile.core.errors import ManifestError, ProbeError, ReconcileError
from reconcile.core.guests.domain_xml import DomainFacts
from reconcile.core.guests.qemu_argv import RunDir, facts_of, qemu_argv, record, virtiofsd_argvs
from reconcile.core.manifest import parse_manifest
from tests.support.domains import build_domain_spec

RUN = RunDir(Path("/var/lib/reconcile/demo/qemu/local/demo-a"))


def spec(**overrides: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = {
        "lab": "demo",
        "guest": "a",
        "mode": GuestMode.IMAGELESS,
        "toplevel": "/nix/store/" + "a" * 32 + "-sys",
        "accel": Accel.QEMU,
        "memory_mib": 384,
        "vcpus": 2,
        "kernel": Path("/vmlinuz"),
        "initrd": Path("/var/lib/reconcile/demo/initrd/x.img"),
        "cmdline": "root=tmpfs console=ttyS0,115200 init=/nix/store/x/init",
        "modules": Path("/lib/modules"),
        "shares": (Share("rw", Path("/srv/a,b"), writable=True),),
        "network": None,
        "mac": None,
        "serial_log": Path("/var/lib/reconcile/demo/guests/a/serial.log"),
    }
    args.update(overrides)
    return build_domain_spec(**args)  # type: ignore[arg-type]


def test_the_command_line_is_the_imageless_contract() -> None:
    argv = qemu_argv(spec(shares=()), RUN)
    pairs = dict(zip(argv[1::2], argv[2::2], strict=False))
    assert argv[0] == "qemu-system-x86_64"
    assert pairs["-machine"] == "q35,accel=tcg" and "-cpu" not in argv
    assert pairs["-m"] == "384M" and pairs["-smp"] == "2"
    assert "memory-backend-memfd,id=mem,size=384M,share=on" in argv
    assert pairs["-kernel"] == "/vmlinuz"
    # the kernel command line is one argv element, commas and all
    assert (
        argv[argv.index("-append") + 1] == "root=tmpfs console=ttyS0,115200 init=/nix/store/x/init"
    )
    assert "-no-reboot" in argv and f"unix:{RUN.qmp},server=on,wait=off" in argv
    tags = [a.rsplit("tag=", 1)[1] for a in argv if a.startswith("vhost-user-fs-pci")]
    assert tags == ["store", "modules"]


def test_kvm_passes_the_host_cpu() -> None:
    argv = qemu_argv(spec(accel=Accel.KVM), RUN)
    assert "q35,accel=kvm" in argv and argv[argv.index("-cpu") + 1] == "host"


def test_commas_are_doubled_inside_options_and_refused_by_virtiofsd() -> None:
    odd = spec(serial_log=Path("/srv/odd,dir/serial.log"))
    assert "file,id=serial0,path=/srv/odd,,dir/serial.log" in qemu_argv(odd, RUN)
    with pytest.raises(ReconcileError, match="comma"):
        virtiofsd_argvs(spec(), RUN)  # the share /srv/a,b


def test_a_socket_path_too_long_is_a_clear_error() -> None:
    deep = RunDir(Path("/" + "d" * 120))
    with pytest.raises(ReconcileError, match="too long for a Unix socket"):
        qemu_argv(spec(shares=()), deep)


def test_a_network_is_refused() -> None:
    with pytest.raises(ReconcileError, match="no libvirt networks"):
        qemu_argv(spec(network="default", shares=()), RUN)


def test_the_record_gives_back_the_facts_the_diff_compares() -> None:
    s = spec(shares=())
    document = json.loads(json.dumps(record(s, RUN)))  # as written and read back
    assert facts_of(document, "x") == DomainFacts.from_spec(s)
    assert facts_of({**document, "ready": "/nix/store/y"}, "x").ready == "/nix/store/y"


@pytest.mark.parametrize(
    "broken", [None, {}, {"format": "other"}, {"format": "reconcile-qemu-guest/1"}]
)
def test_a_record_that_is_not_one_is_unknown(broken: object) -> None:
    with pytest.raises(ProbeError):
        facts_of(broken, "definition.json")


def test_a_record_with_a_bad_field_is_unknown() -> None:
    document = record(spec(shares=()), RUN)
    document["facts"] = {**document["facts"], "vcpus": "two"}
    with pytest.raises(ProbeError):
        facts_of(document, "definition.json")


LAB = b"""
[lab]
name = "t"
[hypervisors.q]
driver = "qemu"
accel = "qemu"
[kernels.k]
image = "/vmlinuz"
[guests.a]
mode = "imageless"
system = "s"
kernel = "k"
"""


def rendered(error: ManifestError) -> str:
    return "\n".join(p.render() for p in error.problems)


def test_a_qemu_hypervisor_parses() -> None:
    manifest = parse_manifest(LAB, Path("/lab/m.toml"))
    assert manifest.hypervisors["q"].driver == "qemu"


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        (b'uri = "qemu:///system"\n', "hypervisors.q.uri"),
        (
            b'host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLs'
            b'abgH5C9okWi0dh2l9GKJl"\n',
            "hypervisors.q.host_key",
        ),
    ],
)
def test_a_qemu_hypervisor_takes_no_uri_or_keys(extra: bytes, where: str) -> None:
    text = LAB.replace(b'driver = "qemu"\n', b'driver = "qemu"\n' + extra)
    with pytest.raises(ManifestError) as caught:
        parse_manifest(text, Path("/lab/m.toml"))
    assert where in rendered(caught.value)


def test_a_guest_on_a_qemu_hypervisor_has_no_network() -> None:
    text = LAB + b'network = { libvirt = "default" }\n'
    with pytest.raises(ManifestError) as caught:
        parse_manifest(text, Path("/lab/m.toml"))
    assert "guests.a.network" in rendered(caught.value)
    assert "no libvirt networks" in rendered(caught.value)


def test_on_a_systemd_host_a_guest_is_started_as_units(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under systemd a detached supervisor would die with the unit that started it: the
    guest goes to adapters/qemu_units.py (the seam, faked here; the units themselves are
    tests/real/test_qemu_units.py), and a failed start leaves no live record."""
    from reconcile.adapters import qemu, qemu_units  # noqa: PLC0415

    booted = tmp_path / "run-systemd-system"
    booted.mkdir()
    monkeypatch.setattr(qemu, "SYSTEMD_RUNS", booted)
    started: list[Path] = []

    def fake_start(run: RunDir) -> None:
        assert run.live.exists()
        started.append(run.root)

    monkeypatch.setattr(qemu_units, "start", fake_start)
    hv = qemu.QemuHypervisor(tmp_path / "qemu", "demo")
    run = tmp_path / "qemu" / "demo-a"
    run.mkdir(parents=True)
    (run / "mark.json").write_text('{"lab": "demo", "guest": "a"}')
    (run / "definition.json").write_text('{"qemu": [], "virtiofsd": []}')
    hv.start("demo-a")
    assert started == [run]

    def failing_start(run: RunDir) -> None:
        raise ReconcileError("systemd-run failed")

    monkeypatch.setattr(qemu_units, "start", failing_start)
    with pytest.raises(ReconcileError, match="systemd-run failed"):
        hv.start("demo-a")
    assert not (run / "live.json").exists()
