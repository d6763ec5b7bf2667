"""One rule per kind of value, at its boundaries: from the schema's side (a document the
schema alone validates) and from the code's side (the functions that enforce it)."""

from __future__ import annotations

from pathlib import Path, PurePath
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconcile.core.errors import ManifestError
from reconcile.core.guests.imageless import kernel_cmdline
from reconcile.core.manifest import parse_manifest, schema
from reconcile.core.manifest.build import resolve_path
from reconcile.core.manifest.guest_limits import modules_problem, param_problem, share_problem
from reconcile.core.manifest.locate import first_duplicate, key_lines
from reconcile.core.units import (
    duration_problem,
    parse_duration,
    parse_duration_ms,
    parse_size,
    size_problem,
)
from tests.conftest import ROOT
from tests.support.alarm import within

BAD = ROOT / "tests" / "manifests" / "bad"


def guest(**values: Any) -> dict[str, Any]:
    base = {"mode": "imageless", "system": "s", "kernel": "k"}
    return {"lab": {"name": "t"}, "guests": {"g": {**base, **values}}}


def messages(document: dict[str, Any]) -> list[str]:
    return [f.message for f in schema.validate(document)]


# --- sizes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("memory", "problem"),
    [
        ("64MiB", None),
        ("65536KiB", None),
        ("4TiB", None),
        ("4096GiB", None),
        ("63MiB", "must be at least 64MiB, got '63MiB'"),
        ("1KiB", "must be at least 64MiB, got '1KiB'"),  # planned as 0 MiB before
        ("65537KiB", "must be a whole number of MiB, got '65537KiB'"),
        ("4097GiB", "must be at most 4TiB, got '4097GiB'"),
        ("999999999TiB", "must be at most 4TiB, got '999999999TiB'"),
        ("0MiB", "invalid value '0MiB'"),  # the pattern's, not also a bound's
        ("256MiB\n", "invalid value '256MiB\\n'"),
    ],
)
def test_memory_bounds_in_the_schema(memory: str, problem: str | None) -> None:
    assert messages(guest(memory=memory)) == ([] if problem is None else [problem])


def test_disk_size_bounds_in_the_schema() -> None:
    disk = {"mode": "disk", "kernel": None}
    for size, ok in (("1GiB", True), ("1023MiB", False), ("64TiB", True), ("65TiB", False)):
        doc = guest(**{**disk, "disk": {"size": size}})
        del doc["guests"]["g"]["kernel"]
        assert (messages(doc) == []) is ok, size


def test_sizes_in_the_code() -> None:
    assert parse_size("0KiB") == 0
    assert parse_size("999999999TiB") == 999999999 << 40  # an int: never overflows
    for bad in ("256MiB\n", "1 MiB ", "1MB", "-1MiB", "", "1.5GiB"):
        with pytest.raises(ValueError, match="not a size"):
            parse_size(bad)
    assert size_problem("64MiB", "64MiB", "4TiB", "1MiB") is None
    assert size_problem("65535KiB", "64MiB", "4TiB", "1MiB") == (
        "must be at least 64MiB, got '65535KiB'"
    )
    assert size_problem("4TiB", "64MiB", "4TiB", "1MiB") is None
    assert size_problem("4194305MiB", "64MiB", "4TiB") == "must be at most 4TiB, got '4194305MiB'"
    assert size_problem("1025KiB", "1KiB", "1TiB", "1MiB") == (
        "must be a whole number of MiB, got '1025KiB'"
    )


# --- counts and ports ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("vcpus", "problem"),
    [
        (1, None),
        (512, None),
        (0, "must be at least 1, got 0"),
        (-1, "must be at least 1, got -1"),
        (513, "must be at most 512, got 513"),
        (2**31, f"must be at most 512, got {2**31}"),
        (2**63, f"must be at most 512, got {2**63}"),
        (2.0, "expected an integer, got a float"),  # libvirt would be given "2.0"
        (True, "expected an integer, got a boolean"),
    ],
)
def test_vcpus_bounds(vcpus: object, problem: str | None) -> None:
    assert messages(guest(vcpus=vcpus)) == ([] if problem is None else [problem])


