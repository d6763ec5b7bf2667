"""Benchmark: a no-op `reconcile plan` over N baremetal hosts, as a whole process.

Each host is a test host (testbed/hosts.py: a network namespace, its own /nix and
/run, a real sshd). `reconcile apply` converges them, then `reconcile plan` runs
repeatedly with nothing to do. Also times the parts of one host's probe: the SSH
connection (TCP, key exchange, pinned host key, public-key auth) and the probe command.
Run: `.venv/bin/python bench/noop_hosts.py 1 4 8`.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.noop_plan import bytecode, reconcile  # noqa: E402
from reconcile.adapters.ssh import Session, observe_host  # noqa: E402
from reconcile.core.hosts.baremetal import PROBE  # noqa: E402
from reconcile.core.manifest import parse_manifest  # noqa: E402
from reconcile.logs import configure_logging  # noqa: E402
from testbed.hosts import TestHost  # noqa: E402

STATE = Path("/var/lib/reconcile-bench-hosts")
RUNS = 7


def manifest(hosts: list[TestHost]) -> Path:
    text = (
        f'[lab]\nname = "benchhosts"\nflake = "{ROOT / "nix"}"\nstate_dir = "{STATE / "state"}"\n'
    )
    for i, host in enumerate(hosts):
        text += f"""
[hosts.h{i:03d}]
system = "demo-a"
ssh = {{ target = "root@{host.address}", host_key = "{host.host_key_line}", \
identity = "{host.identity}" }}
health = [{{ tcp = 22 }}]
"""
    path = STATE / f"hosts-{len(hosts)}.toml"
    path.write_text(text)
    return path


def probe_parts(path: Path) -> str:
    """One host's connection and probe, in process, median of RUNS."""
    ssh = parse_manifest(path.read_bytes(), path).hosts["h000"].ssh
    connects, probes = [], []
    for _ in range(RUNS):
        session = Session(ssh)
        started = time.perf_counter()
        session.run(["true"])
        connected = time.perf_counter()
        observe_host(session)
        probed = time.perf_counter()
        session.run(PROBE)
        connects.append(connected - started - (probed - connected))  # minus one round trip
        probes.append(time.perf_counter() - probed)
        session.close()
    return (
        f"connect {statistics.median(connects) * 1000:.0f} ms, "
        f"probe round trip {statistics.median(probes) * 1000:.1f} ms"
    )


def bench(n: int) -> None:
    with ExitStack() as stack:
        hosts = [stack.enter_context(TestHost()) for _ in range(n)]
        path = manifest(hosts)
        apply_s = reconcile("apply", str(path), "--yes", "--parallel", "8")
        reconcile("plan", str(path), "--detailed-exitcode")  # warm: no changes, or it fails
        times = sorted(reconcile("plan", str(path), "--detailed-exitcode") for _ in range(RUNS))
        print(
            f"N={n:3d} hosts  no-op plan: median {statistics.median(times):.3f}s "
            f"(min {times[0]:.3f}s, max {times[-1]:.3f}s, {RUNS} runs); "
            f"first apply (copy, switch, health) {apply_s:.1f}s; one host: {probe_parts(path)}"
        )


def main() -> None:
    configure_logging()  # warnings only
    bytecode()
    shutil.rmtree(STATE, ignore_errors=True)
    STATE.mkdir(parents=True)
    for n in [int(a) for a in sys.argv[1:]] or [1, 4, 8]:
        bench(n)
    shutil.rmtree(STATE, ignore_errors=True)


if __name__ == "__main__":
    main()
