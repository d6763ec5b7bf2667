"""The views adapter's pure half: reading mountinfo and judging what it says about a view."""

from __future__ import annotations

import pytest

from reconcile.adapters.views import Mount, below, classify, parse_mountinfo
from reconcile.core.guests.observed import ViewState

MOUNTINFO = (
    b"27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
    b"43 27 254:0 /nix/store /s/store ro,relatime - ext4 /dev/vda rw\n"
    b"44 27 254:0 /srv/a\\040b /s/views/with\\040space ro,nosuid shared:3 - ext4 /dev/vda rw\n"
    b"45 27 0:5 / /s/views/\\303\\251t\\303\\251 rw master:1 - tmpfs tmpfs rw\n"
)


def test_mountinfo_is_parsed_with_its_escapes_and_own_flag() -> None:
    assert parse_mountinfo(MOUNTINFO) == [
        Mount("/", False),
        Mount("/s/store", True),
        Mount("/s/views/with space", True),
        Mount("/s/views/été", False),
    ]


def test_the_file_system_flags_do_not_count() -> None:
    # `rw` after the separator is the superblock's: the mount's own flag decides
    line = b"50 27 254:0 / /v ro - ext4 /dev/vda rw\n"
    assert parse_mountinfo(line) == [Mount("/v", True)]


def test_below_is_by_path_component() -> None:
    mounts = [Mount("/s/store", True), Mount("/s/store2", False), Mount("/s/store/x", True)]
    assert below(mounts, "/s/store") == [mounts[0], mounts[2]]


@pytest.mark.parametrize(
    ("mounts", "shows_source", "expected"),
    [
        ([], False, ViewState.MISSING),
        ([Mount("/v", True)], True, ViewState.READ_ONLY),
        ([Mount("/v", False)], True, ViewState.WRITABLE),
        ([Mount("/v", False), Mount("/v", True)], True, ViewState.WRITABLE),  # a lower one
        ([Mount("/v", True), Mount("/v/sub", False)], True, ViewState.WRITABLE),
        ([Mount("/v", True), Mount("/v", True)], True, ViewState.STALE),  # stacked
        ([Mount("/v", True)], False, ViewState.STALE),  # of another directory
        ([Mount("/v/sub", True)], False, ViewState.STALE),  # not at the path itself
        ([Mount("/", False), Mount("/vv", False)], False, ViewState.MISSING),
    ],
)
def test_classify(mounts: list[Mount], shows_source: bool, expected: ViewState) -> None:
    assert classify(mounts, "/v", shows_source) is expected