@pytest.mark.parametrize("port", [0, -1, 65536, 2**31, 2**63, 22.0])
def test_ports_out_of_range(port: object) -> None:
    key = "ssh-ed25519 AAAA"

    def doc(port: object, tcp: object) -> dict[str, Any]:
        ssh = {"target": "h", "host_key": key, "port": port}
        return {
            "lab": {"name": "t"},
            "hosts": {"h": {"system": "s", "ssh": ssh, "health": [{"tcp": tcp}]}},
        }

    assert len(messages(doc(port, port))) == 2
    assert messages(doc(65535, 1)) == []


# --- durations -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("boot_timeout", "1ms", None),
        ("boot_timeout", "7d", None),
        ("boot_timeout", "167h59min59s999ms", None),
        ("boot_timeout", "0s", "must be longer than zero, got '0s'"),
        ("boot_timeout", "0ms0s0min", "must be longer than zero, got '0ms0s0min'"),
        ("boot_timeout", "7d1ms", "must be at most 7d, got '7d1ms'"),
        ("boot_timeout", "999999d", "must be at most 7d, got '999999d'"),
        ("shutdown_timeout", "0s", None),  # destroy at once
        ("shutdown_timeout", "8d", "must be at most 7d, got '8d'"),
    ],
)
def test_guest_duration_bounds(key: str, value: str, problem: str | None) -> None:
    assert messages(guest(**{key: value})) == ([] if problem is None else [problem])


def test_whole_seconds_where_the_consumer_counts_seconds() -> None:
    base = {"repo": "/srv/lab.git", "require_signed": False}
    for key in ("interval", "connect_timeout"):
        for value, ok in (("1s", True), ("1000ms", True), ("1500ms", False), ("999ms", False)):
            found = messages({"lab": {"name": "t"}, "gitops": {**base, key: value}})
            assert (found == []) is ok, (key, value, found)


def test_durations_in_the_code() -> None:
    assert parse_duration_ms("7d") == 7 * 86_400_000
    assert parse_duration_ms("1h30min") == 5_400_000
    assert parse_duration("250ms") == 0.25
    assert parse_duration_ms("999999d" * 100) == 99_999_900 * 86_400_000  # an int
    for bad in ("", "1", "1x", "1h 30min", "90s\n", "-1s"):
        with pytest.raises(ValueError, match="not a duration"):
            parse_duration_ms(bad)
    assert duration_problem("1ms", "1ms", "7d") is None
    assert duration_problem("0s", "1ms", "7d") == "must be longer than zero, got '0s'"
    assert duration_problem("500ms", "1s", "7d") == "must be at least 1s, got '500ms'"
    assert duration_problem("604800s", "1ms", "7d") is None
    assert duration_problem("604801s", "1ms", "7d") == "must be at most 7d, got '604801s'"
    assert duration_problem("2500ms", "1s", "7d", whole_seconds=True) == (
        "must be a whole number of seconds, got '2500ms'"
    )


# --- paths ---------------------------------------------------------------------------


def test_home_of_another_user_is_refused_and_never_raises() -> None:
    identity = {"target": "h", "host_key": "ssh-ed25519 AAAA", "identity": "~nosuchuser/key"}
    doc = {"lab": {"name": "t"}, "hosts": {"h": {"system": "s", "ssh": identity}}}
    assert messages(doc) == ["invalid value '~nosuchuser/key'"]
    # the code side: an unknown ~user is left as it is, never a RuntimeError
    assert resolve_path(Path("/m"), "~nosuchuser/key") == Path("/m/~nosuchuser/key")


# --- kernel parameters ---------------------------------------------------------------


def test_every_parameter_reconcile_sets_is_owned() -> None:
    words = kernel_cmdline("/nix/store/x-system", ()).split()
    assert [w for w in words if param_problem(w) is None] == ["console=ttyS0,115200"]


@pytest.mark.parametrize(
    "param",
    [
        "init=/bin/sh",
        "root=/dev/vda",
        "rootfstype=ext4",
        "rootflags=size=1G",
        "rdinit=/bin/sh",
        "initrd=/x",
        "noinitrd",
        "noinitrd=1",  # the kernel matches setup names as prefixes
        "8250.nr_uarts=0",
        "8250.nr-uarts=0",  # - and _ are one
    ],
)
def test_owned_parameters_are_refused(param: str) -> None:
    assert param_problem(param) is not None


