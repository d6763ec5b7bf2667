"""A remote hypervisor's own machine: what its guests boot from is put there, over pinned SSH.

A guest on a `qemu+ssh://` hypervisor boots from that machine's files (core/guests/placement.py):
its closure is copied into the hypervisor's store with `nix copy`, its kernel and modules
once per kernel digest, its initrd once per content key; the read-only views, the GC roots
and the serial log are made there, at the lab's state directory's paths. Every command is
argv over one session pinned to the hypervisor's key (adapters/ssh.py); the scripts are
constants, the paths they work on arrive as positional parameters. Bulk data (a kernel's
modules, an initrd) goes through OpenSSH's stdin with the same pin.

A view here is made by `mount --bind` then a read-only remount (util-linux 2.38 has no
atomic read-only bind): a run killed between the two leaves a writable bind, which the
next observation reports as writable and the next start replaces, never uses.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from reconcile.adapters import deploy, process
from reconcile.adapters.nix import GCROOTS_AUTO
from reconcile.adapters.ssh import Session
from reconcile.adapters.views import classify, parse_mountinfo
from reconcile.core.desired import Ssh
from reconcile.core.errors import ReconcileError
from reconcile.core.guests.imageless import BootKernel
from reconcile.core.guests.observed import GcRootFacts, ViewState
from reconcile.core.guests.shares import View
from reconcile.core.layout import StateLayout
from reconcile.core.plan.diff import MachineFacts
from reconcile.core.ssh_login import login_argv
from reconcile.logs import get_logger

log = get_logger(__name__)

COPY_TIMEOUT_S = 1800.0

# $1 the GC root directory, $2 the kernel copies' directory, then paths to stat: the mount
# table, each path's identity and real path (in order), each root link with its target and
# its registration's target, the kernel copies' names.
OBSERVE = (
    'd=$1; k=$2; shift 2; cat /proc/self/mountinfo; echo "::stat"; '
    'for p; do printf "%s %s\\n" "$(stat -L -c %d:%i -- "$p" 2>/dev/null || echo -)" '
    '"$(readlink -f -- "$p" 2>/dev/null || echo "$p")"; done; echo "::roots"; '
    'for l in "$d"/*/*; do [ -L "$l" ] || continue; '
    'a="' + str(GCROOTS_AUTO) + '/$(printf %s "$l" | sha256sum | cut -c1-32)"; '
    'printf "%s\\t%s\\t%s\\n" "$l" "$(readlink -- "$l")" "$(readlink -- "$a")"; done; '
    'echo "::kernels"; [ ! -d "$k" ] || ls -1A -- "$k"'
)
# $1 view, $2 source: replace whatever is mounted at the view with a read-only bind.
MAKE_VIEW = (
    '[ -d "$2" ] || { echo "the read-only share source $2 is not a directory" >&2; exit 3; }; '
    'while mountpoint -q -- "$1"; do umount --recursive --lazy -- "$1" || exit 1; done; '
    'mkdir -p -- "$1" && mount --bind -- "$2" "$1" && mount -o remount,bind,ro -- "$1"'
)
UNMOUNT = 'while mountpoint -q -- "$1"; do umount --recursive --lazy -- "$1" || exit 1; done'
# $1 a guest's root directory, then the store paths it must keep: one registered link each.
SYNC_ROOTS = (
    'd=$1; shift; auto="' + str(GCROOTS_AUTO) + '"; mkdir -p -- "$d" "$auto" || exit 1; '
    'reg() { printf "%s/%s" "$auto" "$(printf %s "$1" | sha256sum | cut -c1-32)"; }; '
    'for t; do l="$d/${t##*/}"; ln -sfn -- "$t" "$l" && ln -sfn -- "$l" "$(reg "$l")" '
    "|| exit 1; done; "
    'for l in "$d"/*; do [ -L "$l" ] || continue; keep=; '
    'for t; do [ "${l##*/}" = "${t##*/}" ] && keep=1; done; '
    '[ -n "$keep" ] || rm -f -- "$l" "$(reg "$l")"; done; '
    '[ $# -gt 0 ] || rmdir -- "$d" 2>/dev/null; exit 0'
)
# $1 a directory to make anew (a kernel's copy in progress).
FRESH_DIR = 'rm -rf -- "$1" && mkdir -p -- "$1/modules"'
# $1 the finished copy, $2 its place: marked complete, then moved there in one rename
# (unless a complete one got there first: a state directory shared by hypervisors).
FINISH_DIR = (
    'touch -- "$1/.complete" || exit 1; '
    'if [ -e "$2/.complete" ]; then rm -rf -- "$1"; else rm -rf -- "$2" && mv -T -- "$1" "$2"; fi'
)
# $1 a file: written from stdin beside it, then renamed over it.
RECEIVE = 'mkdir -p -- "${1%/*}" && cat > "$1.part" && mv -f -- "$1.part" "$1"'
FRESH_LOG = 'mkdir -p -- "${1%/*}" && rm -f -- "$1"'
# $1 a guest initrd, $2 the system's initrd there: stdin (the early modules) goes first.
JOIN_INITRD = (
    'mkdir -p -- "${1%/*}" && cat - "$2" > "$1.part" && chmod 0644 "$1.part" '
    '&& mv -f -- "$1.part" "$1"'
)
BOOTSPEC_MAX_BYTES = 1 << 20


class RemoteMachine:
    """The machine behind one qemu+ssh hypervisor, as its guests' files need it."""

    def __init__(self, name: str, ssh: Ssh, known_hosts: Path) -> None:
        self.name = name
        self.ssh = ssh
        self.known_hosts = known_hosts  # pinning ssh.host_key, for OpenSSH (nix copy, data)
        self.session = Session(ssh)
        self._lock = threading.Lock()  # guests start in parallel: one copy of a kernel

    remote = True

    def __str__(self) -> str:
        return f"hypervisor '{self.name}' ({self.ssh.target.authority})"

    # -- observing ---------------------------------------------------------------------

    def observe(self, views: Sequence[View], layout: StateLayout) -> MachineFacts:
        """Its views' states, its guests' GC root links and its kernel copies, in one round
        trip."""
        paths = [str(p) for v in views for p in (v.path, v.source)]
        where = [str(layout.gcroots), str(layout.placed_kernels)]
        out = self.session.run(["sh", "-c", OBSERVE, "sh", *where, *paths]).stdout
        table, _, rest = out.partition("::stat\n")
        stats, _, rest = rest.partition("::roots\n")
        roots_text, _, kernels = rest.partition("::kernels\n")
        mounts = parse_mountinfo(table.encode())
        lines = stats.splitlines()
        if len(lines) != len(paths):
            raise ReconcileError(f"{self}: unreadable observation of its views")
        seen = [line.split(" ", 1) for line in lines]
        states = {}
        for i, view in enumerate(views):
            (shown, real), (source, _) = seen[2 * i], seen[2 * i + 1]
            states[view] = classify(mounts, real, shown != "-" and shown == source)
        roots: dict[str, dict[str, GcRootFacts]] = {}
        for line in roots_text.splitlines():
            link, _, rest = line.partition("\t")
            target, _, registered = rest.partition("\t")
            guest, name = Path(link).parent.name, Path(link).name
            roots.setdefault(guest, {})[name] = GcRootFacts(target, registered == link)
        return MachineFacts(states, roots, tuple(kernels.split()))

    def read_console(self, path: Path) -> str:
        return self.session.run(["cat", "--", str(path)], check=False).stdout

    def show_console(
        self,
        path: Path,
        *,
        lines: int,
        follow: bool,
        emit: Callable[[bytes], None],
        note: Callable[[str], None],
    ) -> None:
        """`reconcile console`: the log's last `lines` lines there, then (with `follow`)
        what it writes, as `tail -F` sends it (its notes of a replaced log are not
        passed on). FileNotFoundError when there is none."""
        if self.session.run(["test", "-e", str(path)], check=False).returncode != 0:
            raise FileNotFoundError(str(path))
        tail = ["tail", "-n", str(lines), *(["-F"] if follow else []), "--", str(path)]
        argv = login_argv(self.ssh, self.known_hosts, [shlex.join(tail)])
        argv[1:1] = ["-o", "BatchMode=yes"]
        code = process.stream(argv, emit)
        if code != 0:
            raise ReconcileError(f"reading the console log on {self} failed (exit {code})")

    # -- putting what guests boot from there -------------------------------------------

    def has_path(self, store_path: str) -> bool:
        return deploy.has_path(self.session, store_path)

    def build(self, installable: str, toplevel: str, timeout_s: float) -> None:
        """Evaluate `installable` here and build it in the hypervisor's own store (nothing
        is copied back); it must be the `toplevel` the plan evaluated."""
        if self.has_path(toplevel):
            return
        log.info("building on the hypervisor", hypervisor=self.name, installable=installable)
        deploy.build_on_host(self.ssh, installable, self.known_hosts, timeout_s, {})
        if not self.has_path(toplevel):
            raise ReconcileError(
                f"{self}: building {installable} did not make {toplevel}",
                hint="the flake changed since the plan: plan again",
            )

    def read_bootspec(self, toplevel: str) -> dict[str, Any]:
        """The closure's bootspec as the hypervisor's store has it."""
        path = f"{toplevel}/boot.json"
        done = self.session.run(["head", "-c", str(BOOTSPEC_MAX_BYTES), "--", path])
        try:
            spec: dict[str, Any] = json.loads(done.stdout)["org.nixos.bootspec.v1"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ReconcileError(
                f"{self}: {path}: not a NixOS bootspec v1 ({exc})",
                hint="the system must be a NixOS toplevel (config.system.build.toplevel)",
            ) from None
        return spec

    def join_initrd(self, target: Path, early: bytes, system_initrd: str) -> None:
        """`target` there: the early modules' archive `early`, then the system's initrd
        from the hypervisor's store. Content-addressed by its inputs: made once."""
        with self._lock:
            if self.session.run(["test", "-s", str(target)], check=False).returncode == 0:
                return
            with tempfile.TemporaryDirectory(prefix="reconcile-initrd-") as directory:
                archive = Path(directory) / "early.cpio"
                archive.write_bytes(early)
                self._send(["sh", "-c", JOIN_INITRD, "sh", str(target), system_initrd], archive)

    def put_closure(self, toplevel: str) -> None:
        """`nix copy` the closure into the hypervisor's store (nothing when it is there).
        One copy at a time: two into one store at once race on the same paths (Nix 2.8:
        "not an absolute path: 'nix-archive-1'")."""
        with self._lock:
            if deploy.has_path(self.session, toplevel):
                return
            log.info("copying closure", hypervisor=self.name, path=toplevel)
            deploy.copy_closure(self.ssh, toplevel, self.known_hosts, COPY_TIMEOUT_S, {})

    def put_kernel(self, image: Path, modules: Path, placed: BootKernel) -> None:
        """The controller's kernel `image` and `modules` tree, as `placed` names them there:
        copied once per digest, complete or not at all."""
        home = placed.image.parent
        with self._lock:
            done = self.session.run(["test", "-e", str(home / ".complete")], check=False)
            if done.returncode == 0:
                return
            log.info("copying kernel", hypervisor=self.name, image=str(image))
            part = home.with_name(f"{home.name}.part-{uuid.uuid4().hex[:8]}")
            self.session.run(["sh", "-c", FRESH_DIR, "sh", str(part)])
            self._send(["sh", "-c", RECEIVE, "sh", str(part / "vmlinuz")], image)
            tar = ["tar", "-C", str(modules.parent), "-cf", "-", "--", modules.name]
            self._send(["tar", "-C", str(part / "modules"), "-xf", "-"], tar)
            self.session.run(["sh", "-c", FINISH_DIR, "sh", str(part), str(home)])

    def put_file(self, path: Path) -> None:
        """A file of the state directory (an initrd) at the same path there, copied unless
        the one there has the same sha256 (a damaged copy is made anew, never booted)."""
        with path.open("rb") as data:
            want = hashlib.file_digest(data, "sha256").hexdigest()
        with self._lock:
            there = self.session.run(["sha256sum", "--", str(path)], check=False)
            if there.returncode == 0 and there.stdout.split()[:1] == [want]:
                return
            self._send(["sh", "-c", RECEIVE, "sh", str(path)], path)

    def ensure_views(self, views: Iterable[View], layout: StateLayout) -> None:
        """Each view a read-only bind of its source there; a writable or stale one replaced."""
        views = list(views)
        with self._lock:
            states = self.observe(views, layout).views
            todo = [v for v in views if states[v] is not ViewState.READ_ONLY]
            for view in todo:
                self.session.run(["sh", "-c", MAKE_VIEW, "sh", str(view.path), str(view.source)])
            if not todo:
                return
            states = self.observe(todo, layout).views
            for view in todo:
                if states[view] is not ViewState.READ_ONLY:
                    self.session.run(["sh", "-c", UNMOUNT, "sh", str(view.path)])
                    raise ReconcileError(
                        f"{self}: the view {view.path} of {view.source} is "
                        f"{states[view].value}; unmounted it",
                        hint="read-only views need root on the hypervisor host",
                    )

    def sync_gc_roots(self, directory: Path, targets: set[str]) -> None:
        self.session.run(["sh", "-c", SYNC_ROOTS, "sh", str(directory), *sorted(targets)])

    def remove_kernel_copy(self, directory: Path) -> None:
        self.session.run(["rm", "-rf", "--", str(directory)])

    def fresh_console(self, path: Path) -> None:
        self.session.run(["sh", "-c", FRESH_LOG, "sh", str(path)])

    def close(self) -> None:
        self.session.close()

    def _send(self, remote: Sequence[str], source: Path | Sequence[str]) -> None:
        """Run `remote` there with the file `source` (or the output of the local argv
        `source`) as its stdin, over OpenSSH with the same pin."""
        argv = login_argv(self.ssh, self.known_hosts, [shlex.join(remote)])
        argv[1:1] = ["-o", "BatchMode=yes"]
        process.run_fed(
            argv,
            source,
            timeout=COPY_TIMEOUT_S,
            hint=f"copying to {self} failed; its guests are unchanged, the copy is made again "
            "next run",
        )
