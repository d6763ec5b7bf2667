"""Benchmark: a no-op `reconcile plan` over N managed guests, as a whole process.

The guests are defined (state = "stopped": defined, not started) on the real libvirtd by
`reconcile apply`, then `reconcile plan` runs repeatedly with nothing to do. Prints the
median and spread, and where the time goes. Run: `make bench` or
`.venv/bin/python bench/noop_plan.py 100 1000`.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import libvirt

from reconcile.core.diff import diff_lab
from reconcile.core.plan import make_plan
from reconcile.core.report import render_text
from reconcile.logs import configure_logging
from reconcile.orchestration import pipeline

ROOT = Path(__file__).resolve().parent.parent
STATE = Path("/var/lib/reconcile-bench")
URI = "qemu:///system"
LAB = "bench"
RUNS = 7


def manifest(n: int) -> Path:
    text = f"""
[lab]
name = "{LAB}"
flake = "{ROOT / "nix"}"
state_dir = "{STATE / "state"}"  # its own: the manifest is beside it
[hypervisors.local]
uri = "{URI}"
accel = "qemu"
[kernels.host]
image = "/vmlinuz"
initrd_modules = ["virtio_pci", "virtiofs"]
"""
    for i in range(n):
        text += f"""
[guests.g{i:04d}]
mode = "imageless"
system = "demo-{"abc"[i % 3]}"
kernel = "host"
memory = "256MiB"
state = "stopped"
"""
    path = STATE / f"bench-{n}.toml"
    path.write_text(text)
    return path


def cleanup() -> None:
    conn = libvirt.open(URI)
    try:
        for dom in conn.listAllDomains(0):
            if dom.name().startswith(f"{LAB}-"):
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
    finally:
        conn.close()


def reconcile(*args: str) -> float:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "reconcile", *args], capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"reconcile {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return seconds


def bench(n: int) -> None:
    path = manifest(n)
    define_s = reconcile("apply", str(path), "--yes", "--parallel", "4")
    reconcile("plan", str(path), "--detailed-exitcode")  # warm: no changes, or it fails
    times = sorted(reconcile("plan", str(path), "--detailed-exitcode") for _ in range(RUNS))
    print(
        f"N={n:5d}  no-op plan: median {statistics.median(times):.3f}s "
        f"(min {times[0]:.3f}s, max {times[-1]:.3f}s, {RUNS} runs); "
        f"defining them took {define_s:.1f}s"
    )
    phases(path)


def phases(path: Path) -> None:
    """Where a no-op plan's time goes, phase by phase, in one process (imports excluded)."""
    clock = time.perf_counter
    configure_logging()  # warnings only, as the CLI's plan logs
    t0 = clock()
    manifest = pipeline.load(path)
    t1 = clock()
    guests = list(manifest.guests.values())
    pipeline.resolve_kernels(manifest, guests)
    t2 = clock()
    resolved = pipeline.intents(manifest, ())
    wanted, unbuilt = resolved.guests, resolved.unbuilt
    t3 = clock()
    ctx = pipeline.Context(manifest)
    observations = pipeline.observe(ctx)
    t4 = clock()
    plan = make_plan(diff_lab(manifest.lab.name, wanted, observations, prune=False), unbuilt)
    render_text(plan)
    t5 = clock()
    ctx.close()
    assert not plan.has_changes()
    print(
        f"  phases: manifest {t1 - t0:.3f}s, kernel (image hash) {t2 - t1:.3f}s, "
        f"intents incl. kernel + nix flake metadata {t3 - t2:.3f}s, "
        f"libvirt observe {t4 - t3:.3f}s, diff+plan+render {t5 - t4:.3f}s"
    )


def baseline() -> None:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import reconcile.cli"], check=True)
    imports = time.perf_counter() - started
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    bare = time.perf_counter() - started
    started = time.perf_counter()
    subprocess.run(
        [
            "nix",
            "--extra-experimental-features",
            "nix-command flakes",
            "flake",
            "metadata",
            "--json",
            f"path:{ROOT / 'nix'}",
        ],
        check=True,
        capture_output=True,
    )
    meta = time.perf_counter() - started
    print(
        f"floor: python start {bare:.3f}s, + importing reconcile.cli {imports:.3f}s, "
        f"nix flake metadata {meta:.3f}s"
    )


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [100, 1000]
    STATE.mkdir(parents=True, exist_ok=True)
    os.chmod(STATE, 0o755)
    print(f"machine: {os.cpu_count()} cores, {os.uname().release}, libvirt {libvirt.getVersion()}")
    baseline()
    try:
        for n in sizes:
            cleanup()
            bench(n)
    finally:
        cleanup()
        # no guest was started, so no view of /nix/store was mounted here
        if any(str(STATE) in line for line in Path("/proc/mounts").read_text().splitlines()):
            raise SystemExit(f"something is mounted below {STATE}: not removing it")
        shutil.rmtree(STATE, ignore_errors=True)


if __name__ == "__main__":
    main()
