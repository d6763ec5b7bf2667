"""Property: whatever bytes arrive, the loader returns a manifest whose values the code can
use, or a ManifestError; never another exception, never a hang.

Long mode: `RECONCILE_FUZZ_EXAMPLES=10000 .venv/bin/pytest -q tests/core/test_manifest_fuzz.py`
runs that many examples of each property instead of the small counts below (docs/performance.md,
"Fuzzing").
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import tomlkit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconcile.core.desired import Manifest
from reconcile.core.errors import ManifestError
from reconcile.core.manifest import parse_manifest
from tests.conftest import ROOT
from tests.support.alarm import within

LONG = int(os.environ.get("RECONCILE_FUZZ_EXAMPLES", "0"))
LIMIT_S = 10.0  # one parse of at most 1 MiB; far more than any needs


def examples(normal: int) -> int:
    return LONG or normal


GOOD = (ROOT / "manifests" / "lab.toml").read_bytes()
FILE = Path("fuzz.toml")
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHf0ZbUiv2XH5hs3mSz0t8Kb0cYt6a9eXr0JqG3VZbWc"

# Values that come near the schema's edges: keys it knows, types it does not expect.
keys = st.sampled_from(
    [
        "lab",
        "name",
        "guests",
        "mode",
        "system",
        "kernel",
        "memory",
        "vcpus",
        "shares",
        "tag",
        "source",
        "hosts",
        "ssh",
        "target",
        "host_key",
        "health",
        "tcp",
        "gitops",
        "interval",
        "kernels",
        "image",
        "hypervisors",
        "uri",
        "accel",
        "network",
        "mac",
        "x-y",
        "a b",
    ]
)
scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.text(max_size=20),
    st.sampled_from(["imageless", "disk", "4GiB", "0s", "qemu", "root@h", "52:54:00:00:00:01"]),
    st.floats(allow_nan=False, allow_infinity=False),
)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=30,
)


def usable(manifest: Manifest) -> None:
    """What the code relies on, whatever the manifest said."""
    week = 7 * 86400
    lab = manifest.lab
    durations = [lab.eval_timeout_s, lab.build_timeout_s, lab.lock_warn_after_s]
    for guest in manifest.guests.values():
        assert type(guest.memory_mib) is int and 64 <= guest.memory_mib <= 4 << 20
        assert type(guest.vcpus) is int and 1 <= guest.vcpus <= 512
        assert 0 <= guest.shutdown_timeout_s <= week
        durations.append(guest.boot_timeout_s)
        if guest.disk is not None:
            assert 1 << 30 <= guest.disk.size_bytes <= 64 << 40
        for param in guest.kernel_params:
            assert param and not any(c.isspace() or ord(c) < 32 or c == '"' for c in param)
    sshs = [h.ssh for h in manifest.hosts.values()]
    sshs += [g.ssh for g in manifest.guests.values() if g.ssh is not None]
    for ssh in sshs:
        assert type(ssh.port) is int and 1 <= ssh.port <= 65535
        assert not ssh.target.destination.startswith("-")  # and constructing it raises nothing
        assert ssh.connect_timeout_s == int(ssh.connect_timeout_s)
        durations += [ssh.connect_timeout_s, ssh.command_timeout_s, ssh.total_timeout_s]
    for host in manifest.hosts.values():
        durations += [host.health_timeout_s, host.confirm_timeout_s]
        assert host.confirm_timeout_s == int(host.confirm_timeout_s)  # the guard counts seconds
        assert host.confirm_timeout_s > host.health_timeout_s + host.ssh.connect_timeout_s
        ports = [c.value for c in host.health if c.kind == "tcp"]
        assert all(type(p) is int and 1 <= p <= 65535 for p in ports)
    if manifest.gitops is not None:
        assert manifest.gitops.interval_s == int(manifest.gitops.interval_s)
        durations += [manifest.gitops.interval_s, manifest.gitops.connect_timeout_s]
    assert all(math.isfinite(d) and 0 < d <= week for d in durations)


def accepts(data: bytes) -> None:
    try:
        with within(LIMIT_S):
            result = parse_manifest(data, FILE)
    except ManifestError as error:
        assert error.problems
        for problem in error.problems:
            assert problem.file == "fuzz.toml"
            assert problem.render()
    else:
        assert isinstance(result, Manifest)
        usable(result)


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(keys, documents, max_size=6))
def test_random_documents(doc: dict[str, object]) -> None:
    accepts(tomlkit.dumps(doc).encode())


@settings(max_examples=examples(300), deadline=None)
@given(st.data())
def test_mutated_lab_manifest(data: st.DataObject) -> None:
    raw = bytearray(GOOD)
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["flip", "delete", "insert"]))
        if action == "flip":
            raw[index] = data.draw(st.integers(0, 255))
        elif action == "delete":
            del raw[index : index + data.draw(st.integers(1, 40))]
        else:
            raw[index:index] = data.draw(st.binary(min_size=1, max_size=8))
    accepts(bytes(raw))


@settings(max_examples=examples(200), deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    accepts(data)


# Values at the edges of each kind: strings with control characters and trailing newlines,
# boundary numbers, sizes at unit boundaries, durations at zero, a week and past it.
edge_strings = st.one_of(
    st.text(max_size=12),
    st.builds(
        lambda a, c, b: a + c + b,
        st.sampled_from(["", "x", "256MiB", "90s", "/srv/a", "init=/x", "quiet", "~", "~u/x"]),
        st.sampled_from(["\n", "\r", "\x00", "\x07", "\x1b", "\x7f", "\u2028", '"', " ", ""]),
        st.sampled_from(["", "\n", "x", "/"]),
    ),
)
edge_numbers = st.one_of(
    st.sampled_from([0, 1, -1, 2, 63, 64, 512, 513, 65535, 65536, 2**31, 2**31 - 1, 2**63 - 1]),
    st.sampled_from([-(2**63), 10**30, 0.0, 1.0, 2.0, -0.0, 1e308, 0.5]),
    st.integers(),
)
units = st.sampled_from(["KiB", "MiB", "GiB", "TiB", " MiB", "B", "kib"])
magnitudes = st.sampled_from([0, 1, 63, 64, 65, 1023, 1024, 1025, 4096, 4097, 65536, 999999999])
edge_sizes = st.builds(lambda n, u: f"{n}{u}", magnitudes, units)
duration_units = st.sampled_from(["ms", "s", "min", "h", "d", "m", ""])
duration_values = st.sampled_from([0, 1, 59, 60, 999, 1000, 1500, 7, 8, 168, 604800, 999999])
edge_durations = st.builds(
    lambda parts: "".join(f"{n}{u}" for n, u in parts),
    st.lists(st.tuples(duration_values, duration_units), min_size=1, max_size=3),
)
edge_paths = st.sampled_from(
    ["/", "/nix/store/x", "/proc", "/etc", "/boot", "/srv/a", "/srv/state", "/srv/state/x", "/srv"]
)
edge_paths |= st.sampled_from(
    ["/srv/../etc", "/6.1.0", "/lib/modules/6.1.0", "rel", "-x", "~/x", "~nobody/x"]
)
edge_values = st.one_of(edge_strings, edge_numbers, edge_sizes, edge_durations, edge_paths)

FIELDS = {
    ("guests", "g", "memory"): edge_sizes,
    ("guests", "g", "vcpus"): edge_numbers,
    ("guests", "g", "boot_timeout"): edge_durations,
    ("guests", "g", "shutdown_timeout"): edge_durations,
    ("guests", "g", "kernel_params"): st.lists(edge_strings, max_size=3),
    ("guests", "g", "shares"): st.lists(
        st.fixed_dictionaries({"tag": st.sampled_from(["a", "b"]), "source": edge_paths}),
        max_size=2,
    ),
    ("kernels", "k", "modules"): edge_paths,
    ("hosts", "h", "ssh", "port"): edge_numbers,
    ("hosts", "h", "ssh", "connect_timeout"): edge_durations,
    ("hosts", "h", "ssh", "total_timeout"): edge_durations,
    ("hosts", "h", "health"): st.lists(st.fixed_dictionaries({"tcp": edge_numbers}), max_size=2),
    ("lab", "build_timeout"): edge_durations,
    ("lab", "state_dir"): edge_paths,
    ("lab", "name"): edge_strings,
    ("gitops", "interval"): edge_durations,
}


def base_document() -> dict[str, object]:
    return {
        "lab": {"name": "t", "state_dir": "/srv/state"},
        "hypervisors": {"local": {"accel": "qemu"}},
        "kernels": {"k": {"image": "/vmlinuz"}},
        "guests": {"g": {"mode": "imageless", "system": "s", "kernel": "k"}},
        "hosts": {"h": {"system": "s", "ssh": {"target": "h", "host_key": KEY}}},
        "gitops": {"repo": "/srv/lab.git", "require_signed": False},
    }


@settings(max_examples=examples(300), deadline=None)
@given(st.data())
def test_values_at_the_edges(data: st.DataObject) -> None:
    doc = base_document()
    chosen = data.draw(st.lists(st.sampled_from(sorted(FIELDS)), min_size=1, max_size=4))
    for path in chosen:
        node: dict[str, object] = doc
        for part in path[:-1]:
            child = node[part]
            assert isinstance(child, dict)
            node = child
        node[path[-1]] = data.draw(FIELDS[path] if data.draw(st.booleans()) else edge_values)
    accepts(tomlkit.dumps(doc).encode())


def test_the_base_document_is_valid() -> None:
    manifest = parse_manifest(tomlkit.dumps(base_document()).encode(), FILE)
    usable(manifest)
