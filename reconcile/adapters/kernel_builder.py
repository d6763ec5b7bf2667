"""A kernel compiled on a builder machine (`[kernels.<name>] builder`), over its pinned SSH.

What runs where:
- here, in the plan, as for every built kernel: the source is prepared (`src`: the tree,
  or an export of `ref`) and kconfig resolves the config in the lab's build directory
  (kernel_build.resolve_config), so a config lacking what guests need fails the plan;
- there, in apply: `~/.cache/reconcile-kernels/<name>-<key>/` on the builder receives
  `src` as a tar stream (once per key: a retry reuses it, and make its objects) and the
  resolved .config; make runs with a local build's argv at that directory (under flock:
  one make per directory), its output streamed back into build.log and the progress;
- here again: a tar stream brings bzImage, the modules tree, the release and the .config
  back into the build directory, which `kernel_build.finish` marks complete as a local
  build is, so nothing downstream (key, guests, drift, pruning) knows where make ran.

The copy there has no .git, so setlocalversion there cannot add what it adds here for a
git tree (`+`, `-g<commit>`): that part of the release resolved here is given to make
there as LOCALVERSION, and the release that comes back must be the one guests were
planned with. Commands run over one paramiko session pinned to the builder's `host_key`
(adapters/ssh.py); the streams through OpenSSH with the same pin.
"""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reconcile import progress
from reconcile.adapters import deploy, kernel_build, process
from reconcile.adapters.kernel_build import KernelJob, make_argv, resolved_config
from reconcile.adapters.remote_hypervisor import RECEIVE
from reconcile.adapters.ssh import Session
from reconcile.core.builders import builder_ssh, described
from reconcile.core.desired import Builder, Ssh
from reconcile.core.errors import CommandError, ReconcileError
from reconcile.core.kernels.kconfig import diff_configs, parse_config
from reconcile.core.layout import StateLayout
from reconcile.core.ssh_login import login_argv
from reconcile.logs import get_logger

log = get_logger(__name__)

NEEDED = ("make", "flock", "tar")  # besides what make needs: a C toolchain, bc, flex, bison
MISSING = 127
# $1 the build's name (`<name>-<key>`): checks the tools, makes its directory, and prints
# the directory, the CPUs, whether the source is there, make's and gcc's versions.
PREPARE = (
    f"for p in {' '.join(NEEDED)}; "
    'do command -v "$p" >/dev/null || { echo "$p" >&2; exit 127; }; '
    'done; d="$HOME/.cache/reconcile-kernels/$1"; mkdir -p -- "$d/build" || exit 1; '
    'printf "%s\\n" "$d"; nproc 2>/dev/null || getconf _NPROCESSORS_ONLN; '
    '[ -d "$d/src" ] && echo reuse || echo send; make --version | head -n 1; '
    "gcc --version 2>/dev/null | head -n 1; exit 0"
)
# $1 the build's directory: the source arrives on stdin, and is `src` only once complete.
RECEIVE_TREE = (
    'rm -rf -- "$1/src.part" && mkdir -- "$1/src.part" && '
    'tar -x -f - --no-same-owner -C "$1/src.part" && mv -T -- "$1/src.part" "$1/src"'
)
IMAGE = "build/arch/x86/boot/bzImage"
RELEASE = "build/include/config/kernel.release"
CONFIG = "build/.config"


@dataclass(frozen=True)
class Remote:
    """The build's directory on the builder, and what PREPARE said of the machine."""

    directory: Path
    cpus: int
    has_source: bool
    tools: tuple[str, ...]


def parse_prepare(out: str) -> Remote:
    lines = out.splitlines()
    if len(lines) < 3 or not lines[0].startswith("/") or not lines[1].isdigit():
        raise ValueError(f"unreadable answer: {out[:200]!r}")
    tools = tuple(line for line in lines[3:] if line)
    return Remote(Path(lines[0]), max(1, int(lines[1])), lines[2] == "reuse", tools)


