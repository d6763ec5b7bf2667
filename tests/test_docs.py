from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_manifest_reference_is_up_to_date() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_manifest_docs.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_reference_mentions_every_guest_key() -> None:
    text = (ROOT / "docs" / "manifest.md").read_text()
    for key in ("`memory`", "`kernel_params`", "`initrd_modules`", "`host_key`", "`interval`"):
        assert key in text
