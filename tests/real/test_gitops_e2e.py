"""GitOps and drift end to end: real git (a bare repository as the remote), the real
libvirtd with QEMU (TCG) guests booting the demo flake, the real CLI.

The lab's manifest lives in the repository (`lab.toml`); the controller's copy
(`controller.toml`) names the repository in its [gitops] table. Tests run in order and each
leaves the lab converged on the branch's head.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconcile.adapters.lock import LabLock
from reconcile.core.drift.report import BANNER_COLORS
from tests.conftest import ROOT
from tests.core.test_metrics import parse as parse_metrics
from tests.support.browser import decode_png, hex_rgb, screenshot
from tests.support.cli import reconcile
from tests.support.stack import SYSTEM_URI, ensure_libvirtd, remove_tree

pytestmark = pytest.mark.real

LAB = "gitops"
BASE = Path("/var/lib/reconcile-tests/gitops")
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Lab Admin",
    "GIT_AUTHOR_EMAIL": "admin@lab.example",
    "GIT_COMMITTER_NAME": "Lab Admin",
    "GIT_COMMITTER_EMAIL": "admin@lab.example",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def virsh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["virsh", "-c", SYSTEM_URI, *args], capture_output=True, text=True, check=check
    )


def domains() -> dict[str, str]:
    """This lab's domains and their state."""
    out = virsh("list", "--all", "--name").stdout.split()
    return {n: virsh("domstate", n).stdout.strip() for n in out if n.startswith(f"{LAB}-")}


def cleanup() -> None:
    for name in domains():
        virsh("destroy", name, check=False)
        virsh("undefine", name, check=False)


class Repo:
    """The lab's repository: a bare remote and a work clone the tests commit from."""

    def __init__(self, root: Path) -> None:
        self.remote = root / "remote.git"
        self.work = root / "work"
        self.flake = root / "flake"
        self.state = root / "state"
        self.guests: dict[str, str] = {}

    def git(self, *args: str) -> str:
        proc = subprocess.run(
            ["git", *args],
            cwd=self.work,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, **GIT_ENV},
        )
        return proc.stdout.strip()

    def lab_header(self) -> str:
        return (
            f'[lab]\nname = "{LAB}"\nflake = "{self.flake}"\nstate_dir = "{self.state}"\n'
            f'[hypervisors.local]\nuri = "{SYSTEM_URI}"\naccel = "qemu"\n'
            '[kernels.host]\nimage = "/vmlinuz"\ninitrd_modules = ["virtio_pci", "virtiofs"]\n'
        )

    def manifest_text(self) -> str:
        text = self.lab_header()
        for name, extra in sorted(self.guests.items()):
            text += (
                f'\n[guests.{name}]\nmode = "imageless"\nsystem = "demo-a"\nkernel = "host"\n'
                f'memory = "384MiB"\nshutdown_timeout = "15s"\nboot_timeout = "120s"\n{extra}\n'
            )
        return text

    def commit(self, message: str, text: str | None = None, *, push: bool = True) -> str:
        (self.work / "lab.toml").write_text(text if text is not None else self.manifest_text())
        self.git("add", "lab.toml")
        self.git("commit", "-q", "-m", message)
        if push:
            self.git("push", "-q", "origin", "HEAD:main")
        return self.git("rev-parse", "HEAD")


