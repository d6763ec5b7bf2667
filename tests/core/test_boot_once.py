"""The boot-once scripts (core/hosts/boot_once.py) run by a real sh, with a stand-in
`bootctl` that records what it is asked on PATH (the real one needs EFI); the real test
is tests/real/test_host_guard.py's reboot into a system that never comes back."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from reconcile.core.hosts import boot_once
from reconcile.core.hosts.guard import CONFIRM

BOOTCTL = """#!/bin/sh
echo "$*" >> "$BOOTCTL_CALLS"
[ -z "$BOOTCTL_FAIL" ] || { echo "bootctl: $BOOTCTL_FAIL" >&2; exit 1; }
"""


@pytest.fixture
def box(tmp_path: Path) -> dict[str, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "bootctl").write_text(BOOTCTL)
    (bin_dir / "bootctl").chmod(0o755)
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    systems = {}
    for n in ("old", "new"):
        systems[n] = tmp_path / f"store-{n}"
        (systems[n] / "bin").mkdir(parents=True)
        switch = systems[n] / "bin" / "switch-to-configuration"
        switch.write_text(f'#!/bin/sh\necho "{n} $1" >> "$BOOTCTL_CALLS"\n')
        switch.chmod(0o755)
    # generations 3 and 7 are the old system (the higher is its entry), 8 the new one
    for gen, target in ((3, "old"), (7, "old"), (8, "new")):
        (profiles / f"system-{gen}-link").symlink_to(systems[target])
    (profiles / "system").symlink_to("system-8-link")
    return {"bin": bin_dir, "profile": profiles / "system", "record": tmp_path / "r" / "rec",
            "calls": tmp_path / "calls", **systems}  # fmt: skip


def run(box: dict[str, Path], script: str, *args: object, fail: str = "") -> str:
    env = {**os.environ, "PATH": f"{box['bin']}:{os.environ['PATH']}",
           "BOOTCTL_CALLS": str(box["calls"]), "BOOTCTL_FAIL": fail}  # fmt: skip
    done = subprocess.run(
        ["sh", "-c", script, *map(str, args)], env=env, capture_output=True, text=True, check=False
    )
    return f"{done.returncode}:{done.stdout.strip()}"


def calls(box: dict[str, Path]) -> list[str]:
    path = box["calls"]
    return path.read_text().splitlines() if path.exists() else []


def test_arm_sets_the_booted_generation_default_and_the_new_one_once(box: dict) -> None:
    got = run(box, boot_once.ARM, box["profile"], box["new"], box["old"], box["record"])
    assert got == "0:default=nixos-generation-7.conf oneshot=nixos-generation-8.conf"
    assert calls(box) == [
        "set-default nixos-generation-7.conf",
        "set-oneshot nixos-generation-8.conf",
    ]
    assert box["record"].read_text() == "nixos-generation-7.conf\n"


def test_arm_refuses_a_system_without_a_generation(box: dict, tmp_path: Path) -> None:
    got = run(box, boot_once.ARM, box["profile"], tmp_path / "elsewhere", box["old"], box["record"])
    assert got.startswith(f"{boot_once.NO_GENERATION}:no generation of")
    assert calls(box) == []  # nothing set


def test_a_failing_bootctl_fails_the_arming(box: dict) -> None:
    got = run(box, boot_once.ARM, box["profile"], box["new"], box["old"], box["record"], fail="x")
    assert got.startswith("1:")


def test_confirm_clears_only_a_default_reconcile_set(box: dict, tmp_path: Path) -> None:
    state, current = tmp_path / "state", tmp_path / "current-system"
    current.symlink_to(box["new"])
    args = (state, box["new"], "", current, box["record"])
    assert run(box, CONFIRM, *args) == "0:"
    assert calls(box) == []  # no record: whatever default there is, a person's, stays
    run(box, boot_once.ARM, box["profile"], box["new"], box["old"], box["record"])
    assert run(box, CONFIRM, *args) == "0:"
    assert calls(box)[-1] == "set-default "  # the empty id: the variable is removed
    assert not box["record"].exists()
    run(box, boot_once.ARM, box["profile"], box["new"], box["old"], box["record"])
    assert run(box, CONFIRM, *args, fail="no EFI") == "6:"
    assert box["record"].exists()  # kept, to be cleared by the next confirmation


def test_restore_puts_profile_and_boot_default_back(box: dict) -> None:
    nix_env = box["bin"] / "nix-env"  # -p PROFILE --rollback | --set PATH, on the links
    nix_env.write_text(
        '#!/bin/sh\np=$2\nif [ "$3" = --rollback ]; then ln -sfn system-7-link "$p"; '
        'else ln -sfn "$4" "$p"; fi\n'
    )
    nix_env.chmod(0o755)
    run(box, boot_once.ARM, box["profile"], box["new"], box["old"], box["record"])
    assert run(box, boot_once.RESTORE, box["profile"], box["new"], box["old"], box["record"]) == (
        "0:"
    )
    assert box["profile"].resolve() == box["old"]
    assert calls(box)[-2:] == ["old boot", "set-default "]
    assert not box["record"].exists()


def test_parse_new_boot() -> None:
    assert boot_once.parse_new_boot("b-2\n/nix/store/x\n") == ("b-2", "/nix/store/x")
    assert boot_once.parse_new_boot("b-2\n\n") == ("b-2", "")
    assert boot_once.parse_new_boot("") == ("", "")
