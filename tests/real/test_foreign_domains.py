"""A hypervisor with 1,000 domains that are not the lab's: the plan stays readable.

Real libvirtd (qemu:///system), the real CLI and Nix. 1,000 small inactive domains named
`foreign-0000`..`foreign-0999` (64 MiB, no disk, marked by their description as this
test's) are defined once for the module beside a lab of one imageless guest, and undefined
at the end, also when a test fails. The text plan counts them in one line; --show-unmanaged
lists them; --json lists every one. The plan's wall time with them is printed (never
asserted). Then an apply with stderr on a pseudo-terminal draws its live progress there
while its --json stdout stays pure JSON, and a plain apply (stderr a pipe) prints a line per
finished step.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tests.conftest import ROOT
from tests.support.cli import reconcile
from tests.support.stack import SYSTEM_URI, ensure_libvirtd, remove_tree
from tests.support.terminal import screen

pytestmark = pytest.mark.real

LAB = "fdlab"
COUNT = 1000
BASE = Path("/var/lib/reconcile-tests")  # not pytest's 0700 tmp: QEMU reads the initrd here
MARK = "reconcile test: tests/real/test_foreign_domains.py"
TIMES: dict[str, float] = {}  # what the module's set-up took, for the report
FOREIGN = re.compile(r"foreign-\d{4}")
GUEST = """
[guests.a]
mode = "imageless"
system = "demo-a"
kernel = "host"
memory = "384MiB"
shutdown_timeout = "15s"
boot_timeout = "120s"
"""


def foreign_xml(name: str) -> str:
    return (
        f"<domain type='qemu'><name>{name}</name><description>{MARK}</description>"
        "<memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os></domain>"
    )


def undefine_ours(conn: libvirt.virConnect) -> None:
    """Undefine every foreign-NNNN this test defined (its description says so), and the
    lab's domains; refuse to touch a foreign-NNNN of someone else."""
    for dom in conn.listAllDomains(0):
        name = dom.name()
        if name.startswith(f"{LAB}-"):
            if dom.isActive():
                dom.destroy()
            dom.undefine()
        elif FOREIGN.fullmatch(name):
            if MARK not in dom.XMLDesc(0):
                raise RuntimeError(f"{name} exists and is not this test's: not touching it")
            dom.undefine()


def others_count(conn: libvirt.virConnect) -> int:
    """Domains on the hypervisor that are not the lab's: the plan's unmanaged ones."""
    return sum(1 for dom in conn.listAllDomains(0) if not dom.name().startswith(f"{LAB}-"))


@pytest.fixture(scope="module")
def conn() -> Iterator[libvirt.virConnect]:
    ensure_libvirtd()
    opened = libvirt.open(SYSTEM_URI)
    try:
        undefine_ours(opened)  # a killed earlier run's
        started = time.monotonic()
        try:
            for i in range(COUNT):
                opened.defineXML(foreign_xml(f"foreign-{i:04d}"))
            TIMES["define"] = time.monotonic() - started
            yield opened
        finally:
            undefine_ours(opened)
    finally:
        opened.close()


@pytest.fixture(scope="module")
def manifest(conn: libvirt.virConnect) -> Iterator[Path]:
    root = BASE / LAB
    remove_tree(root)
    root.mkdir(parents=True)
    os.chmod(BASE, 0o755)
    shutil.copytree(ROOT / "nix", root / "flake", ignore=shutil.ignore_patterns("result*"))
    shutil.copy2("/bin/busybox", root / "flake" / "bb" / "busybox")
    path = root / "lab.toml"
    path.write_text(
        f"""
[lab]
name = "{LAB}"
flake = "{root / "flake"}"
state_dir = "{root / "state"}"
[hypervisors.local]
uri = "{SYSTEM_URI}"
accel = "qemu"
[kernels.host]
image = "/vmlinuz"
initrd_modules = ["virtio_pci", "virtiofs"]
"""
        + GUEST
    )
    try:
        yield path
    finally:
        undefine_ours(conn)
        remove_tree(root)  # unmounts the lab's read-only views first