class Controller:
    def __init__(self, root: Path, repo: Repo) -> None:
        self.root = root
        self.repo = repo
        self.manifest = root / "controller.toml"
        self.reports = root / "reports"
        self.metrics = root / "metrics" / "reconcile.prom"
        self.configure()

    def configure(self, extra: str = "require_signed = false\n", repo: str = "") -> None:
        """The controller's manifest; by default it follows unsigned commits, and lets the
        repository's manifest name the flake (outside the repository) and /vmlinuz."""
        self.manifest.write_text(
            self.repo.lab_header()
            + f'\n[gitops]\nrepo = "{repo or self.repo.remote}"\nbranch = "main"\n'
            'manifest = "lab.toml"\ninterval = "5min"\napply = "auto"\n'
            f'allowed_paths = ["{self.repo.flake}", "/vmlinuz", "{self.root / "allowed"}"]\n'
            + extra
        )

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return reconcile(*args)

    def cycle(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.run(
            "gitops",
            str(self.manifest),
            "--report-dir",
            str(self.reports),
            "--metrics",
            str(self.metrics),
            *extra,
        )

    def drift(self) -> tuple[int, dict[str, object]]:
        proc = self.run("drift", str(self.repo.work / "lab.toml"), "--format", "json")
        assert proc.returncode in (0, 2), proc.stdout + proc.stderr
        return proc.returncode, json.loads(proc.stdout)

    def history(self) -> list[dict[str, object]]:
        proc = self.run("history", str(self.manifest), "--json", "--limit", "50")
        assert proc.returncode == 0, proc.stderr
        runs: list[dict[str, object]] = json.loads(proc.stdout)
        return runs

    def assert_failed_at(self, stage: str, outcome: str) -> None:
        """The last cycle's trace: history (JSON and text), metrics, the report directory."""
        run = next(r for r in self.history() if r["kind"] == "gitops")
        assert (run["outcome"], run["exit_code"]) == (outcome, 1), run
        assert run["summary"]["stage"] == stage  # type: ignore[index]
        text = self.run("history", str(self.manifest), "--kind", "gitops", "--limit", "1")
        assert f"failed at {stage}: " in text.stdout, text.stdout
        families = parse_metrics(self.metrics.read_text())
        failed = {s[0]["stage"]: s[1] for s in families["reconcile_gitops_failed"].samples}
        assert failed[stage] == 1 and sum(failed.values()) == 1, failed
        report = json.loads((self.reports / "drift.json").read_text())
        assert any(
            n["level"] == "error" and n["text"].startswith(f"cycle failed at {stage}")
            for n in report["notices"]
        ), report["notices"]


def output(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def lab() -> Iterator[Controller]:
    ensure_libvirtd()
    cleanup()
    remove_tree(BASE)
    BASE.mkdir(parents=True)
    os.chmod(BASE.parent, 0o755)
    shutil.copytree(ROOT / "nix", BASE / "flake", ignore=shutil.ignore_patterns("result*"))
    shutil.copy2("/bin/busybox", BASE / "flake" / "bb" / "busybox")
    repo = Repo(BASE)
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(repo.remote)], check=True)
    subprocess.run(["git", "clone", "-q", str(repo.remote), str(repo.work)], check=True)
    repo.git("checkout", "-q", "-b", "main")
    yield Controller(BASE, repo)
    cleanup()
    remove_tree(BASE)


def test_a_commit_adding_a_guest_is_converged_by_one_cycle(lab: Controller) -> None:
    lab.repo.guests = {"one": ""}
    first = lab.repo.commit("one guest")
    proc = lab.cycle()
    assert proc.returncode == 0, output(proc)
    assert f"gitops: commit {first[:12]}: applied (exit 0)" in proc.stdout
    assert domains() == {"gitops-one": "running"}

    lab.repo.guests["two"] = ""
    second = lab.repo.commit("add guest two")
    proc = lab.cycle()
    assert proc.returncode == 0, output(proc)
    assert "Plan: 1 to create." in proc.stdout
    assert domains() == {"gitops-one": "running", "gitops-two": "running"}
    runs = [r for r in lab.history() if r["kind"] == "gitops"]
    assert [(r["commit"], r["outcome"]) for r in runs[:2]] == [
        (second, "applied"),
        (first, "applied"),
    ]


def test_a_second_cycle_without_a_new_commit_changes_nothing(lab: Controller) -> None:
    ids = {d: virsh("domid", d).stdout.strip() for d in domains()}
    proc = lab.cycle()
    assert proc.returncode == 0, output(proc)
    assert "in-sync (exit 0)" in proc.stdout and "No changes." in proc.stdout
    assert {d: virsh("domid", d).stdout.strip() for d in domains()} == ids