def release_suffix(release: str, base: str) -> str:
    """What setlocalversion added to `base` for the tree here: the LOCALVERSION of make
    there. Raises ValueError when `release` does not extend `base`."""
    if not release.startswith(base):
        raise ValueError(f"release {release} does not start with {base}")
    return release[len(base) :]


def fetch_members(modules: bool) -> list[str]:
    """What comes back, relative to the build's directory there."""
    return [IMAGE, CONFIG, RELEASE, *(["modules"] if modules else [])]


class KernelBuilder:
    """One builder, compiling a kernel job whose config was resolved here."""

    def __init__(self, builder: Builder, layout: StateLayout, timeout_s: float) -> None:
        self.builder = builder
        self.layout = layout
        self.timeout_s = timeout_s
        self.ssh: Ssh = builder_ssh(builder, timeout_s)

    def __str__(self) -> str:
        return described(self.builder)

    def compile(self, job: KernelJob, config: dict[str, str]) -> None:
        """kernel_build.build's compile: make there, the result back here, complete."""
        known_hosts = deploy.known_hosts_file(
            self.ssh, self.layout.builder_known_hosts(self.builder.name)
        )
        session = Session(self.ssh)
        try:
            self._compile(job, config, session, known_hosts)
        finally:
            session.close()

    def _compile(
        self, job: KernelJob, config: dict[str, str], session: Session, known_hosts: Path
    ) -> None:
        remote = self._prepare(job, session)
        d = remote.directory
        with job.log_path.open("a") as sink:
            sink.write(f"# on {self} in {d}: {' | '.join(remote.tools)}\n")
        log.info("building kernel on a builder", kernel=job.name, builder=self.builder.name)
        if not remote.has_source:
            progress.report(f"sending the source to builder {self.builder.name}")
            tar = ["tar", "-C", str((job.directory / "src").resolve()), "--exclude=./.git"]
            self._stream(
                known_hosts, ["sh", "-c", RECEIVE_TREE, "sh", str(d)], [*tar, "-cf", "-", "."]
            )
        config_there = ["sh", "-c", RECEIVE, "sh", str(d / CONFIG)]
        self._stream(known_hosts, config_there, resolved_config(job.directory))
        assign = (f"LOCALVERSION={self._suffix(job)}",)
        jobs = (f"-j{remote.cpus}",)
        self._make(job, known_hosts, d, "bzImage", options=jobs, assign=assign)
        modules = config.get("MODULES") == "y"
        if modules:
            session.run(["rm", "-rf", "--", str(d / "modules")])
            self._make(job, known_hosts, d, "modules", options=jobs, assign=assign)
            install = (*assign, f"INSTALL_MOD_PATH={d / 'modules'}")
            self._make(job, known_hosts, d, "modules_install", assign=install, progress=False)
        self._fetch(job, known_hosts, d, modules)

    def _prepare(self, job: KernelJob, session: Session) -> Remote:
        done = session.run(["sh", "-c", PREPARE, "sh", job.directory.name], check=False)
        if done.returncode == MISSING:
            raise ReconcileError(
                f"kernel '{job.name}': {self} has no {done.stderr.strip() or 'make'}",
                hint=f"a kernel builder needs {', '.join(NEEDED)} and what a kernel build "
                "needs (gcc, ld, bc, flex, bison, perl, ...); install them there",
            )
        if done.returncode != 0:
            raise CommandError(
                ("ssh", self.ssh.target.destination, "sh"), done.returncode, done.stderr
            )
        try:
            return parse_prepare(done.stdout)
        except ValueError as exc:
            raise ReconcileError(f"kernel '{job.name}': {self}: {exc}") from None

    def _suffix(self, job: KernelJob) -> str:
        """The release's part setlocalversion takes from git here (needs the lock held)."""
        argv = make_argv(job, "kernelrelease", options=("-s",), assign=("LOCALVERSION=",))
        base = process.run(argv).stdout.strip().splitlines()[-1]
        try:
            return release_suffix(job.release(), base)
        except ValueError as exc:
            raise ReconcileError(f"kernel '{job.name}': {exc}") from None

    def _make(
        self,
        job: KernelJob,
        known_hosts: Path,
        d: Path,
        target: str,
        *,
        options: tuple[str, ...] = (),
        assign: tuple[str, ...] = (),
        progress: bool = True,
    ) -> None:
        make = make_argv(job, target, options=options, assign=assign, at=d)
        # one make per directory there: another controller may build the same key
        argv = self._over_ssh(
            known_hosts, ["flock", "-w", f"{self.timeout_s:.0f}", str(d / "lock"), *make]
        )
        shown = kernel_build.MakeProgress(job, f"{target} on builder {self.builder.name}", target)
        process.run_logged(
            argv,
            job.log_path,
            timeout=self.timeout_s,
            on_line=shown if progress else lambda _line: None,
            hint=f"make ran on {self} in {d}; the whole log: {job.log_path}",
        )
        if progress:
            shown.record()

    def _fetch(self, job: KernelJob, known_hosts: Path, d: Path, modules: bool) -> None:
        """The result into the build directory here, then `finish` marks it complete."""
        staging = job.directory / "fetched.part"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        progress.report(f"fetching the kernel from builder {self.builder.name}")
        there = self._over_ssh(
            known_hosts, ["tar", "-C", str(d), "-cf", "-", "--", *fetch_members(modules)]
        )
        untar = ["tar", "-x", "-f", "-", "--no-same-owner", "--no-same-permissions"]
        process.run_fed(
            [*untar, "-C", str(staging)],
            there,
            timeout=self.timeout_s,
            hint=f"copying the kernel back from {self} failed; it is fetched again next run",
        )
        for member in (IMAGE, CONFIG, RELEASE):  # a link would copy a file of this machine
            path = staging / member
            if (
                path.is_symlink()
                or not path.is_file()
                or staging.resolve() not in path.resolve().parents
            ):
                raise ReconcileError(f"kernel '{job.name}': {self} sent a {member} that is no file")
        release = (staging / RELEASE).read_text().strip()
        if release != job.release():
            raise ReconcileError(
                f"kernel '{job.name}': {self} built release {release}, "
                f"but its guests were planned with {job.release()}",
                hint=f"compare `make -s kernelrelease` in {job.directory} here and in {d} there",
            )
        here, there_config = job.config(), parse_config((staging / CONFIG).read_text())
        if changed := diff_configs(here, there_config):  # its compiler's own options
            log.warning(
                "the builder's toolchain changed the resolved config",
                kernel=job.name,
                builder=self.builder.name,
                options=[option for option, _, _ in changed][:20],
            )
        (staging / CONFIG).replace(resolved_config(job.directory))
        if modules:
            shutil.rmtree(job.directory / "modules", ignore_errors=True)
            (staging / "modules").rename(job.directory / "modules")
        kernel_build.finish(job, staging / IMAGE)
        shutil.rmtree(staging)

    def _stream(
        self, known_hosts: Path, remote: Sequence[str], source: Path | Sequence[str]
    ) -> None:
        """`remote` there with the file `source` (or the local argv's output) as its stdin."""
        process.run_fed(
            self._over_ssh(known_hosts, remote),
            source,
            timeout=self.timeout_s,
            hint=f"copying to {self} failed; the build is made again next run",
        )

    def _over_ssh(self, known_hosts: Path, argv: Sequence[str]) -> list[str]:
        """OpenSSH running argv there, pinned, never asking; a dead peer ends it."""
        ssh = login_argv(self.ssh, known_hosts, [shlex.join(argv)])
        ssh[1:1] = ["-o", "BatchMode=yes", "-o", "ServerAliveInterval=30"]
        return ssh
