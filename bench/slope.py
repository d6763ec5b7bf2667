"""The per-guest cost of a no-op plan at large N, in one process, on libvirt's test driver.

`reconcile apply` then `reconcile plan --detailed-exitcode` through `cli.main`, against
`test:///default` (in-process: no daemon, so the 10,000 guests of the largest size cost no
real libvirtd), with N foreign domains beside the lab's. Interpreter start and imports are
not in these figures (they are a fixed cost, see noop_plan.py); the slope between sizes is
the figure: `.venv/bin/python bench/slope.py 1000 10000`.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import shutil
import statistics
import sys
import time
from pathlib import Path

import libvirt

from reconcile import cli

ROOT = Path(__file__).resolve().parent.parent
STATE = Path("/var/lib/reconcile-bench-slope")
URI = "test:///default"
LAB = "slope"
RUNS = 5


def manifest(n: int) -> Path:
    text = f"""
[lab]
name = "{LAB}"
flake = "{ROOT / "nix"}"
state_dir = "{STATE / "state"}"
[hypervisors.test]
uri = "{URI}"
accel = "qemu"
[kernels.host]
image = "/vmlinuz"
[guests]
"""
    for i in range(n):  # one line each: 10,000 guests must fit the 1 MiB cap
        text += (
            f'g{i:05d} = {{mode = "imageless", system = "demo-{"abc"[i % 3]}", '
            'kernel = "host", state = "stopped"}\n'
        )
    path = STATE / f"slope-{n}.toml"
    path.write_text(text)
    return path


def run(*argv: str) -> tuple[int, float]:
    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    seconds = time.perf_counter() - started
    if code != 0:
        print(err.getvalue()[-2000:], file=sys.stderr)
    return code, seconds


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [1000, 10000]
    STATE.mkdir(parents=True, exist_ok=True)
    conn = libvirt.open(URI)  # the test driver's state lives as long as this process
    medians: dict[int, float] = {}
    for n in sizes:
        for dom in conn.listAllDomains(0):
            if dom.name().startswith((f"{LAB}-", "other-")):
                dom.undefine()
        for i in range(n):
            conn.defineXML(
                f"<domain type='test'><name>other-{i:05d}</name><memory>65536</memory>"
                "<os><type>hvm</type></os></domain>"
            )
        path = manifest(n)
        code, define_s = run("apply", str(path), "--yes", "--parallel", "4")
        assert code == 0, f"apply exited {code}"
        code, _ = run("plan", str(path), "--detailed-exitcode")
        assert code == 0, f"plan exited {code}: not a no-op"
        times = sorted(run("plan", str(path), "--detailed-exitcode")[1] for _ in range(RUNS))
        medians[n] = statistics.median(times)
        print(
            f"N={n:6d} (+{n} foreign, test driver, in process)  no-op plan: median "
            f"{medians[n]:.3f}s (min {times[0]:.3f}s, max {times[-1]:.3f}s, {RUNS} runs); "
            f"defining them took {define_s:.1f}s"
        )
    ordered = sorted(medians)
    for small, large in itertools.pairwise(ordered):
        slope = (medians[large] - medians[small]) / (large - small) * 1000
        print(f"slope {small} -> {large}: {slope:.3f} ms per guest")
    conn.close()
    shutil.rmtree(STATE, ignore_errors=True)


if __name__ == "__main__":
    main()
