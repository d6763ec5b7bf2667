"""Benchmark: a no-op `reconcile plan` over H hypervisors and G guests in all (issue 14).

Each hypervisor is libvirt's test driver on a file of its own, `test:///<file>`: the G
guests are defined once by `reconcile apply` (in process, on `test:///default`), their
inactive XML, with reconcile's ownership mark, is written out spread evenly over H files,
beside G foreign domains (`other-*`) spread the same way, so a plan over them has nothing
to do. Then `reconcile plan --detailed-exitcode` (a whole process, as bench/noop_plan.py
times it) runs interleaved with the floor, bench/floor.py as a whole process on one test
driver file holding all G guests and G foreign domains (list once, `XMLDesc` of the lab's
own G, compare): the bare libvirt cost of the same guests, measured in the same run. The
test driver runs inside the reconcile process (no daemon, no socket), so these figures are
reconcile's own cost, with no libvirtd round trip in them. Prints a table (median wall
seconds, per guest, ratio to the floor) and how the time grows with guests and with
hypervisors (least-squares fits). Loopback only: no network at all.

The lab's flake is a copy of nix/ without the disk image tools (nix/bb/disk, ~110 MB that
`nix flake metadata` would hash on every plan; stopped imageless guests need none).

Then real daemons (part 2), if testbed/hosts.py has `TestHost(libvirtd=True)`: a no-op plan
over the machine's own libvirtd (`qemu:///system`) and k test hosts, each a network
namespace with its own sshd and libvirtd reached at `qemu+ssh://root@10.253.n.2/system`
with a pinned host key, each hypervisor holding a few stopped guests (defined by `reconcile
apply`, never started). Prints the plan's wall time against k, the libvirt observation of
all of them against the sum and the max of each alone, and what connecting over SSH costs.
It defines (and at the end undefines) `hvremote-*` domains on the machine's libvirtd.

Run: `.venv/bin/python bench/noop_hypervisors.py` (the full grid, H in 1 2 4 8, G in 100
1000 10000, then k in 0 1 2 3) or `--quick` (H in 1 2 4, G in 100 1000, k in 0 1);
`--hypervisors`, `--guests` and `--remote` pick another grid, `--no-remote` and
`--remote-only` one part.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import itertools
import os
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import libvirt  # noqa: E402

from bench.noop_plan import OTHER, bytecode, phases, reconcile, timed  # noqa: E402
from reconcile import cli  # noqa: E402
from reconcile.core.guests.identity import domain_name  # noqa: E402
from reconcile.logs import configure_logging  # noqa: E402
from reconcile.orchestration import pipeline  # noqa: E402
from testbed import hosts as testbed_hosts  # noqa: E402

STATE = Path("/var/lib/reconcile-bench-hypervisors")
LAB = "hvbench"
FULL = ([1, 2, 4, 8], [100, 1000, 10000])
QUICK = ([1, 2, 4], [100, 1000])
BIG = 10000  # from this many guests on, fewer runs
RUNS, BIG_RUNS = 7, 3
MEMORY_KIB = str(1024 * 1024)  # the default memory, 1 GiB: what floor.py compares


def guest_lines(g: int, h: int | None) -> str:
    """One short line per guest: 10,000 of them must fit the manifest's 1 MiB cap."""
    text = "[guests]\n"
    for i in range(g):
        on = f',hypervisor="h{i % h}"' if h is not None else ""
        text += (
            f'g{i:05d}={{mode="imageless",system="demo-{"abc"[i % 3]}",kernel="host",'
            f'state="stopped"{on}}}\n'
        )
    return text


def header() -> str:
    return f"""
[lab]
name = "{LAB}"
flake = "{STATE / "flake"}"
state_dir = "{STATE / "state"}"
[kernels.host]
image = "/vmlinuz"
"""


