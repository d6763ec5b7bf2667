"""A hung Nix build is cut at its limit, with a clear error, and leaves nothing running."""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import pytest

from reconcile.adapters import nix
from reconcile.core.errors import CommandError

pytestmark = pytest.mark.real

FLAKE = """{
  outputs = { self }: {
    hang = derivation {
      name = "hang";
      system = "x86_64-linux";
      builder = "${builtins.path { path = ./bb; name = "bb"; }}/busybox";
      args = [ "sh" "-c" "echo building; exec sleep 6000 # MARKER" ];
    };
  };
}
"""


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline:
                found.append(int(entry.name))
    return found


def test_hung_nix_build_is_killed_at_its_timeout(tmp_path: Path) -> None:
    marker = f"hang-{uuid.uuid4().hex[:12]}"  # a new derivation every run: never cached
    (tmp_path / "flake.nix").write_text(FLAKE.replace("MARKER", marker))
    (tmp_path / "bb").mkdir()
    shutil.copy2("/bin/busybox", tmp_path / "bb" / "busybox")
    started = time.monotonic()
    with pytest.raises(CommandError) as caught:
        nix.build([f"path:{tmp_path}#hang"], timeout_s=3)
    assert time.monotonic() - started < 30
    error = caught.value
    assert error.argv[0] == "nix" and error.returncode == -1
    assert "timed out after 3s and was killed" in error.output_tail
    assert "lab.build_timeout" in (error.hint or "")
    deadline = time.monotonic() + 10
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_with(marker) == []
