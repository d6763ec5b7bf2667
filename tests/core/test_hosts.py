from __future__ import annotations

import pytest

from reconcile.core.hosts import parse_probe
from reconcile.logs import redact


def test_parse_probe() -> None:
    seen = parse_probe("current=/nix/store/a-sys\nbooted=\nboot_id=0b1c\nsystemd=degraded\n")
    assert (seen.current, seen.booted, seen.boot_id, seen.systemd) == (
        "/nix/store/a-sys",
        None,
        "0b1c",
        "degraded",
    )
    assert seen.has_systemd
    assert not parse_probe("current=\nbooted=\nboot_id=x\nsystemd=absent").has_systemd
    with pytest.raises(ValueError, match="lacks"):
        parse_probe("motd: welcome\n")


def test_secrets_are_redacted_by_key_name() -> None:
    event = {"event": "x", "passphrase": "hunter2", "api_token": "t", "host": "bm1"}
    assert redact(None, "info", event) == {
        "event": "x",
        "passphrase": "<redacted>",
        "api_token": "<redacted>",
        "host": "bm1",
    }