def test_a_force_pushed_branch_is_refused_and_the_lab_untouched(lab: Controller) -> None:
    head = lab.repo.git("rev-parse", "HEAD")
    lab.repo.git("reset", "-q", "--hard", "HEAD~1")
    lab.repo.guests = {"one": "", "three": ""}
    rewritten = lab.repo.commit("rewritten history", push=False)
    lab.repo.git("push", "-q", "--force", "origin", "HEAD:main")
    before = domains()
    proc = lab.cycle()
    assert proc.returncode == 1, output(proc)
    assert f"refusing {rewritten[:12]}: it does not descend from {head[:12]}" in proc.stdout
    assert domains() == before
    lab.assert_failed_at("verify", "refused-rewrite")
    # put the branch back: the same head as applied is accepted again
    lab.repo.git("reset", "-q", "--hard", head)
    lab.repo.git("push", "-q", "--force", "origin", "HEAD:main")
    lab.repo.guests = {"one": "", "two": ""}
    proc = lab.cycle()
    assert proc.returncode == 0, output(proc)


def test_a_commit_that_breaks_the_manifest_is_reported_and_nothing_applied(
    lab: Controller,
) -> None:
    before = domains()
    broken = lab.repo.commit("typo", lab.repo.manifest_text() + '\n[guests.four]\nmemroy = "1G"\n')
    proc = lab.cycle()
    assert proc.returncode == 1, output(proc)
    assert f"commit {broken[:12]}:" in proc.stdout and "nothing was applied" in proc.stdout
    assert "lab.toml:" in proc.stdout and "guests.four" in proc.stdout
    assert domains() == before
    lab.assert_failed_at("load", "invalid-manifest")
    again = lab.cycle()
    assert again.returncode == 1
    assert "failed in an earlier cycle; not retrying" in again.stdout
    lab.repo.commit("fix the typo")
    assert lab.cycle().returncode == 0


def test_a_failed_apply_is_not_retried_on_the_same_commit(lab: Controller) -> None:
    lab.repo.guests["bad"] = ""
    text = lab.repo.manifest_text().replace(
        '[guests.bad]\nmode = "imageless"\nsystem = "demo-a"',
        '[guests.bad]\nmode = "imageless"\nsystem = "demo-broken"',
    )
    bad = lab.repo.commit("a guest whose system fails to build", text)
    proc = lab.cycle()
    assert proc.returncode == 1, output(proc)
    assert "Apply FAILED" in proc.stdout and "demo-broken" in output(proc)
    lab.assert_failed_at("apply", "apply-exit-1")
    again = lab.cycle()
    assert again.returncode == 1
    assert f"commit {bad[:12]} failed in an earlier cycle" in again.stdout
    assert "Closures to build" not in again.stdout  # nothing was planned or built
    retried = lab.cycle("--retry")
    assert retried.returncode == 1 and "Apply FAILED" in retried.stdout
    del lab.repo.guests["bad"]
    lab.repo.commit("drop the broken guest")
    assert lab.cycle().returncode == 0


def test_out_of_band_drift_is_reported_since_when_and_repaired(lab: Controller) -> None:
    code, doc = lab.drift()
    assert code == 0, doc
    virsh("destroy", "gitops-one")
    virsh("setmaxmem", "gitops-two", "300M", "--config")
    code, doc = lab.drift()
    assert code == 2
    items = {i["name"]: i for i in doc["items"]}  # type: ignore[attr-defined]
    one, two = items["one"], items["two"]
    assert one["status"] == "drifted"
    assert {"field": "state", "desired": "running", "observed": "shutoff"}.items() <= (
        one["fields"][0].items()
    )
    assert two["status"] == "drifted"
    memory = next(f for f in two["fields"] if f["field"] == "memory")
    assert (memory["desired"], memory["observed"]) == ("384 MiB", "300 MiB")
    first_seen = one["since"]
    assert first_seen is not None and first_seen <= doc["generated_at"]
    time.sleep(1.1)
    code, doc = lab.drift()
    items = {i["name"]: i for i in doc["items"]}  # type: ignore[attr-defined]
    assert items["one"]["since"] == first_seen  # the same drift: since when, not since now
    assert doc["generated_at"] > first_seen + 1  # type: ignore[operator]
    text = lab.run("drift", str(lab.repo.work / "lab.toml"))
    assert re.search(r"state\s*: running -> shutoff \(since \S+Z, for [1-9]s\)", text.stdout)

    proc = lab.cycle()
    assert proc.returncode == 0, output(proc)
    assert domains() == {"gitops-one": "running", "gitops-two": "running"}
    code, doc = lab.drift()
    assert code == 0, json.dumps(doc["items"], indent=1)


