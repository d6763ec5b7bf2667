"""Property: whatever bytes arrive, the loader returns a manifest or a ManifestError."""

from __future__ import annotations

from pathlib import Path

import tomlkit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconcile.core.desired import Manifest
from reconcile.core.errors import ManifestError
from reconcile.core.manifest import parse_manifest
from tests.conftest import ROOT

GOOD = (ROOT / "manifests" / "lab.toml").read_bytes()
FILE = Path("fuzz.toml")

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


def accepts(data: bytes) -> None:
    try:
        result = parse_manifest(data, FILE)
    except ManifestError as error:
        assert error.problems
        for problem in error.problems:
            assert problem.file == "fuzz.toml"
            assert problem.render()
    else:
        assert isinstance(result, Manifest)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(keys, documents, max_size=6))
def test_random_documents(doc: dict[str, object]) -> None:
    accepts(tomlkit.dumps(doc).encode())


@settings(max_examples=300, deadline=None)
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


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    accepts(data)
