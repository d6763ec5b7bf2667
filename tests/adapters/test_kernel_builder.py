"""A kernel's make on a builder: the argv that goes there, what its answers mean, its key."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from reconcile.adapters import kernel_build
from reconcile.adapters.kernel_build import KernelJob, make_argv
from reconcile.adapters.kernel_builder import (
    IMAGE,
    PREPARE,
    KernelBuilder,
    fetch_members,
    parse_prepare,
    release_suffix,
)
from reconcile.adapters.process import Completed
from reconcile.core.desired import Builder, Kernel, KernelBuild
from reconcile.core.errors import ReconcileError
from reconcile.core.kernels.kconfig import build_key
from reconcile.core.layout import StateLayout
from tests.adapters.test_kernel_tree import _git, _spec

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHVhmTUhVpvXYpbmqi7rMc9QIr4ldbyGFPIWu5SnU6RB"
BUILDER = Builder("b1", "root", "10.0.0.5", KEY, Path("/keys/id"), ("x86_64-linux",), 1, 1, ())


def test_make_there_is_a_local_builds_argv_at_the_directory_there(tmp_path: Path) -> None:
    job = KernelJob("k", _spec(tmp_path), "key", StateLayout(tmp_path))
    there = Path("/root/.cache/reconcile-kernels/k-key")
    assert make_argv(job, "bzImage", options=("-j8",), assign=("LOCALVERSION=+",), at=there) == [
        "make",
        "-C",
        f"{there}/src",
        "-j8",
        f"O={there}/build",
        "LOCALVERSION=+",
        "--",
        "bzImage",
    ]
    assert make_argv(job, "bzImage")[2] == str(job.directory / "src")  # here: as before


def test_a_stream_is_pinned_openssh_that_never_asks(tmp_path: Path) -> None:
    builder = KernelBuilder(BUILDER, StateLayout(tmp_path), 600.0)
    known = tmp_path / "kh"
    argv = builder._over_ssh(known, ["tar", "-C", "/a b", "-cf", "-", "--", IMAGE])
    assert argv[:3] == ["ssh", "-o", "BatchMode=yes"]
    assert argv[3:5] == ["-o", "ServerAliveInterval=30"]
    assert f"UserKnownHostsFile={known}" in argv and "StrictHostKeyChecking=yes" in argv
    assert "IdentityFile=/keys/id" in argv
    # one word after `--`, quoted for the remote shell: a path stays one argument there
    assert argv[-3:] == [
        "root@10.0.0.5",
        "--",
        "tar -C '/a b' -cf - -- build/arch/x86/boot/bzImage",
    ]
    assert shlex.split(argv[-1])[2] == "/a b"
    assert str(builder) == "builder b1 (root@10.0.0.5)"


def test_the_answer_of_prepare() -> None:
    remote = parse_prepare(
        "/root/.cache/reconcile-kernels/k-key\n8\nreuse\nGNU Make 4.3\ngcc (Debian 12.2.0) 12.2.0\n"
    )
    assert remote.directory == Path("/root/.cache/reconcile-kernels/k-key")
    assert (remote.cpus, remote.has_source) == (8, True)
    assert remote.tools == ("GNU Make 4.3", "gcc (Debian 12.2.0) 12.2.0")
    assert not parse_prepare("/d\n1\nsend\n").has_source
    for bad in ("", "relative\n1\nsend\n", "/d\nmany\nsend\n"):
        with pytest.raises(ValueError, match="unreadable"):
            parse_prepare(bad)


def test_what_setlocalversion_adds_here_is_given_to_make_there() -> None:
    assert release_suffix("6.1.192+", "6.1.192") == "+"
    assert release_suffix("6.1.192-rc-g1234abcd", "6.1.192-rc") == "-g1234abcd"
    assert release_suffix("6.1.192", "6.1.192") == ""
    with pytest.raises(ValueError, match="does not start with"):
        release_suffix("6.2.0", "6.1.192")


def test_what_comes_back() -> None:
    assert fetch_members(False) == [IMAGE, "build/.config", "build/include/config/kernel.release"]
    assert fetch_members(True)[-1] == "modules"


def test_a_builders_compile_is_another_build_and_a_local_ones_key_is_as_before(
    tmp_path: Path,
) -> None:
    tree = tmp_path / "linux"
    tree.mkdir()
    (tree / "Makefile").write_text("all:\n")
    _git(tree, "init", "-q")
    _git(tree, "add", ".")
    _git(tree, "commit", "-q", "-m", "tree")
    layout = StateLayout(tmp_path / "state")
    spec: KernelBuild = _spec(tree)
    local = kernel_build.locate(Kernel("k", spec), layout).key
    there = kernel_build.locate(Kernel("k", replace(spec, builder="b1")), layout).key
    other = kernel_build.locate(Kernel("k", replace(spec, builder="b2")), layout).key
    assert len({local, there, other}) == 3
    assert local == build_key(  # a kernel made here keeps the key it had
        source=kernel_build.source_identity(spec),
        base_config="target:tinyconfig",
        fragments=[],
        options=(),
        toolchain=kernel_build.toolchain_identity(),
    )


class _Answers:
    """A session that answers PREPARE as a builder without make does."""

    def __init__(self, code: int, stdout: str = "", stderr: str = "") -> None:
        self.done = Completed(("sh",), code, stdout, stderr, 0.0)
        self.argv: list[tuple[str, ...]] = []

    def run(self, argv: Sequence[str], *, check: bool = True) -> Completed:
        self.argv.append(tuple(argv))
        return self.done


def test_a_builder_without_make_is_named_with_what_it_needs(tmp_path: Path) -> None:
    builder = KernelBuilder(BUILDER, StateLayout(tmp_path), 600.0)
    job = KernelJob("k", _spec(tmp_path), "key", StateLayout(tmp_path))
    session = _Answers(127, stderr="make\n")
    with pytest.raises(ReconcileError) as raised:
        builder._prepare(job, session)  # type: ignore[arg-type]
    assert raised.value.message == "kernel 'k': builder b1 (root@10.0.0.5) has no make"
    assert raised.value.hint is not None and "make, flock, tar" in raised.value.hint
    # the build's name is a positional parameter of a constant script, never shell text
    assert session.argv == [("sh", "-c", PREPARE, "sh", "k-key")]