def test_html_report_and_metrics(lab: Controller, tmp_path: Path) -> None:
    proc = lab.cycle()
    assert proc.returncode == 0, output(proc)
    page = lab.reports / "drift.html"
    assert "In sync" in page.read_text() or "in sync" in page.read_text()
    image = decode_png(screenshot(page, tmp_path / "report.png").read_bytes())
    shutil.copy2(tmp_path / "report.png", "/tmp/gitops-drift-report.png")
    green = hex_rgb(BANNER_COLORS[0])
    assert image.count(green, (0, 0, image.width, 100)) > 0.5 * image.width * 100
    json_doc = json.loads((lab.reports / "drift.json").read_text())
    assert json_doc["in_sync"] is True and len(json_doc["items"]) == 2
    families = parse_metrics(lab.metrics.read_text())
    assert "reconcile_drifted_objects" in families
    assert "reconcile_last_run_success" in families
    # this controller follows unsigned commits: every rendering and the metrics say so
    assert families["reconcile_gitops_unsigned"].samples[0][1] == 1
    assert all(v == 0 for _, v in families["reconcile_gitops_failed"].samples)
    assert "without checking its signature" in page.read_text()
    assert "without checking its signature" in (lab.reports / "drift.md").read_text()
    assert json_doc["notices"][0]["level"] == "warning"
    assert "commit signatures are not checked" in proc.stderr
    assert not list(lab.metrics.parent.glob(".*tmp"))


def test_a_human_apply_holding_the_lock_makes_the_cycle_skip(lab: Controller) -> None:
    with LabLock(lab.repo.state / "lock"):
        started = time.monotonic()
        proc = lab.cycle("--lock-timeout", "2s")
        waited = time.monotonic() - started
    assert proc.returncode == 0, output(proc)
    assert "skipped: the lab is locked by pid" in proc.stdout
    assert "lab locked: skipping this cycle" in proc.stderr
    assert waited >= 2
    assert lab.history()[0]["outcome"] == "skipped-locked"


def test_unsigned_commits_are_refused_by_default(lab: Controller, tmp_path: Path) -> None:
    key = tmp_path / "signing_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    allowed = tmp_path / "allowed_signers"
    allowed.write_text("admin@lab.example " + Path(f"{key}.pub").read_text())
    lab.configure(f'allowed_signers = "{allowed}"\n')  # require_signed: the default
    try:
        before = {d: virsh("domid", d).stdout.strip() for d in domains()}
        lab.repo.guests["one"] = 'tags = ["unsigned"]'
        unsigned = lab.repo.commit("an unsigned change")
        proc = lab.cycle()
        assert proc.returncode == 1, output(proc)
        assert f"refusing {unsigned[:12]}: not signed; the lab is untouched" in proc.stdout
        assert {d: virsh("domid", d).stdout.strip() for d in domains()} == before
        lab.assert_failed_at("verify", "refused-unsigned")
        families = parse_metrics(lab.metrics.read_text())
        assert families["reconcile_gitops_unsigned"].samples[0][1] == 0
        lab.repo.guests["one"] = 'tags = ["signed"]'
        (lab.repo.work / "lab.toml").write_text(lab.repo.manifest_text())
        lab.repo.git("add", "lab.toml")
        lab.repo.git(
            "-c", "gpg.format=ssh", "-c", f"user.signingkey={key}.pub",
            "commit", "-q", "-S", "-m", "a signed change",
        )  # fmt: skip
        lab.repo.git("push", "-q", "origin", "HEAD:main")
        proc = lab.cycle()
        assert proc.returncode == 0, output(proc)
    finally:
        lab.configure()


