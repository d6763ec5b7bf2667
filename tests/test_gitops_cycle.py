"""GitOps cycles that stop before the lab is observed, through the CLI's entry point, with
real git and no hypervisor: each failing stage leaves its trace in the history, the report
directory and the metrics, and never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from reconcile.cli import main
from tests.core.test_metrics import parse as parse_metrics

GIT_ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "A",
    "GIT_AUTHOR_EMAIL": "a@example.com",
    "GIT_COMMITTER_NAME": "A",
    "GIT_COMMITTER_EMAIL": "a@example.com",
}


class Lab:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / "state"
        self.remote = root / "remote.git"
        self.work = root / "work"
        self.controller = root / "controller.toml"
        self.reports = root / "reports"
        self.metrics = root / "reconcile.prom"
        self.git("init", "-q", "--bare", "-b", "main", str(self.remote), cwd=root)
        self.git("init", "-q", "-b", "main", str(self.work), cwd=root)
        self.git("remote", "add", "origin", str(self.remote))

    def git(self, *args: str, cwd: Path | None = None) -> str:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd or self.work,
            env=GIT_ENV,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    def header(self) -> str:
        return f'[lab]\nname = "c"\nflake = "nix"\nstate_dir = "{self.state}"\n'

    def configure(self, gitops: str) -> None:
        self.controller.write_text(
            self.header() + f'[gitops]\nrepo = "{self.remote}"\nmanifest = "lab.toml"\n' + gitops
        )

    def commit(self, text: str) -> str:
        (self.work / "lab.toml").write_text(text)
        self.git("add", "lab.toml")
        self.git("commit", "-q", "-m", "change")
        self.git("push", "-q", "origin", "HEAD:main")
        return self.git("rev-parse", "HEAD")

    def cycle(self, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
        code = main(
            [
                "gitops",
                str(self.controller),
                "--report-dir",
                str(self.reports),
                "--metrics",
                str(self.metrics),
            ]
        )
        out = capsys.readouterr()
        return code, out.out, out.err

    def last_run(self, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
        assert main(["history", str(self.controller), "--kind", "gitops", "--json"]) == 0
        runs: list[dict[str, object]] = json.loads(capsys.readouterr().out)
        return runs[0]

    def failed_stage(self) -> str:
        families = parse_metrics(self.metrics.read_text())
        stages = [s[0]["stage"] for s in families["reconcile_gitops_failed"].samples if s[1]]
        assert len(stages) <= 1
        return stages[0] if stages else ""

    def unsigned_metric(self) -> float:
        return parse_metrics(self.metrics.read_text())["reconcile_gitops_unsigned"].samples[0][1]


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return Lab(tmp_path)


def assert_trace(lab: Lab, capsys: pytest.CaptureFixture[str], stage: str, outcome: str) -> None:
    """History, metrics and the report directory all say where and why the cycle stopped."""
    run = lab.last_run(capsys)
    assert (run["outcome"], run["exit_code"]) == (outcome, 1)
    summary = run["summary"]
    assert isinstance(summary, dict) and summary["stage"] == stage and summary["message"]
    assert lab.failed_stage() == stage
    # nothing was observed: no object counts that would read as "nothing drifted"
    assert "reconcile_drifted_objects" not in parse_metrics(lab.metrics.read_text())
    report = json.loads((lab.reports / "drift.json").read_text())
    assert report["observed"] is False and report["exit_code"] == 1
    errors = [n["text"] for n in report["notices"] if n["level"] == "error"]
    assert errors and errors[0].startswith(f"cycle failed at {stage}: ")
    assert f"cycle failed at {stage}" in (lab.reports / "drift.html").read_text()
    assert f"cycle failed at {stage}" in (lab.reports / "drift.md").read_text()
    # the text history shows it too
    assert main(["history", str(lab.controller), "--kind", "gitops"]) == 0
    assert f"failed at {stage}: " in capsys.readouterr().out


def test_a_fetch_failure_is_recorded_not_raised(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    lab.configure("require_signed = false\n")
    lab.controller.write_text(lab.controller.read_text().replace(str(lab.remote), "/no/such.git"))
    code, out, err = lab.cycle(capsys)
    assert code == 1
    assert "gitops: fetch failed: no git repository at /no/such.git" in out
    assert "error: the cycle stopped at fetch: failed-fetch" in err and "hint:" in err
    assert "Traceback" not in err
    assert_trace(lab, capsys, "fetch", "failed-fetch")
    assert lab.last_run(capsys)["commit"] == ""


def test_an_unsigned_commit_is_refused_by_default(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    signers = lab.root / "allowed_signers"
    signers.write_text("")
    lab.configure(f'allowed_signers = "{signers}"\n')
    sha = lab.commit(lab.header())
    code, out, _err = lab.cycle(capsys)
    assert code == 1
    assert f"refusing {sha[:12]}: not signed; the lab is untouched" in out
    assert_trace(lab, capsys, "verify", "refused-unsigned")
    assert lab.last_run(capsys)["commit"] == sha
    assert lab.unsigned_metric() == 0


def test_allowed_signers_inside_the_repository_copy_are_refused(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    lab.configure(f'allowed_signers = "{lab.state}/gitops/tree/allowed_signers"\n')
    lab.commit(lab.header())
    code, out, _err = lab.cycle(capsys)
    assert code == 1 and "the repository would choose who may sign it" in out
    assert_trace(lab, capsys, "verify", "refused-unsigned")


def test_a_repository_manifest_naming_paths_outside_the_roots_is_refused(
    lab: Lab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    allowed = tmp_path / "allowed"
    lab.configure(f'require_signed = false\nallowed_paths = ["{allowed}"]\n')
    text = (
        lab.header()
        + '[hypervisors.local]\nuri = "qemu:///system"\n'
        + '[kernels.k]\nsource = "/usr/src/linux"\n'
        + f'[kernels.inside]\nsource = "{allowed}/linux"\n'
        + '[guests.g]\nmode = "imageless"\nsystem = "s"\nkernel = "inside"\n'
        + 'shares = [{ tag = "r", source = "/opt/elsewhere" }]\n'
        # the repository's own [gitops] cannot widen what the controller allows
        + '[gitops]\nrepo = "/x"\nrequire_signed = false\nallowed_paths = ["/"]\n'
    )
    sha = lab.commit(text)
    code, out, err = lab.cycle(capsys)
    assert code == 1, out + err
    assert f"commit {sha[:12]}: the repository's manifest names what the controller" in out
    assert "lab.toml:8: kernels.k.source: /usr/src/linux is outside the paths" in out
    assert "lab.toml:15: guests.g.shares[0].source: /opt/elsewhere is outside the paths" in out
    assert "kernels.inside" not in out
    assert "nothing was applied" in out
    assert "commit signatures are not checked" in err  # the warning of an unsigned cycle
    assert_trace(lab, capsys, "load", "refused-paths")
    assert lab.unsigned_metric() == 1
    report = json.loads((lab.reports / "drift.json").read_text())
    warnings = [n["text"] for n in report["notices"] if n["level"] == "warning"]
    assert warnings == [
        f"commit {sha[:12]} was used without checking its signature: "
        "gitops.require_signed = false in the controller's manifest"
    ]


def test_an_invalid_manifest_is_recorded_at_load(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    lab.configure("require_signed = false\n")
    lab.commit(lab.header() + "[guests.x]\nmemroy = 1\n")
    code, out, _err = lab.cycle(capsys)
    assert code == 1 and "lab.toml:5: guests.x" in out
    assert_trace(lab, capsys, "load", "invalid-manifest")
