"""Building kernels: source identity, config resolution and make, out of tree.

Each build lives in `<state_dir>/kernels/<name>-<key>/` (`StateLayout.kernel_build`), where
the key hashes what determines it (core/kconfig.build_key), locked by a file beside it.
Inside, named here (KernelJob):
  build/       make's O= directory (.config, the objects)
  bzImage      the image guests boot
  modules/     INSTALL_MOD_PATH: modules/lib/modules/<release>
  release      `make kernelrelease`
  build.log    everything make printed
  objects.json how many objects each make target made: the next build's estimate of its
               total, for a percentage (make knows none)
  complete     written last: a build without it is not one

A kernel with a `builder` is compiled on that machine (adapters/kernel_builder.py); the
same directory here ends the same way, so nothing downstream knows where make ran.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from reconcile import progress
from reconcile.adapters import files, process
from reconcile.adapters.files import read_regular, write_atomic
from reconcile.adapters.lock import flock_within
from reconcile.core.desired import Kernel, KernelBuild
from reconcile.core.errors import ReconcileError
from reconcile.core.kernels.kconfig import (
    ConfigFile,
    ConfigTarget,
    base_config,
    build_key,
    parse_config,
    render_fragment,
)
from reconcile.core.layout import StateLayout
from reconcile.logs import get_logger

log = get_logger(__name__)

OBJECTS = "objects.json"  # per make target, how many objects the build made


def build_dir(directory: Path) -> Path:
    """make's O= directory inside a build's directory."""
    return directory / "build"


def resolved_config(directory: Path) -> Path:
    """The build's resolved .config: what its key stands for, and what a kernel diff reads."""
    return build_dir(directory) / ".config"


@dataclass(frozen=True)
class KernelJob:
    """A kernel of the manifest, located: where its build is, and whether it is done."""

    name: str
    spec: KernelBuild
    key: str
    layout: StateLayout  # the lab's state directory
    timeout_s: float = process.LONG_TIMEOUT_S  # each make, and the wait for another run

    @property
    def directory(self) -> Path:
        return self.layout.kernel_build(self.name, self.key)

    @property
    def lock_path(self) -> Path:
        return self.layout.kernel_build_lock(self.directory)

    @property
    def build_dir(self) -> Path:
        return build_dir(self.directory)

    @property
    def image(self) -> Path:
        return self.directory / "bzImage"

    @property
    def log_path(self) -> Path:
        return self.directory / "build.log"

    def complete(self) -> bool:
        return (self.directory / "complete").exists()

    def release(self) -> str:
        return (self.directory / "release").read_text().strip()

    def modules_dir(self, release: str) -> Path:
        return self.directory / "modules" / "lib" / "modules" / release

    def config(self) -> dict[str, str]:
        return parse_config(resolved_config(self.directory).read_text())


# git in a user's tree reads only that repository's own config, takes no locks (it never
# rewrites the index) and runs no fsmonitor, textconv or external diff (docs/security.md).
GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"}


def git_argv(source: Path, *args: str, foreign_owner: bool = False) -> list[str]:
    """argv of a git command in a kernel tree. `foreign_owner`: the tree belongs to another
    user, which git refuses unless the tree is named as a safe.directory (only then)."""
    safe = ["-c", f"safe.directory={source.resolve()}"] if foreign_owner else []
    return [
        "git",
        "--no-optional-locks",
        "--no-pager",
        "-c",
        "core.fsmonitor=false",
        *safe,
        "-C",
        str(source.absolute()),
        *args,
    ]


def _foreign_owner(source: Path) -> bool:
    try:
        return source.stat().st_uid != os.geteuid()
    except OSError:
        return False  # git says what is wrong with it


def _git(source: Path, *args: str) -> str:
    return process.run(
        git_argv(source, *args, foreign_owner=_foreign_owner(source)),
        env=GIT_ENV,
        hint=f"kernels are built from a git tree: is {source} one? (git -C {source} status)",
    ).stdout