def flake_copy(into: Path) -> Path:
    """The lab's flake in a directory of its own (no disk image tools: stopped imageless
    guests need none)."""

    def skip(directory: str, names: list[str]) -> list[str]:
        out = [n for n in names if n.startswith("result")]
        return [*out, "disk"] if Path(directory).name == "bb" and "disk" in names else out

    return Path(shutil.copytree(ROOT / "nix", into, ignore=skip))


def define(g: int) -> list[str]:
    """The inactive XML of G guests as `reconcile apply` defines them (test driver, in process)."""
    conn = libvirt.open("test:///default")  # its state lives as long as this connection
    try:
        for dom in conn.listAllDomains(0):
            dom.undefine()
        path = STATE / f"apply-{g}.toml"
        path.write_text(
            header()
            + '[hypervisors.test]\nuri = "test:///default"\naccel = "qemu"\n'
            + guest_lines(g, None)
        )
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["apply", str(path), "--yes", "--parallel", "4"])
        if code != 0:
            raise SystemExit(f"apply of {g} guests exited {code}:\n{err.getvalue()[-2000:]}")
        xml = [
            dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
            for dom in sorted(conn.listAllDomains(0), key=lambda d: d.name())
            if dom.name().startswith(f"{LAB}-")
        ]
    finally:
        conn.close()
    if len(xml) != g:
        raise SystemExit(f"apply defined {len(xml)} of {g} guests")
    return xml


def foreign(i: int) -> str:
    return (
        f"<domain type='test'><name>{OTHER}-{i:05d}</name><memory>65536</memory>"
        "<os><type>hvm</type></os></domain>"
    )


# The test driver starts every domain of its file unless told its run state (5: shut off).
TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"
SHUT_OFF = f"<test:runstate xmlns:test='{TEST_NS}'>5</test:runstate>"


def driver_file(path: Path, domains: list[str]) -> str:
    """A test driver file holding `domains`, defined and shut off; its URI."""
    stopped = [d.replace("</domain>", SHUT_OFF + "</domain>") for d in domains]
    path.write_text("<node>\n" + "\n".join(stopped) + "\n</node>\n")
    return f"test://{path}"


def lay_out(h: int, xml: list[str]) -> Path:
    """H test driver files, guest i and foreign domain i on hypervisor i % H; the manifest."""
    g = len(xml)
    text = header()
    for k in range(h):
        mine = [xml[i] for i in range(k, g, h)] + [foreign(i) for i in range(k, g, h)]
        uri = driver_file(STATE / f"h{h}-g{g}-{k}.xml", mine)
        text += f'[hypervisors.h{k}]\nuri = "{uri}"\naccel = "qemu"\n'
    path = STATE / f"plan-h{h}-g{g}.toml"
    path.write_text(text + guest_lines(g, h))
    return path


# median plan, min, max; median floor, median of opening the floor's file
Figures = tuple[float, float, float, float, float]
# A whole process that only opens the floor's file: what the test driver's loading costs.
OPEN = "import sys, libvirt; libvirt.open(sys.argv[1]).close()"


def bench(hs: list[int], g: int) -> dict[int, Figures]:
    """For each H: the figures of its plan, the floor's and the open's interleaved."""
    started = time.perf_counter()
    xml = define(g)
    define_s = time.perf_counter() - started
    floor_uri = driver_file(STATE / f"floor-g{g}.xml", xml + [foreign(i) for i in range(g)])
    floor_argv = [sys.executable, str(ROOT / "bench" / "floor.py"), floor_uri, LAB, str(g)]
    floor_argv.append(MEMORY_KIB)
    paths = {h: lay_out(h, xml) for h in hs}
    for path in paths.values():
        reconcile("plan", str(path), "--detailed-exitcode")  # warm: no changes, or it fails
    timed(floor_argv)  # warm, and it checks the domains are as wanted
    open_argv = [sys.executable, "-c", OPEN, floor_uri]
    runs = BIG_RUNS if g >= BIG else RUNS
    plans: dict[int, list[float]] = {h: [] for h in hs}
    floors: list[float] = []
    opens: list[float] = []
    for _ in range(runs):  # interleaved: floor, open, plan H1, plan H2, ..., floor, ...
        floors.append(timed(floor_argv))
        opens.append(timed(open_argv))
        for h in hs:
            plans[h].append(reconcile("plan", str(paths[h]), "--detailed-exitcode"))
    floor_s, open_s = statistics.median(floors), statistics.median(opens)
    print(
        f"G={g}: defining them took {define_s:.1f}s (apply in process); floor median "
        f"{floor_s:.3f}s (min {min(floors):.3f}s, max {max(floors):.3f}s), of which "
        f"opening the file (the test driver loads its {2 * g} domains) {open_s:.3f}s; "
        f"{runs} runs each",
        flush=True,
    )
    for h in hs:  # where one plan's time goes, in process (noop_plan.py's phases)
        print(f"  H={h}:", end="")
        phases(paths[h])
    return {h: (statistics.median(t), min(t), max(t), floor_s, open_s) for h, t in plans.items()}


