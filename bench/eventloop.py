"""Benchmark: what libvirt's event loop (which keepalive needs) costs per call.

reconcile runs libvirt's default event loop in a thread so that keepalive can close a
connection to a daemon that stopped answering. With a loop running, every RPC reply is
handed from the loop's thread to the caller. This defines N small inactive domains, reads
their XML with and without the loop (each in its own process, interleaved, median of 7),
and removes them. Run: `.venv/bin/python bench/eventloop.py 500`.
"""

from __future__ import annotations

import statistics
import subprocess
import sys

import libvirt

URI = "qemu:///system"
PREFIX = "evloop-bench-"
RUNS = 7

MEASURE = """
import sys, threading, time, libvirt
if sys.argv[1] == "loop":
    libvirt.virEventRegisterDefaultImpl()
    threading.Thread(target=lambda: [libvirt.virEventRunDefaultImpl() for _ in iter(int, 1)],
                     daemon=True).start()
conn = libvirt.open(sys.argv[2])
if sys.argv[1] == "loop":
    conn.setKeepAlive(5, 6)
doms = [d for d in conn.listAllDomains(0) if d.name().startswith(sys.argv[3])]
started = time.perf_counter()
for d in doms:
    d.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
print(time.perf_counter() - started)
"""


def measure(mode: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, mode, URI, PREFIX],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(out)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    conn = libvirt.open(URI)
    names = [f"{PREFIX}{i:05d}" for i in range(n)]
    for name in names:
        conn.defineXML(
            f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory>"
            "<os><type arch='x86_64'>hvm</type></os></domain>"
        )
    try:
        times: dict[str, list[float]] = {"plain": [], "loop": []}
        for _ in range(RUNS):
            for mode, samples in times.items():
                samples.append(measure(mode))
        plain, loop = (statistics.median(times[m]) for m in ("plain", "loop"))
        print(
            f"{n} inactive XMLDesc, median of {RUNS}: without the event loop "
            f"{plain * 1000:.1f} ms, with it {loop * 1000:.1f} ms "
            f"({(loop - plain) / n * 1e6:.0f} us more per call)"
        )
    finally:
        for name in names:
            conn.lookupByName(name).undefine()


if __name__ == "__main__":
    main()