def test_a_repository_manifest_naming_paths_outside_the_allowed_roots_is_refused(
    lab: Controller,
) -> None:
    before = {d: virsh("domid", d).stdout.strip() for d in domains()}
    text = lab.repo.manifest_text() + (
        '\n[kernels.evil]\nsource = "/usr/src"\n'
        '\n[guests.peek]\nmode = "imageless"\nsystem = "demo-a"\nkernel = "host"\n'
        'memory = "384MiB"\n'
        'shares = [{ tag = "srv", source = "/opt/elsewhere", writable = true }]\n'
    )
    refused = lab.repo.commit("reach outside", text)
    proc = lab.cycle()
    assert proc.returncode == 1, output(proc)
    assert f"commit {refused[:12]}: the repository's manifest names what the controller" in (
        proc.stdout
    )
    assert re.search(r"lab\.toml:\d+: kernels\.evil\.source: /usr/src is outside", proc.stdout)
    assert re.search(
        r"lab\.toml:\d+: guests\.peek\.shares\[0\]\.source: /opt/elsewhere is", proc.stdout
    )
    assert {d: virsh("domid", d).stdout.strip() for d in domains()} == before
    lab.assert_failed_at("load", "refused-paths")
    # a symlink in the repository is followed before judging: it cannot escape either
    # (a share inside the checkout is refused earlier: it lies in the state directory)
    (lab.repo.work / "linux").symlink_to("/usr/src")
    lab.repo.git("add", "linux")
    text = lab.repo.manifest_text() + '\n[kernels.evil]\nsource = "linux"\n'
    lab.repo.commit("reach outside through a link", text)
    proc = lab.cycle()
    assert proc.returncode == 1, output(proc)
    assert "(resolves to /usr/src)" in proc.stdout
    assert domains().keys() == before.keys()
    lab.repo.git("rm", "-q", "linux")
    lab.repo.commit("back inside")
    assert lab.cycle().returncode == 0


def test_fetch_and_plan_failures_leave_a_trace(lab: Controller) -> None:
    lab.configure(repo=str(lab.root / "no-such-repo.git"))
    try:
        proc = lab.cycle()
        assert proc.returncode == 1, output(proc)
        assert "gitops: fetch failed: no git repository at" in proc.stdout
        assert "Traceback" not in proc.stderr and "hint:" in proc.stderr
        lab.assert_failed_at("fetch", "failed-fetch")
    finally:
        lab.configure()
    missing = lab.root / "allowed" / "no-such-vmlinuz"
    text = lab.repo.manifest_text().replace('image = "/vmlinuz"', f'image = "{missing}"')
    broken = lab.repo.commit("a kernel image that is not there", text)
    before = {d: virsh("domid", d).stdout.strip() for d in domains()}
    proc = lab.cycle()
    assert proc.returncode == 1, output(proc)
    assert f"commit {broken[:12]}:" in proc.stdout and "no-such-vmlinuz" in proc.stdout
    assert {d: virsh("domid", d).stdout.strip() for d in domains()} == before
    lab.assert_failed_at("plan", "failed-plan")
    lab.repo.commit("the image back")
    assert lab.cycle().returncode == 0


def test_install_timer_writes_units_systemd_accepts(lab: Controller, tmp_path: Path) -> None:
    proc = lab.run("gitops", str(lab.manifest), "--install-timer", "--unit-dir", str(tmp_path))
    assert proc.returncode == 0, output(proc)
    timer = (tmp_path / "reconcile-gitops.timer").read_text()
    assert "OnUnitInactiveSec=300s" in timer
    service = (tmp_path / "reconcile-gitops.service").read_text()
    assert f'"{lab.manifest}"' in service and "Type=oneshot" in service
    assert "TimeoutStartSec=3600s" in service
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "reconcile-gitops.service")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "reconcile-gitops.service:" not in verify.stderr, verify.stderr
