"""A user's kernel tree: git runs in it with no locks, hooks, fsmonitor, textconv or
external diff; make gets reconcile's own words only; modules stay in their directory."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from reconcile.adapters import kernel_build
from reconcile.adapters.initrd import early_module_files
from reconcile.adapters.kernel_build import GIT_ENV, KernelJob, git_argv, make_argv
from reconcile.core.desired import Kernel, KernelBuild
from reconcile.core.errors import ReconcileError
from reconcile.core.layout import StateLayout


def _git(tree: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(tree), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
    )


@pytest.fixture
def booby_trapped(tmp_path: Path) -> tuple[Path, Path]:
    """A dirty tree whose own .git/config runs a script from fsmonitor, diff and textconv."""
    marker = tmp_path / "marker"
    script = tmp_path / "evil.sh"
    script.write_text(f'#!/bin/sh\necho "$0 $*" >> {marker}\nexit 0\n')
    script.chmod(0o755)
    tree = tmp_path / "linux"
    tree.mkdir()
    (tree / "Makefile").write_text("all:\n")
    (tree / ".gitattributes").write_text("* diff=evil\n")
    _git(tree, "init", "-q")
    _git(tree, "add", ".")
    _git(tree, "commit", "-q", "-m", "tree")
    for key, value in [
        ("core.fsmonitor", str(script)),
        ("diff.external", str(script)),
        ("diff.evil.textconv", str(script)),
    ]:
        _git(tree, "config", key, value)
    (tree / "Makefile").write_text("all:\n\t@true\n")  # uncommitted: status and diff run
    (tree / "new.c").write_text("int x;\n")
    return tree, marker


def _spec(tree: Path, ref: str | None = None) -> KernelBuild:
    return KernelBuild(source=tree, ref=ref, config="tinyconfig", fragments=(), options=())


def test_the_trap_is_real(booby_trapped: tuple[Path, Path]) -> None:
    """Plain git in this tree does run the script: the test below can fail."""
    tree, marker = booby_trapped
    subprocess.run(["git", "-C", str(tree), "status"], check=True, capture_output=True)
    subprocess.run(["git", "-C", str(tree), "diff", "HEAD"], check=True, capture_output=True)
    assert marker.exists()


def test_source_identity_runs_nothing_from_the_tree(booby_trapped: tuple[Path, Path]) -> None:
    tree, marker = booby_trapped
    identity = kernel_build.source_identity(_spec(tree))
    assert identity.startswith("commit:") and "+dirty:" in identity
    assert kernel_build.source_identity(_spec(tree, "HEAD")).startswith("commit:")
    assert not marker.exists(), marker.read_text()
    assert not (tree / ".git" / "index.lock").exists()


def test_a_ref_is_never_an_option(booby_trapped: tuple[Path, Path], tmp_path: Path) -> None:
    tree, _ = booby_trapped
    with pytest.raises(ReconcileError):
        kernel_build.source_identity(_spec(tree, f"--output={tmp_path / 'out'}"))
    assert not (tmp_path / "out").exists()


def test_git_argv() -> None:
    tree = Path("/srv/linux")
    assert git_argv(tree, "status") == [
        "git",
        "--no-optional-locks",
        "--no-pager",
        "-c",
        "core.fsmonitor=false",
        "-C",
        "/srv/linux",
        "status",
    ]
    assert git_argv(tree, "status", foreign_owner=True)[5:7] == [
        "-c",
        f"safe.directory={tree.resolve()}",
    ]
    assert GIT_ENV == {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"}


def test_make_argv_ends_options_before_targets(tmp_path: Path) -> None:
    job = KernelJob("k", _spec(tmp_path), "key", StateLayout(tmp_path))
    build = tmp_path / "kernels" / "k-key"
    src, out = str(build / "src"), f"O={build / 'build'}"
    assert make_argv(job, "tinyconfig") == ["make", "-C", src, out, "--", "tinyconfig"]
    assert make_argv(job, "bzImage", options=("-j2",), assign=("X=1",)) == [
        "make",
        "-C",
        src,
        "-j2",
        out,
        "X=1",
        "--",
        "bzImage",
    ]


def test_a_config_the_manifest_would_refuse_is_refused_again(
    booby_trapped: tuple[Path, Path], tmp_path: Path
) -> None:
    tree, _ = booby_trapped
    spec = KernelBuild(tree, None, "--eval=$(shell touch x)config", (), ())
    with pytest.raises(ReconcileError, match="neither a make config target"):
        kernel_build.locate(Kernel("k", spec), StateLayout(tmp_path / "state"))


def test_modules_dep_symlink_out_is_refused(tmp_path: Path) -> None:
    modules = tmp_path / "6.1.0"
    modules.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "virtiofs.ko").write_bytes(b"\x7fELF")
    os.symlink(outside, modules / "kernel")
    (modules / "modules.dep").write_text("kernel/virtiofs.ko:\n")
    with pytest.raises(ReconcileError, match="outside"):
        early_module_files(modules, ("virtiofs",))


def test_modules_dep_dotdot_is_refused(tmp_path: Path) -> None:
    modules = tmp_path / "6.1.0"
    modules.mkdir()
    (modules / "modules.dep").write_text("../../etc/virtiofs.ko:\n")
    with pytest.raises(ReconcileError, match="leaves the modules directory") as caught:
        early_module_files(modules, ("virtiofs",))
    assert caught.value.hint is not None and "depmod" in caught.value.hint