def source_identity(spec: KernelBuild) -> str:
    """The commit to build, plus a hash of uncommitted changes when building the work tree."""
    if spec.ref is not None:
        commit = _git(
            spec.source, "rev-parse", "--verify", "--end-of-options", f"{spec.ref}^{{commit}}"
        ).strip()
        return f"commit:{commit}"
    head = _git(spec.source, "rev-parse", "--verify", "--end-of-options", "HEAD^{commit}").strip()
    status = _git(spec.source, "status", "--porcelain", "--untracked-files=all")
    if not status.strip():
        return f"commit:{head}"
    digest = hashlib.sha256(
        _git(
            spec.source, "diff", "--no-textconv", "--no-ext-diff", "--binary", "HEAD", "--"
        ).encode()
    )
    for line in sorted(status.splitlines()):
        if line.startswith("??"):
            path = spec.source / line[3:]
            digest.update(line.encode() + (path.read_bytes() if path.is_file() else b""))
    return f"commit:{head}+dirty:{digest.hexdigest()[:16]}"


@functools.cache
def toolchain_identity() -> str:
    versions = []
    for argv in (["gcc", "--version"], ["ld", "--version"], ["make", "--version"]):
        versions.append(process.run(argv).stdout.splitlines()[0])
    return " | ".join(versions)


def _base(spec: KernelBuild) -> ConfigTarget | ConfigFile:
    """The kernel's base config; the manifest refuses anything else, this refuses it again."""
    try:
        return base_config(spec.config)
    except ValueError as exc:
        raise ReconcileError(str(exc), hint="see `config` in docs/manifest.md") from None


def _config_path(spec: KernelBuild, base: ConfigFile) -> Path:
    path = Path(base.path)
    return path if path.is_absolute() else spec.source / path


def _base_identity(spec: KernelBuild) -> str:
    base = _base(spec)
    if isinstance(base, ConfigTarget):
        return f"target:{base.target}"
    return f"file:{hashlib.sha256(_read(_config_path(spec, base), 'config')).hexdigest()}"


def _read(path: Path, what: str) -> bytes:
    try:
        return read_regular(path, 16 << 20)  # a config or a fragment; never a FIFO or device
    except OSError as exc:
        raise ReconcileError(f"cannot read the kernel {what} {path}: {exc.strerror}") from None


def locate(
    kernel: Kernel, layout: StateLayout, timeout_s: float = process.LONG_TIMEOUT_S
) -> KernelJob:
    spec = kernel.source
    assert isinstance(spec, KernelBuild)
    key = build_key(
        source=source_identity(spec),
        base_config=_base_identity(spec),
        fragments=[hashlib.sha256(_read(f, "fragment")).hexdigest() for f in spec.fragments],
        options=spec.options,
        # kconfig runs here; a builder's compile is another build, named by the builder
        toolchain=toolchain_identity() + (f" | builder {spec.builder}" if spec.builder else ""),
    )
    return KernelJob(kernel.name, spec, key, layout, timeout_s)


def make_argv(
    job: KernelJob,
    *targets: str,
    options: tuple[str, ...] = (),
    assign: tuple[str, ...] = (),
    at: Path | None = None,
) -> list[str]:
    """make in the job's tree: `--` ends make's options (GNU make 4.3), so no target can
    be read as one; variable assignments (`O=`) are reconcile's own and come before it.
    `at`: the build's directory on a builder instead of the job's here."""
    directory = job.directory if at is None else at
    src = str(directory / "src")
    return ["make", "-C", src, *options, f"O={build_dir(directory)}", *assign, "--", *targets]


def _make(
    job: KernelJob,
    *targets: str,
    options: tuple[str, ...] = (),
    assign: tuple[str, ...] = (),
    on_line: bool = False,
) -> None:
    argv = make_argv(job, *targets, options=options, assign=assign)
    what = " ".join(targets)
    shown = MakeProgress(job, what)
    process.run_logged(
        argv,
        job.log_path,
        timeout=job.timeout_s,
        on_line=shown if on_line else lambda _line: None,
        hint=f"rerun it: {' '.join(argv)}   (the whole log: {job.log_path})",
    )
    if on_line:
        shown.record()