@pytest.mark.parametrize(
    "param",
    ["quiet", "console=hvc0", "console=ttyS0,9600", "initcall_debug", "root", "xfs.debug=1"],
)
def test_other_parameters_pass(param: str) -> None:
    assert param_problem(param) is None


def test_quotes_and_control_characters_are_refused_by_the_schema() -> None:
    for param in ('"init=/bin/sh"', "a\x07", "a\u007f", "a b", "a\n"):
        assert messages(guest(kernel_params=[param])) == [f"invalid value {param!r}"]


# --- what a guest may be given -------------------------------------------------------

STATE = PurePath("/var/lib/reconcile/t")


@pytest.mark.parametrize(
    "source",
    [
        "/",
        "//",
        "/nix",
        "/nix/store",
        "/nix/store/abc-x",
        "/nix/var/nix/db",
        "/proc",
        "/sys/kernel",
        "/dev",
        "/etc",
        "/etc/ssh",
        "/boot/efi",
        "/srv/../etc",
        "/var/lib/reconcile/t",
        "/var/lib/reconcile/t/gcroots",
        "/var/lib/reconcile/t/../t/views",
        "/var/lib",  # it holds the state directory
        "/var",
    ],
)
def test_share_sources_refused(source: str) -> None:
    assert share_problem(PurePath(source), STATE) is not None


@pytest.mark.parametrize(
    "source", ["/srv/results", "/var/lib/reconcile/other", "/etcetera", "/nixos", "/home/u/x"]
)
def test_share_sources_allowed(source: str) -> None:
    assert share_problem(PurePath(source), STATE) is None


def test_modules_named_like_a_release_in_a_shareable_parent() -> None:
    assert modules_problem(PurePath("/lib/modules/6.1.0-18-amd64"), STATE) is None
    assert modules_problem(PurePath("/srv/k/lib/modules/6.8.0-rc1+"), STATE) is None
    assert modules_problem(PurePath("/"), STATE) is not None
    assert modules_problem(PurePath("/6.1.0"), STATE) is not None  # its parent is /
    assert modules_problem(PurePath("/etc/6.1.0"), STATE) is not None
    assert modules_problem(PurePath("/lib/modules"), STATE) is not None
    assert modules_problem(PurePath("/lib/modules/6.1.0/.."), STATE) is not None


# --- error reporting is bounded ------------------------------------------------------


# Found by a search over mutated manifests: the duplicate-key locator looped on them, its
# memory growing (tests/manifests/bad/locator-no-advance.toml is the first).
LOOPED = [
    b's={g="",source="",source=""t"" ""\n',
    b'[s]\nfragments=[""]\nfragments=[""]\n{\n',
    b"a=1\na=[}]\n",
    b"a=1\na={]\n",
]


@pytest.mark.parametrize("data", LOOPED)
def test_inputs_that_looped_give_an_error_at_once(data: bytes) -> None:
    with within(5), pytest.raises(ManifestError):
        parse_manifest(data, Path("f.toml"))


@pytest.mark.parametrize(
    "text",
    [
        "[lab]\nname = 't'\n" + "a." * 500_000 + "b = 1\n",  # tomllib: square of the parts
        "[" + "a." * 500_000 + "b]\n",
        "[lab]\nname = 't'\nx = " + "[" * 200_000 + "]" * 200_000 + "\n",
        "a = 1\na = " + "[" * 300_000 + "\n",
        "[lab]\nname = 't'\nx = [" + "1," * 500_000 + "]]\n",
    ],
    ids=["dotted-key", "dotted-header", "deep-arrays", "deep-open", "long-array"],
)
def test_a_megabyte_of_hostile_text_is_judged_in_seconds(text: str) -> None:
    with within(10), pytest.raises(ManifestError):
        parse_manifest(text.encode(), Path("f.toml"))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("[]{}=,.'\"#\\ \n\tab1")), max_size=200))
def test_the_locator_ends_on_any_text(text: str) -> None:
    with within(5):
        key_lines(text)
        first_duplicate(text)