def fit(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Least squares y = a + b x: (a, b)."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in points) / sxx
    return my - b * mx, b


def report(results: dict[tuple[int, int], Figures]) -> None:
    print(
        "\n| H hypervisors | G guests | no-op plan (median) | min - max | per guest "
        "| floor (1 file, G guests) | of it, opening the file | plan / floor |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for (h, g), (plan_s, low, high, floor_s, open_s) in sorted(results.items()):
        print(
            f"| {h} | {g} | {plan_s:.3f} s | {low:.3f} - {high:.3f} s | "
            f"{plan_s / g * 1000:.3f} ms | {floor_s:.3f} s | {open_s:.3f} s | "
            f"{plan_s / floor_s:.2f}x |"
        )
    hs = sorted({h for h, _ in results})
    gs = sorted({g for _, g in results})
    print("\nhow it grows:")
    floors = [(g, results[hs[0], g][3]) for g in gs if (hs[0], g) in results]
    if len(floors) >= 2:
        a, b = fit(floors)
        print(f"  floor: ≈ {a:.3f}s + {b * 1000:.3f} ms per guest")
    for h in hs:
        points = [(g, results[h, g][0]) for g in gs if (h, g) in results]
        if len(points) >= 2:
            a, b = fit(points)
            steps = ", ".join(
                f"{g1}->{g2}: {(t2 - t1) / (g2 - g1) * 1000:.3f}"
                for (g1, t1), (g2, t2) in itertools.pairwise(points)
            )
            print(
                f"  H={h}: plan ≈ {a:.3f}s + {b * 1000:.3f} ms per guest "
                f"(slopes, ms per guest: {steps})"
            )
    for g in gs:
        points = [(h, results[h, g][0]) for h in hs if (h, g) in results]
        if len(points) >= 2:
            a, b = fit(points)
            first, last = points[0], points[-1]
            print(
                f"  G={g}: plan ≈ {a:.3f}s + {b * 1000:.1f} ms per hypervisor; "
                f"H={last[0]} / H={first[0]}: {last[1] / first[1]:.2f}x"
            )


# --- part 2: real daemons, the machine's libvirtd and test hosts' own ---------------------

RSTATE = Path("/var/lib/reconcile-bench-hypervisors-remote")
RLAB = "hvremote"
LOCAL_URI = "qemu:///system"
PER_HYPERVISOR = 4  # stopped guests on each


def remote_missing() -> str | None:
    """Why part 2 cannot run here, or None: it needs testbed's `TestHost(libvirtd=True)`."""
    if "libvirtd" not in inspect.signature(testbed_hosts.TestHost).parameters:
        return "testbed/hosts.py has no TestHost(libvirtd=True)"
    return None


def remote_manifest(flake: Path, hosts: list[testbed_hosts.TestHost], k: int) -> Path:
    """qemu:///system plus the first k test hosts' libvirtds, PER_HYPERVISOR guests each."""
    text = f"""
[lab]
name = "{RLAB}"
flake = "{flake}"
state_dir = "{RSTATE / "state"}"
[kernels.host]
image = "/vmlinuz"
[hypervisors.local]
uri = "{LOCAL_URI}"
accel = "qemu"
"""
    names = ["local"]
    for i, host in enumerate(hosts[:k], 1):
        names.append(f"r{i}")
        text += f"""[hypervisors.r{i}]
uri = "qemu+ssh://root@{host.address}/system"
host_key = "{host.host_key_line}"
identity = "{host.identity}"
accel = "qemu"
"""
    text += "[guests]\n"
    for name in names:
        for j in range(PER_HYPERVISOR):
            text += (
                f'{name}-{j}={{mode="imageless",system="demo-a",kernel="host",'
                f'state="stopped",hypervisor="{name}"}}\n'
            )
    path = RSTATE / f"remote-{k}.toml"
    path.write_text(text)
    return path


def undefine_local() -> None:
    conn = libvirt.open(LOCAL_URI)
    try:
        for dom in conn.listAllDomains(0):
            if dom.name().startswith(f"{RLAB}-"):
                dom.undefine()
    finally:
        conn.close()


def observe_parts(path: Path) -> tuple[float, float]:
    """In process, one after the other: the libvirt observation of all hypervisors (in
    parallel), then the remote machines' files (views, GC roots, kernel copies over SSH, in
    parallel); connections included. (A plan runs the two at once.)"""
    manifest = pipeline.load(path)
    wanted = pipeline.intents(manifest, ()).guests
    ctx = pipeline.Context(manifest)
    try:
        started = time.perf_counter()
        observations = pipeline.observe(ctx)
        observed = time.perf_counter()
        pipeline.observe_machines(ctx, wanted)
        done = time.perf_counter()
    finally:
        ctx.close()
    if any(o.error for o in observations.values()):
        raise SystemExit(f"{path}: {[o.error for o in observations.values() if o.error]}")
    return observed - started, done - observed


def alone(path: Path, name: str) -> tuple[float, float]:
    """In process: one hypervisor's libvirt observation with its connect, then again on the
    open connection."""
    manifest = pipeline.load(path)
    prefix = domain_name(RLAB, "")
    ctx = pipeline.Context(manifest)
    try:
        driver = ctx.hypervisor(name)
        started = time.perf_counter()
        driver.observe(prefix)
        first = time.perf_counter()
        driver.observe(prefix)
        again = time.perf_counter()
    finally:
        ctx.close()
    return first - started, again - first


def remote(ks: list[int]) -> None:
    """A no-op plan over qemu:///system and k test hosts' libvirtds, each holding
    PER_HYPERVISOR stopped guests: wall time against k, and what each part costs."""
    configure_logging()  # warnings only, as the CLI's plan logs
    runs = RUNS
    if RSTATE.exists():
        shutil.rmtree(RSTATE)
    RSTATE.mkdir(parents=True)
    os.chmod(RSTATE, 0o755)
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, RSTATE, True)
        stack.callback(undefine_local)
        started = time.perf_counter()
        (RSTATE / "state").mkdir()
        # each host has its own state directory at the lab's path, as separate machines do
        private = (RSTATE / "state",)
        hosts = [
            stack.enter_context(testbed_hosts.TestHost(libvirtd=True, private_dirs=private))
            for _ in range(max(ks))
        ]
        up_s = time.perf_counter() - started
        flake = flake_copy(RSTATE / "flake")
        paths = {k: remote_manifest(flake, hosts, k) for k in ks}
        define_s = reconcile("apply", str(paths[max(ks)]), "--yes")
        for k in ks:
            reconcile("plan", str(paths[k]), "--detailed-exitcode")  # warm: no changes
        plans: dict[int, list[float]] = {k: [] for k in ks}
        for _ in range(runs):
            for k in ks:
                plans[k].append(reconcile("plan", str(paths[k]), "--detailed-exitcode"))
        parts = {k: [observe_parts(paths[k]) for _ in range(5)] for k in ks}
        names = ["local"] + [f"r{i}" for i in range(1, max(ks) + 1)]
        single = {n: [alone(paths[max(ks)], n) for _ in range(5)] for n in names}
        if any(str(RSTATE) in line for line in Path("/proc/mounts").read_text().splitlines()):
            raise SystemExit(f"something is mounted below {RSTATE}: not removing it")
    print(
        f"\nreal daemons: {max(ks)} test host(s) with their own libvirtd up in {up_s:.1f}s; "
        f"defining {PER_HYPERVISOR} stopped guests on each hypervisor took {define_s:.1f}s "
        f"(apply); {runs} runs each, interleaved"
    )
    print(
        "\n| k remote (+ qemu:///system) | no-op plan (median) | min - max "
        "| libvirt observe, all (in process) | remote files observe, all (SSH) |"
    )
    print("|---|---|---|---|---|")
    med = {k: statistics.median(plans[k]) for k in ks}
    for k in ks:
        lib = statistics.median(p[0] for p in parts[k])
        files = statistics.median(p[1] for p in parts[k])
        print(
            f"| {k} | {med[k]:.3f} s | {min(plans[k]):.3f} - {max(plans[k]):.3f} s "
            f"| {lib:.3f} s | {files:.3f} s |"
        )
    print("\none hypervisor alone, in process (median of 5):")
    firsts = {}
    for n in names:
        first = statistics.median(t[0] for t in single[n])
        again = statistics.median(t[1] for t in single[n])
        firsts[n] = first
        print(
            f"  {n}: connect + observe {first * 1000:.0f} ms, observe on the open "
            f"connection {again * 1000:.1f} ms, so connecting ≈ {(first - again) * 1000:.0f} ms"
        )
    print("\nhow it grows:")
    base = ks[0]
    step = med[ks[1]] - med[base] if len(ks) > 1 else 0.0
    for k in ks:
        if k == base:
            continue
        remotes = [firsts[f"r{i}"] for i in range(1, k + 1)]
        lib = statistics.median(p[0] for p in parts[k])
        summed = step * (k - base) / (ks[1] - base)
        print(
            f"  k={k}: plan +{(med[k] - med[base]) * 1000:.0f} ms over k={base} (one at a time "
            f"would be ≈ +{summed * 1000:.0f} ms); libvirt "
            f"observe of all {lib * 1000:.0f} ms, against the sum of each alone "
            f"{(sum(remotes) + firsts['local']) * 1000:.0f} ms and their max "
            f"{max([*remotes, firsts['local']]) * 1000:.0f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="H in 1 2 4, G in 100 1000")
    parser.add_argument("--hypervisors", type=int, nargs="+", metavar="H")
    parser.add_argument("--guests", type=int, nargs="+", metavar="G")
    parser.add_argument(
        "--remote", type=int, nargs="+", metavar="K", help="k test hosts' libvirtds (part 2)"
    )
    parser.add_argument("--no-remote", action="store_true", help="the test driver curve only")
    parser.add_argument("--remote-only", action="store_true", help="part 2 only")
    args = parser.parse_args()
    hs, gs = QUICK if args.quick else FULL
    hs, gs = args.hypervisors or hs, args.guests or gs
    ks = args.remote or ([0, 1] if args.quick else [0, 1, 2, 3])
    bytecode()
    if args.remote_only:
        if missing := remote_missing():
            raise SystemExit(f"real daemons: cannot run, {missing}")
        remote(ks)
        return
    if STATE.exists():
        shutil.rmtree(STATE)
    STATE.mkdir(parents=True)
    os.chmod(STATE, 0o755)
    flake_copy(STATE / "flake")
    print(f"machine: {os.cpu_count()} cores, {os.uname().release}, libvirt {libvirt.getVersion()}")
    results = {}
    try:
        for g in gs:
            for h, figures in bench(hs, g).items():
                results[h, g] = figures
    finally:
        shutil.rmtree(STATE, ignore_errors=True)
    report(results)
    if args.no_remote:
        return
    if missing := remote_missing():
        print(f"\nreal daemons: skipped, {missing}")
        return
    remote(ks)


if __name__ == "__main__":
    main()
