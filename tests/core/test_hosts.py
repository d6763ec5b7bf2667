from __future__ import annotations

import subprocess

import pytest

from reconcile.core.hosts.baremetal import PROBE, parse_probe
from reconcile.logs import redact

WHOLE = (
    "current=/nix/store/a-sys\nbooted=\nprofile=\nconfirmed=\n"
    "boot_id=0b1c\nloader=\nsystemd=degraded\nend=ok\n"
)


def test_parse_probe() -> None:
    seen = parse_probe(WHOLE)
    assert (seen.current, seen.booted, seen.boot_id, seen.systemd) == (
        "/nix/store/a-sys",
        None,
        "0b1c",
        "degraded",
    )
    assert seen.has_systemd
    assert not parse_probe(WHOLE.replace("degraded", "absent")).has_systemd
    with pytest.raises(ValueError, match="incomplete"):
        parse_probe("motd: welcome\n")


@pytest.mark.parametrize("cut", range(1, WHOLE.count("\n")))
def test_a_probe_cut_part_way_is_never_read_as_no_system(cut: int) -> None:
    partial = "".join(WHOLE.splitlines(keepends=True)[:cut])
    with pytest.raises(ValueError, match="incomplete"):
        parse_probe(partial)


def test_an_unreadable_link_is_an_error_not_absent() -> None:
    with pytest.raises(ValueError, match="could not read /run/current-system"):
        parse_probe(WHOLE.replace("current=/nix/store/a-sys", "error=/run/current-system"))


def test_the_probe_script_runs_and_parses() -> None:
    # On this machine there is no NixOS: every link absent, still a whole, valid probe.
    done = subprocess.run(PROBE, capture_output=True, text=True, check=True, timeout=10)
    seen = parse_probe(done.stdout)
    assert seen.boot_id


def test_secrets_are_redacted_by_key_name() -> None:
    event = {"event": "x", "passphrase": "hunter2", "api_token": "t", "host": "bm1"}
    assert redact(None, "info", event) == {
        "event": "x",
        "passphrase": "<redacted>",
        "api_token": "<redacted>",
        "host": "bm1",
    }