def timed(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    proc = reconcile(*args)
    return proc, time.monotonic() - started


def report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    """Into the test's output even when it passes (-q captures prints)."""
    with capsys.disabled():
        print(f"\n{text}")


def json_documents(text: str) -> list[Any]:
    decoder, docs, i = json.JSONDecoder(), [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        doc, i = decoder.raw_decode(text, i)
        docs.append(doc)
    return docs


def test_the_text_plan_counts_foreign_domains_in_one_line(
    conn: libvirt.virConnect, manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cold, cold_s = timed("plan", str(manifest))  # evaluates the lab's system once (cached)
    assert cold.returncode == 0, cold.stdout + cold.stderr
    proc, plan_s = timed("plan", str(manifest))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    others = others_count(conn)
    assert others >= COUNT
    line = (
        f"{others} domains on local are not this lab's (never touched; --show-unmanaged lists them)"
    )
    lines = proc.stdout.splitlines()
    assert line in lines, proc.stdout
    assert not any(FOREIGN.search(text) for text in lines), proc.stdout
    assert "Plan: 1 to create." in lines
    assert len(lines) < 20, proc.stdout  # not 1,000
    report(
        capsys,
        f"plan with {others} domains on local that are not the lab's ({COUNT} foreign): "
        f"{plan_s:.2f}s wall (first, with evaluation: {cold_s:.2f}s); "
        f"{len(lines)} lines of text; defining the {COUNT} took {TIMES['define']:.1f}s",
    )


def test_show_unmanaged_lists_every_one(
    conn: libvirt.virConnect, manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proc, seconds = timed("plan", str(manifest), "--show-unmanaged")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = [line for line in proc.stdout.splitlines() if FOREIGN.search(line)]
    assert listed[0] == "  foreign-0000 on local" and listed[-1] == "  foreign-0999 on local"
    assert len(listed) == COUNT == len(set(listed))
    assert "not this lab's" not in proc.stdout
    report(capsys, f"plan --show-unmanaged: {seconds:.2f}s wall, {len(listed)} foreign listed")


def test_json_lists_every_one(
    conn: libvirt.virConnect, manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proc, seconds = timed("plan", str(manifest), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    unmanaged = json.loads(proc.stdout)["unmanaged"]
    foreign = [u["domain"] for u in unmanaged if FOREIGN.fullmatch(u["domain"])]
    assert foreign == [f"foreign-{i:04d}" for i in range(COUNT)]
    assert {u["hypervisor"] for u in unmanaged} == {"local"}
    assert len(unmanaged) == others_count(conn)
    report(capsys, f"plan --json: {seconds:.2f}s wall, {len(unmanaged)} unmanaged listed")


def run_on_pty(*args: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """The CLI with stderr on a pseudo-terminal of 120x40 (stdout and stdin not): what it
    wrote to stdout, and everything it drew on the terminal."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    drawn = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the last writer closed the terminal
                return
            if not chunk:
                return
            drawn.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "reconcile", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
            check=False,
            env={**os.environ, "TERM": "xterm-256color"},
            timeout=900,
        )
    finally:
        os.close(follower)
        reader.join(timeout=30)
        os.close(leader)
    return proc, drawn.decode(errors="replace")


def test_apply_draws_progress_on_the_terminal_and_keeps_json_on_stdout(
    manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proc, drawn = run_on_pty("apply", str(manifest), "--yes", "--json")
    assert proc.returncode == 0, proc.stdout + drawn
    plan, results = json_documents(proc.stdout)  # nothing but the two documents
    assert sum(1 for u in plan["unmanaged"] if FOREIGN.fullmatch(u["domain"])) == COUNT
    assert results["exit_code"] == 0
    keys = [r["key"] for r in results["results"]]
    assert {"a/define", "a/start", "a/wait-ready"} <= set(keys)
    # the live block was drawn (and erased: the cursor went up over it) ...
    assert "\x1b[J" in drawn and re.search(r"\x1b\[\d+F", drawn), drawn
    assert re.search(r"  a\s+(booting|waiting until ready)\s+\d+s", drawn), drawn
    # ... and what stays on the screen is a line per finished step, nothing running
    shown = [line for line in screen(drawn) if line.startswith("[")]
    total = len(keys)
    assert len(shown) == total, screen(drawn)
    assert all(
        line.startswith(f"[{i + 1:>{len(str(total))}}/{total}] ") for i, line in enumerate(shown)
    )
    assert any(re.fullmatch(r"\[.*\] a: wait-ready done \(\d+\.\ds\)", line) for line in shown)
    assert not any(line.startswith("  a ") for line in screen(drawn))
    report(capsys, "apply on a terminal, as its screen was left:\n" + "\n".join(screen(drawn)))


def test_a_plain_apply_prints_a_line_per_finished_step(
    manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest.write_text(manifest.read_text().replace(GUEST, ""))  # a leaves the lab
    proc = reconcile("apply", str(manifest), "--yes", "--prune")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "\x1b[" not in proc.stderr  # not a terminal: no drawing
    steps = [line for line in proc.stderr.splitlines() if line.startswith("[")]
    assert steps and all(re.fullmatch(r"\[\d+/\d+\] \S+: \S+ \S+ \(\d+\.\ds\)", s) for s in steps)
    assert any(re.fullmatch(r"\[.*\] a: undefine done \(.*\)", s) for s in steps), steps
    assert "Apply complete" in proc.stdout and not FOREIGN.search(proc.stdout)
    report(capsys, "apply, stderr a pipe:\n" + "\n".join(steps))
