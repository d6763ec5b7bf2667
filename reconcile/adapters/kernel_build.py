"""Building kernels: source identity, config resolution and make, out of tree.

Each build lives in `<state_dir>/kernels/<name>-<key>/`, where the key hashes what
determines it (core/kconfig.build_key). Layout:
  build/       make's O= directory (.config, the objects)
  bzImage      the image guests boot
  modules/     INSTALL_MOD_PATH: modules/lib/modules/<release>
  release      `make kernelrelease`
  build.log    everything make printed
  complete     written last: a build without it is not one
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from reconcile.adapters import process
from reconcile.core.desired import Kernel, KernelBuild
from reconcile.core.errors import ReconcileError
from reconcile.core.kconfig import build_key, parse_config, render_fragment

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class KernelJob:
    """A kernel of the manifest, located: where its build is, and whether it is done."""

    name: str
    spec: KernelBuild
    key: str
    directory: Path

    @property
    def build_dir(self) -> Path:
        return self.directory / "build"

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
        return parse_config((self.build_dir / ".config").read_text())


def _git(source: Path, *args: str) -> str:
    return process.run(
        ["git", "-C", str(source), *args],
        hint=f"kernels are built from a git tree: is {source} one? (git -C {source} status)",
    ).stdout


def source_identity(spec: KernelBuild) -> str:
    """The commit to build, plus a hash of uncommitted changes when building the work tree."""
    if spec.ref is not None:
        commit = _git(spec.source, "rev-parse", "--verify", f"{spec.ref}^{{commit}}").strip()
        return f"commit:{commit}"
    head = _git(spec.source, "rev-parse", "--verify", "HEAD^{commit}").strip()
    status = _git(spec.source, "status", "--porcelain", "--untracked-files=all")
    if not status.strip():
        return f"commit:{head}"
    digest = hashlib.sha256(_git(spec.source, "diff", "HEAD", "--binary").encode())
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


def _base_identity(spec: KernelBuild) -> str:
    if spec.config.endswith("config") and "/" not in spec.config:
        return f"target:{spec.config}"
    path = Path(spec.config)
    path = path if path.is_absolute() else spec.source / path
    return f"file:{hashlib.sha256(_read(path, 'config')).hexdigest()}"


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ReconcileError(f"cannot read the kernel {what} {path}: {exc.strerror}") from None


def locate(kernel: Kernel, state_dir: Path) -> KernelJob:
    spec = kernel.source
    assert isinstance(spec, KernelBuild)
    key = build_key(
        source=source_identity(spec),
        base_config=_base_identity(spec),
        fragments=[hashlib.sha256(_read(f, "fragment")).hexdigest() for f in spec.fragments],
        options=spec.options,
        toolchain=toolchain_identity(),
    )
    return KernelJob(kernel.name, spec, key, state_dir / "kernels" / f"{kernel.name}-{key}")


def _make(job: KernelJob, *targets: str, on_line: bool = False) -> None:
    argv = ["make", "-C", str(job.directory / "src"), f"O={job.build_dir}", *targets]
    process.run_logged(
        argv,
        job.log_path,
        on_line=_progress(job) if on_line else lambda _line: None,
        hint=f"rerun it: {' '.join(argv)}   (the whole log: {job.log_path})",
    )


def _progress(job: KernelJob) -> Callable[[str], None]:
    count = 0

    def show(line: str) -> None:
        nonlocal count
        if line.lstrip().startswith(("CC", "LD", "AR", "AS")):
            count += 1
            if count % 250 == 0:
                log.info("kernel build progress", kernel=job.name, objects=count)

    return show


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
    process.run(["git", "-C", str(job.spec.source), "archive", "-o", str(archive), job.spec.ref])
    process.run(["tar", "-x", "-f", str(archive), "-C", str(tmp)])
    archive.unlink()
    tmp.rename(src)


def resolve_config(job: KernelJob) -> dict[str, str]:
    """Base config, fragments merged in order, `set` last, then olddefconfig. Idempotent."""
    stamp = job.directory / "config.done"
    if stamp.exists():
        return job.config()
    log.info("resolving kernel config", kernel=job.name, key=job.key)
    _prepare_source(job)
    job.build_dir.mkdir(parents=True, exist_ok=True)
    spec = job.spec
    if spec.config.endswith("config") and "/" not in spec.config:
        _make(job, spec.config)
    else:
        path = Path(spec.config)
        path = path if path.is_absolute() else spec.source / path
        shutil.copyfile(path, job.build_dir / ".config")
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
                str(job.build_dir / ".config"),
                *fragments,
            ],
            job.log_path,
            cwd=job.directory / "src",
        )
    _make(job, "olddefconfig")
    release = (
        process.run(
            ["make", "-s", "-C", str(job.directory / "src"), f"O={job.build_dir}", "kernelrelease"]
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    (job.directory / "release").write_text(release + "\n")
    stamp.write_text(job.key)
    return job.config()


def build(job: KernelJob) -> None:
    """make bzImage (and modules when the config has them), install into the job's dir."""
    if job.complete():
        return
    config = resolve_config(job)
    jobs = f"-j{os.cpu_count() or 1}"
    log.info("building kernel: bzImage", kernel=job.name, key=job.key, log=str(job.log_path))
    _make(job, jobs, "bzImage", on_line=True)
    release = job.release()
    if config.get("MODULES") == "y":
        log.info("building kernel: modules", kernel=job.name)
        _make(job, jobs, "modules", on_line=True)
        _make(job, f"INSTALL_MOD_PATH={job.directory / 'modules'}", "modules_install")
    job.modules_dir(release).mkdir(parents=True, exist_ok=True)  # the share needs it
    shutil.copyfile(job.build_dir / "arch" / "x86" / "boot" / "bzImage", job.image)
    job.image.chmod(0o644)
    (job.directory / "complete").write_text(job.key)
    log.info("kernel built", kernel=job.name, release=release)


def remove(directory: Path) -> None:
    """Delete a kernel build. `src` is a link to the user's tree (or an export): the link
    is removed, never followed."""
    if directory.parent.name != "kernels" or not (directory / "build").exists():
        raise ReconcileError(f"refusing to remove {directory}: not a kernel build directory")
    shutil.rmtree(directory)
    log.info("removed kernel build", directory=str(directory))
