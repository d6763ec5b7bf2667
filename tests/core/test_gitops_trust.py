"""What GitOps trusts: the manifest's [gitops] rules, git addresses, confinement of a
repository's paths, the cycle's metrics and notices, the timer's start timeout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconcile.core.drift.report import (
    DriftReport,
    Notice,
    NoticeLevel,
    render_html,
    render_json,
    render_markdown,
    render_text,
)
from reconcile.core.errors import ManifestError
from reconcile.core.gitops.confinement import Use, judge, named_paths, problems
from reconcile.core.gitops.git_url import Transport, transport
from reconcile.core.gitops.status import Stage, cycle_metrics
from reconcile.core.gitops.timer_units import service_unit
from reconcile.core.manifest import parse_manifest
from reconcile.core.metrics import render_metrics
from tests.core.test_metrics import parse as parse_metrics

LAB = '[lab]\nname = "t"\nflake = "nix"\nstate_dir = "/var/lib/reconcile/t"\n'
HV = '[hypervisors.local]\nuri = "qemu:///system"\n'
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOkHTbDKBYZ6bqhhQRcSpFB0o2T4WaX3vTSRjC1z0+4T"


def parse(text: str, file: Path = Path("/etc/reconcile/lab.toml")) -> object:
    return parse_manifest(text.encode(), file)


def problems_of(text: str) -> list[str]:
    with pytest.raises(ManifestError) as err:
        parse(text)
    return [p.render() for p in err.value.problems]


# The [gitops] table ----------------------------------------------------------------------


def test_signed_commits_are_the_default_and_need_allowed_signers() -> None:
    found = problems_of(LAB + '[gitops]\nrepo = "/srv/lab.git"\n')
    assert len(found) == 1
    assert found[0].startswith("/etc/reconcile/lab.toml:5: gitops.require_signed: ")
    assert "give `allowed_signers`" in found[0] and "require_signed = false" in found[0]


def test_turning_signatures_off_is_explicit() -> None:
    manifest = parse_manifest(
        (LAB + '[gitops]\nrepo = "/srv/lab.git"\nrequire_signed = false\n').encode(),
        Path("/etc/reconcile/lab.toml"),
    )
    assert manifest.gitops is not None and not manifest.gitops.require_signed
    signed = parse_manifest(
        (LAB + '[gitops]\nrepo = "/srv/lab.git"\nallowed_signers = "signers"\n').encode(),
        Path("/etc/reconcile/lab.toml"),
    )
    assert signed.gitops is not None and signed.gitops.require_signed
    assert signed.gitops.allowed_signers == Path("/etc/reconcile/signers")
    assert signed.gitops.allowed_paths == ()


@pytest.mark.parametrize(
    "repo",
    [
        "ssh://git@git.example/lab.git",
        "git@git.example:lab.git",
        "git+ssh://git.example/lab.git",
    ],
)
def test_an_ssh_repository_must_pin_its_host_key(repo: str) -> None:
    base = LAB + f'[gitops]\nrepo = "{repo}"\nrequire_signed = false\n'
    found = problems_of(base)
    assert "gitops.repo: an ssh repository's host key must be pinned" in found[0]
    assert "ssh-keyscan" in found[0]
    pinned = parse_manifest(
        (base + f'host_key = "{KEY}"\nidentity = "deploy_key"\n').encode(),
        Path("/etc/reconcile/lab.toml"),
    )
    assert pinned.gitops is not None and pinned.gitops.host_key == KEY
    assert pinned.gitops.identity == Path("/etc/reconcile/deploy_key")


def test_ssh_keys_are_only_for_ssh_repositories() -> None:
    found = problems_of(
        LAB + f'[gitops]\nrepo = "/srv/lab.git"\nrequire_signed = false\nhost_key = "{KEY}"\n'
    )
    assert any("gitops.host_key: only for an ssh repository" in p for p in found)


@pytest.mark.parametrize(
    "repo", ["ext::sh -c touch% /tmp/x", "fd::3", "nosuch://x/y", "-uhoh", "--upload-pack=x"]
)
def test_transports_that_run_commands_and_options_are_refused(repo: str) -> None:
    found = problems_of(LAB + f'[gitops]\nrepo = "{repo}"\nrequire_signed = false\n')
    assert any("gitops.repo" in p for p in found), found


def test_a_branch_cannot_look_like_an_option() -> None:
    found = problems_of(
        LAB + '[gitops]\nrepo = "/srv/lab.git"\nbranch = "-x"\nrequire_signed = false\n'
    )
    assert any("gitops.branch" in p for p in found)


@pytest.mark.parametrize(
    ("repo", "kind"),
    [
        ("/srv/lab.git", Transport.LOCAL),
        ("../lab.git", Transport.LOCAL),
        ("./a:b", Transport.LOCAL),
        ("file:///srv/lab.git", Transport.LOCAL),
        ("https://git.example/lab.git", Transport.HTTP),
        ("git://git.example/lab.git", Transport.GIT),
        ("ssh://git@[::1]:2222/lab.git", Transport.SSH),
        ("git@git.example:lab.git", Transport.SSH),
        ("git.example:lab.git", Transport.SSH),
        ("ext::sh", None),
        ("transport::address", None),
        ("-x", None),
        ("gopher://x/y", None),
    ],
)
def test_transport_of_an_address(repo: str, kind: Transport | None) -> None:
    assert transport(repo) is kind


# Confinement --------------------------------------------------------------------------


def repo_manifest(tree: Path, body: str) -> object:
    (tree / "lab.toml").write_text(body)
    return parse_manifest(body.encode(), tree / "lab.toml")


def verdicts(tmp_path: Path, body: str, roots: list[Path]) -> list[str]:
    """The violations of a repository manifest in `tmp_path/copy/tree`, as rendered."""
    copy = tmp_path / "copy"
    tree = copy / "tree"
    tree.mkdir(parents=True, exist_ok=True)
    manifest = repo_manifest(tree, body)
    named = named_paths(manifest)  # type: ignore[arg-type]
    real = {p: p.resolve() for p in {*(n.path for n in named), *roots, tree, copy}}
    found = judge(named, real, roots=roots, checkout=tree, copy=copy)
    return [p.render() for p in problems(body, tree / "lab.toml", found)]


def test_every_path_a_manifest_names_is_listed_with_its_use(tmp_path: Path) -> None:
    body = (
        LAB
        + '[kernels.k]\nsource = "/srv/linux"\nfragments = ["frag.config"]\n'
        + '[kernels.p]\nimage = "/boot/vmlinuz"\nmodules = "/lib/modules/6.1"\n'
        + HV
        + '[guests.g]\nmode = "imageless"\nsystem = "s"\nkernel = "k"\n'
        + 'shares = [{ tag = "r", source = "/srv/results" }]\n'
        + '[hosts.h]\nsystem = "s"\nssh = { target = "h", known_hosts = "kh", '
        + 'identity = "/root/.ssh/id" }\n'
    )
    tree = tmp_path / "tree"
    tree.mkdir()
    named = {n.key: n for n in named_paths(repo_manifest(tree, body))}  # type: ignore[arg-type]
    assert {k: (str(n.path), n.use) for k, n in named.items()} == {
        ("lab", "flake"): (str(tree / "nix"), Use.DATA),
        ("kernels", "k", "source"): ("/srv/linux", Use.HOST),
        ("kernels", "k", "fragments", 0): (str(tree / "frag.config"), Use.DATA),
        ("kernels", "p", "image"): ("/boot/vmlinuz", Use.HOST),
        ("kernels", "p", "modules"): ("/lib/modules/6.1", Use.HOST),
        ("guests", "g", "shares", 0, "source"): ("/srv/results", Use.HOST),
        ("hosts", "h", "ssh", "known_hosts"): (str(tree / "kh"), Use.DATA),
        ("hosts", "h", "ssh", "identity"): ("/root/.ssh/id", Use.HOST),
    }


def test_paths_under_the_allowed_roots_and_data_in_the_checkout_pass(tmp_path: Path) -> None:
    linux = tmp_path / "linux"
    body = (
        LAB
        + f'[kernels.k]\nsource = "{linux}/tree"\nfragments = ["frag.config"]\n'
        + HV
        + '[guests.g]\nmode = "imageless"\nsystem = "s"\nkernel = "k"\n'
        + f'shares = [{{ tag = "r", source = "{linux}/results" }}]\n'
    )
    assert verdicts(tmp_path, body, [linux]) == []


def test_a_kernel_source_or_share_outside_the_roots_is_refused(tmp_path: Path) -> None:
    body = (
        LAB
        + '[kernels.k]\nsource = "/usr/src/evil"\n'
        + HV
        + '[guests.g]\nmode = "imageless"\nsystem = "s"\nkernel = "k"\n'
        + 'shares = [{ tag = "r", source = "/opt/elsewhere" }]\n'
    )
    found = verdicts(tmp_path, body, [tmp_path / "linux"])
    assert len(found) == 2
    assert found[0].endswith("lab.toml:6: kernels.k.source: /usr/src/evil is outside the paths "
                             f"the controller allows (gitops.allowed_paths: {tmp_path / 'linux'})"
                             "\n  hint: add its directory to gitops.allowed_paths in the "
                             "controller's manifest, or move it there")  # fmt: skip
    assert "lab.toml:13: guests.g.shares[0].source: /opt/elsewhere is outside" in found[1]


def test_a_kernel_source_inside_the_checkout_is_refused_even_under_a_root(
    tmp_path: Path,
) -> None:
    body = LAB + '[kernels.k]\nsource = "linux"\n'
    found = verdicts(tmp_path, body, [tmp_path])  # the root holds the checkout too
    assert len(found) == 1
    assert (
        "kernels.k.source: a kernel tree (its Makefile runs on this host) cannot come "
        in (found[0])
    )
    assert "from the repository's checkout" in found[0]


def test_a_symlink_in_the_checkout_cannot_escape(tmp_path: Path) -> None:
    tree = tmp_path / "copy" / "tree"
    tree.mkdir(parents=True)
    (tree / "frags").symlink_to("/etc")
    (tree / "shared").symlink_to(tmp_path / "linux")
    body = (
        LAB
        + '[kernels.k]\nsource = "/srv/linux"\nfragments = ["frags/shadow"]\n'
        + HV
        + '[guests.g]\nmode = "imageless"\nsystem = "s"\nkernel = "k"\n'
        + 'shares = [{ tag = "r", source = "shared" }]\n'
    )
    found = verdicts(tmp_path, body, [Path("/srv/linux"), tmp_path / "linux"])
    assert len(found) == 1
    assert "kernels.k.fragments[0]" in found[0] and "(resolves to /etc/shadow)" in found[0]


def test_a_symlink_from_a_root_into_the_checkout_is_still_the_checkout(tmp_path: Path) -> None:
    root = tmp_path / "linux"
    root.mkdir()
    (root / "tree").symlink_to(tmp_path / "copy" / "tree")
    body = LAB + f'[kernels.k]\nsource = "{root}/tree"\n'
    found = verdicts(tmp_path, body, [root])
    assert len(found) == 1 and "cannot come from the repository's checkout" in found[0]


def test_a_flake_reference_is_confined_only_when_it_is_a_path(tmp_path: Path) -> None:
    assert verdicts(tmp_path, LAB.replace('"nix"', '"github:o/r"'), []) == []
    found = verdicts(tmp_path, LAB.replace('"nix"', '"/srv/flake"'), [])
    assert len(found) == 1 and "lab.flake" in found[0]


# Metrics, notices, units -----------------------------------------------------------------


def test_cycle_metrics_are_valid_text_format() -> None:
    text = render_metrics(cycle_metrics("t", failed=Stage.LOAD, unsigned=True))
    families = parse_metrics(text)
    assert families["reconcile_gitops_unsigned"].samples == [({"lab": "t"}, 1.0)]
    failed = {s[0]["stage"]: s[1] for s in families["reconcile_gitops_failed"].samples}
    assert failed == {"fetch": 0, "verify": 0, "load": 1, "plan": 0, "apply": 0}
    quiet = parse_metrics(render_metrics(cycle_metrics("t", failed=None, unsigned=False)))
    assert quiet["reconcile_gitops_unsigned"].samples[0][1] == 0
    assert all(v == 0 for _, v in quiet["reconcile_gitops_failed"].samples)


def test_notices_show_in_every_rendering() -> None:
    report = DriftReport(
        "t",
        "/m.toml",
        1000.0,
        (),
        commit="abc",
        notices=(
            Notice(NoticeLevel.WARNING, "commit abc was used without checking its signature"),
            Notice(NoticeLevel.ERROR, "cycle failed at fetch: no repo\nhint: <check>"),
        ),
        observed=False,
    )
    assert report.exit_code == 1 and report.failed
    text = render_text(report)
    assert "warning: commit abc was used without checking its signature" in text
    assert "error: cycle failed at fetch: no repo\n  hint: <check>" in text
    assert "not observed" in text
    assert "> **warning**: commit abc was used" in render_markdown(report)
    page = render_html(report)
    assert '<p class="notice warning"><strong>warning:</strong> commit abc' in page
    assert "hint: &lt;check&gt;" in page
    doc = json.loads(json.dumps(render_json(report)))
    assert doc["observed"] is False
    assert doc["notices"][0] == {
        "level": "warning",
        "text": "commit abc was used without checking its signature",
    }
    plain = render_json(DriftReport("t", "/m.toml", 1000.0, ()))
    assert plain["notices"] == [] and plain["observed"] is True and plain["exit_code"] == 0


def test_the_service_has_a_start_timeout() -> None:
    assert "TimeoutStartSec=3600s" in service_unit(["/bin/true"])
    assert "TimeoutStartSec=90s" in service_unit(["/bin/true"], 90)
