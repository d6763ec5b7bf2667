"""A lock held past lab.lock_warn_after shows in plan, drift and the metrics, with its holder."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.support.cli import reconcile

# Holds the lab's lock as apply does, then says it started three hours ago.
HOLD = """
import json, sys, time
from pathlib import Path
from reconcile.adapters.lock import LabLock
path = Path(sys.argv[1])
with LabLock(path):
    info = json.loads(path.read_text())
    info["started"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3 * 3600))
    path.write_text(json.dumps(info))
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_lock_held_too_long_is_shown_and_measured(tmp_path: Path) -> None:
    state = tmp_path / "state"
    manifest = tmp_path / "lab.toml"
    manifest.write_text(
        f'[lab]\nname = "la"\nstate_dir = "{state}"\nlock_warn_after = "2h"\n'
        '[hypervisors.t]\nuri = "test:///default"\n'
    )
    assert reconcile("plan", str(manifest)).returncode == 0  # makes and marks the state dir
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(state / "lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        plan = reconcile("plan", str(manifest))
        assert plan.returncode == 0, plan.stderr
        assert "warning: the lab's lock has been held for 3h" in plan.stderr
        assert f"pid {holder.pid}" in plan.stderr
        metrics = tmp_path / "drift.prom"
        drift = reconcile("drift", str(manifest), "--format", "json", "--metrics", str(metrics))
        notices = json.loads(drift.stdout)["notices"]
        assert any("held for 3h" in n["text"] for n in notices), drift.stdout
        held = [ln for ln in metrics.read_text().splitlines() if ln.startswith("reconcile_lock_")]
        assert len(held) == 1 and float(held[0].split()[-1]) >= 3 * 3600 - 60
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    again = reconcile("plan", str(manifest))
    assert "lock" not in again.stderr  # free again: nothing to say