class MakeProgress:
    """Counts the objects make reports, every 10th to whoever shows the step
    (`reconcile.progress`), every 250th to the log. make knows no total: the count the
    newest other complete build of this kernel recorded (`OBJECTS`, per target) stands in
    for one, so a percentage is shown, "≈" and at most 99 % until make is done."""

    def __init__(self, job: KernelJob, what: str, target: str | None = None) -> None:
        self.job = job
        self.what = what
        self.target = target or what
        self.count = 0
        self.expected = expected_objects(job, self.target)
        progress.report(f"make {what}")

    def __call__(self, line: str) -> None:
        if not line.lstrip().startswith(("CC", "LD", "AR", "AS")):
            return
        self.count += 1
        if self.count % 10 == 0:
            progress.report(f"make {self.what}: {self.said()}")
        if self.count % 250 == 0:
            log.info("kernel build progress", kernel=self.job.name, made=self.said())

    def said(self) -> str:
        if not self.expected:
            return f"{self.count} objects"
        percent = min(99, self.count * 100 // self.expected)
        return f"{self.count} of ≈{self.expected} objects ({percent}%)"

    def record(self) -> None:
        """This build's count, for the builds after it (make succeeded)."""
        path = self.job.directory / OBJECTS
        try:
            counts = json.loads(path.read_text())
        except (OSError, ValueError):
            counts = {}
        if not isinstance(counts, dict):
            counts = {}
        counts[self.target] = self.count
        write_atomic(path, json.dumps(counts) + "\n")


def expected_objects(job: KernelJob, target: str) -> int | None:
    """How many objects `target` made in the newest other complete build of this kernel."""
    newest: tuple[float, int] | None = None
    prefix = f"{job.name}-"
    try:
        siblings = list(job.layout.kernels.iterdir())
    except OSError:
        return None
    for directory in siblings:
        key = directory.name.removeprefix(prefix)
        if directory == job.directory or not directory.name.startswith(prefix):
            continue
        if len(key) != len(job.key) or not all(c in "0123456789abcdef" for c in key):
            continue  # another kernel whose name starts with this one's
        path = directory / OBJECTS
        try:
            counts = json.loads(path.read_text())
            at = path.stat().st_mtime
        except (OSError, ValueError):
            continue
        made = counts.get(target) if isinstance(counts, dict) else None
        if isinstance(made, int) and made > 0 and (newest is None or at > newest[0]):
            newest = (at, made)
    return newest[1] if newest else None


def _prepare_source(job: KernelJob) -> None:
    """`src` is the tree itself (a link) for the work tree, an export of `ref` otherwise."""
    src = job.directory / "src"
    if src.exists() or src.is_symlink():
        return
    job.directory.mkdir(parents=True, exist_ok=True)
    if job.spec.ref is None:
        src.symlink_to(job.spec.source.resolve())
        return
    tmp = job.directory / "src.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    archive = job.directory / "src.tar"
    source = job.spec.source
    process.run(
        git_argv(
            source,
            "archive",
            "--format=tar",
            "-o",
            str(archive),
            "--end-of-options",
            f"{job.spec.ref}^{{commit}}",
            foreign_owner=_foreign_owner(source),
        ),
        env=GIT_ENV,
    )
    process.run(["tar", "-x", "-f", str(archive), "-C", str(tmp)])
    archive.unlink()
    tmp.rename(src)


@contextlib.contextmanager
def _locked(job: KernelJob) -> Iterator[None]:
    """One run at a time in a build directory: a drift timer, a person's plan and an apply
    may all resolve the same kernel's config at once, and make's O= directory is not safe
    to share."""
    job.lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(job.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        if not flock_within(fd, job.timeout_s, poll_s=0.2):
            raise ReconcileError(
                f"kernel '{job.name}': another run kept {job.directory} busy for "
                f"{job.timeout_s:g}s",
                hint="is a build of the same kernel still running? (see its build.log)",
            )
        yield
    finally:
        os.close(fd)


def resolve_config(job: KernelJob) -> dict[str, str]:
    """Base config, fragments merged in order, `set` last, then olddefconfig. Idempotent,
    and safe to call from several runs at once (the first resolves, the others wait)."""
    stamp = job.directory / "config.done"
    if stamp.exists():
        return job.config()
    with _locked(job):
        if stamp.exists():  # another run resolved it while this one waited
            return job.config()
        return _resolve_config(job, stamp)


def _resolve_config(job: KernelJob, stamp: Path) -> dict[str, str]:
    log.info("resolving kernel config", kernel=job.name, key=job.key)
    _prepare_source(job)
    job.build_dir.mkdir(parents=True, exist_ok=True)
    spec = job.spec
    base = _base(spec)
    if isinstance(base, ConfigTarget):
        _make(job, base.target)
    else:
        shutil.copyfile(_config_path(spec, base), resolved_config(job.directory))
    fragments = [str(f) for f in spec.fragments]
    if spec.options:
        set_fragment = job.directory / "set.config"
        set_fragment.write_text(render_fragment(spec.options))
        fragments.append(str(set_fragment))
    if fragments:
        merge = job.directory / "src" / "scripts" / "kconfig" / "merge_config.sh"
        process.run_logged(
            [
                "sh",
                str(merge),
                "-m",
                "-O",
                str(job.build_dir),
                str(resolved_config(job.directory)),
                *fragments,
            ],
            job.log_path,
            cwd=job.directory / "src",
        )
    _make(job, "olddefconfig")
    # kernelrelease reads CONFIG_LOCALVERSION from include/config/auto.conf, which only
    # syncconfig writes: without it a `set` LOCALVERSION is missing from the release, and
    # the modules directory guests are given would be named wrongly.
    _make(job, "syncconfig")
    release = (
        process.run(make_argv(job, "kernelrelease", options=("-s",)))
        .stdout.strip()
        .splitlines()[-1]
    )
    write_atomic(job.directory / "release", release + "\n")
    write_atomic(stamp, job.key)  # last: a config without it is resolved again
    return job.config()


Compile = Callable[[KernelJob, dict[str, str]], None]


def build(job: KernelJob, compile_with: Compile | None = None) -> None:
    """make bzImage (and modules when the config has them), install into the job's dir:
    here, or by `compile_with` (a builder's compile, which ends with `finish` too)."""
    if job.complete():
        return
    config = resolve_config(job)
    with _locked(job):
        if not job.complete():
            (compile_with or _build)(job, config)


def _build(job: KernelJob, config: dict[str, str]) -> None:
    jobs = f"-j{os.cpu_count() or 1}"
    log.info("building kernel: bzImage", kernel=job.name, key=job.key, log=str(job.log_path))
    _make(job, "bzImage", options=(jobs,), on_line=True)
    if config.get("MODULES") == "y":
        log.info("building kernel: modules", kernel=job.name)
        _make(job, "modules", options=(jobs,), on_line=True)
        _make(job, "modules_install", assign=(f"INSTALL_MOD_PATH={job.directory / 'modules'}",))
    finish(job, job.build_dir / "arch" / "x86" / "boot" / "bzImage")


def finish(job: KernelJob, image: Path) -> None:
    """The image in place and the build marked complete (modules are in `modules/`)."""
    release = job.release()
    job.modules_dir(release).mkdir(parents=True, exist_ok=True)  # the share needs it
    partial = job.image.with_name(".bzImage.tmp")
    shutil.copyfile(image, partial)
    partial.chmod(0o644)
    partial.replace(job.image)
    write_atomic(job.directory / "complete", job.key)
    log.info("kernel built", kernel=job.name, release=release)


def remove(layout: StateLayout, directory: Path) -> None:
    """Delete a kernel build of the lab. `src` is a link to the user's tree (or an export):
    the link is removed, never followed."""
    if directory.parent != layout.kernels or not build_dir(directory).exists():
        raise ReconcileError(f"refusing to remove {directory}: not a kernel build directory")
    shutil.rmtree(directory)
    layout.kernel_build_lock(directory).unlink(missing_ok=True)
    log.info("removed kernel build", directory=str(directory))


def config_of_image(image: Path, layout: StateLayout) -> dict[str, str] | None:
    """The resolved config of a kernel build, from its image's path; None for a prebuilt
    kernel or a build that is gone (a kernel config diff then has nothing to say)."""
    if image.parent.parent != layout.kernels:
        return None
    try:
        text = files.read_regular(resolved_config(image.parent), 4 << 20).decode()
    except (OSError, UnicodeDecodeError):
        return None
    return parse_config(text)
