"""Benchmark: a no-op `reconcile plan` and `apply` over N managed guests, as whole processes,
side by side with the floor (bench/floor.py: bare libvirt-python, list once, read the XML of
the lab's own domains, compare).

The guests are defined (state = "stopped": defined, not started) on the real libvirtd by
`reconcile apply`; N foreign domains (`other-*`, not the lab's) are defined beside them.
Then plan, apply and the floor run interleaved, 7 times each, with nothing to do. Prints
medians, the ratios to the floor, what the no-op apply wrote (defines seen as libvirt
lifecycle events, domain config files rewritten), and where a plan's time goes. Run:
`make bench` or `.venv/bin/python bench/noop_plan.py 100 1000` (under the real-tests lock).
"""

from __future__ import annotations

import compileall
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import libvirt

from reconcile.adapters import libvirt as libvirt_adapter
from reconcile.core.plan.diff import diff_lab
from reconcile.core.plan.graph import make_plan
from reconcile.core.plan.report import render_text
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


OTHER = "other"
MEMORY_KIB = str(256 * 1024)
CONFIGS = Path("/etc/libvirt/qemu")


def cleanup() -> None:
    conn = libvirt.open(URI)
    try:
        for dom in conn.listAllDomains(0):
            if dom.name().startswith((f"{LAB}-", f"{OTHER}-")):
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
    finally:
        conn.close()


def define_foreign(n: int) -> None:
    """N domains of something else on the same hypervisor (never started)."""
    conn = libvirt.open(URI)
    try:
        for i in range(n):
            conn.defineXML(
                f"<domain type='qemu'><name>{OTHER}-{i:05d}</name><memory>65536</memory>"
                "<os><type arch='x86_64'>hvm</type></os></domain>"
            )
    finally:
        conn.close()


class Events:
    """Counts libvirt lifecycle events (a define is one) while the bench runs."""

    def __init__(self) -> None:
        # libvirt's one event loop per process, as reconcile runs it (the phases below
        # open reconcile's own connections in this process)
        libvirt_adapter._start_event_loop()
        self.count = 0
        self.conn = libvirt.openReadOnly(URI)
        self.conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._seen, None
        )

    def _seen(self, _conn: object, dom: object, *_args: object) -> None:
        self.count += 1


def configs() -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in CONFIGS.glob(f"{LAB}-*.xml")}


def bytecode() -> None:
    """reconcile measured as installed, with its modules compiled: where
    PYTHONDONTWRITEBYTECODE is set (it is on this project's machines) each run would
    otherwise compile them all from source, which the floor's libvirt-python never does."""
    compileall.compile_dir(ROOT / "reconcile", quiet=1)


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stdout}\n{proc.stderr}")
    return seconds


def reconcile(*args: str) -> float:
    return timed([sys.executable, "-m", "reconcile", *args])


def bench(n: int, events: Events) -> None:
    path = manifest(n)
    define_s = reconcile("apply", str(path), "--yes", "--parallel", "4")
    define_foreign(n)
    reconcile("plan", str(path), "--detailed-exitcode")  # warm: no changes, or it fails
    floor_argv = [sys.executable, str(ROOT / "bench" / "floor.py"), URI, LAB, str(n), MEMORY_KIB]
    timed(floor_argv)  # warm, and it checks the domains are as wanted
    before_events, before_configs = events.count, configs()
    plans, applies, floors = [], [], []
    for _ in range(RUNS):  # interleaved: plan, floor, apply, floor, ...
        plans.append(reconcile("plan", str(path), "--detailed-exitcode"))
        floors.append(timed(floor_argv))
        applies.append(reconcile("apply", str(path), "--yes"))
        floors.append(timed(floor_argv))
    time.sleep(0.5)  # let the last events arrive
    wrote_events = events.count - before_events
    after = configs()
    rewritten = sum(1 for name, mtime in after.items() if before_configs.get(name) != mtime)
    plan_s, apply_s = statistics.median(plans), statistics.median(applies)
    floor_s = statistics.median(floors)
    print(
        f"N={n:5d} (+{n} foreign)  no-op plan: median {plan_s:.3f}s "
        f"(min {min(plans):.3f}s, max {max(plans):.3f}s); no-op apply: median {apply_s:.3f}s "
        f"(min {min(applies):.3f}s, max {max(applies):.3f}s); floor: median {floor_s:.3f}s "
        f"(min {min(floors):.3f}s, max {max(floors):.3f}s); {RUNS} runs each\n"
        f"  ratios to the floor: plan {plan_s / floor_s:.2f}x, apply {apply_s / floor_s:.2f}x; "
        f"the {RUNS} no-op applies wrote: {wrote_events} lifecycle events, "
        f"{rewritten} of {len(after)} domain config files rewritten; "
        f"defining the guests took {define_s:.1f}s"
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
    bytecode()
    print(f"machine: {os.cpu_count()} cores, {os.uname().release}, libvirt {libvirt.getVersion()}")
    baseline()
    events = Events()
    try:
        for n in sizes:
            cleanup()
            bench(n, events)
    finally:
        cleanup()
        # no guest was started, so no view of /nix/store was mounted here
        if any(str(STATE) in line for line in Path("/proc/mounts").read_text().splitlines()):
            raise SystemExit(f"something is mounted below {STATE}: not removing it")
        shutil.rmtree(STATE, ignore_errors=True)


if __name__ == "__main__":
    main()
