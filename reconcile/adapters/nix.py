"""Nix: one small function per Nix command, each an argv run through `process.run`.

Flakes and installables come from the manifest: each argv ends its options with `--`
(Nix 2.8 reads what follows as positionals, checked here), so none can become a flag.

Evaluation is cached by the flake's locked narHash: an unchanged flake costs one
`nix flake metadata` call and no evaluation. For a local `path:` flake even that call is
skipped while the directory's fingerprint (every entry's lstat: name, type, mode, size,
inode, mtime and ctime) is the one the narHash was taken at: Nix hashes the whole tree for
it, 0.3 s for the demo flake with its disk image tools. An entry changed within the last
few seconds makes the fingerprint unusable (as git treats racy timestamps): a second write
in the same clock tick could leave size and times unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reconcile.adapters import files, process
from reconcile.core.errors import CommandError, ReconcileError
from reconcile.core.guests.observed import GcRootFacts
from reconcile.logs import get_logger

log = get_logger(__name__)

NIX = ("nix", "--extra-experimental-features", "nix-command flakes")
GCROOTS_AUTO = Path("/nix/var/nix/gcroots/auto")
CACHE_MAX_BYTES = 64 << 20
# What an out path looks like (nix-base32 hash, then a name of Nix's allowed characters):
# the eval cache returns nothing else, so a damaged or edited cache cannot name a path
# outside the store (or an option) for the plan to boot.
STORE_PATH = re.compile(r"/nix/store/[0-9abcdfghijklmnpqrsvwxyz]{32}-[A-Za-z0-9+\-._?=]+")


def _json(argv: Sequence[str], hint: str, timeout_s: float = process.DEFAULT_TIMEOUT_S) -> Any:
    done = process.run(argv, hint=hint, timeout=timeout_s)
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise ReconcileError(f"unexpected output from {argv[0]}: {exc}") from None


RACY_NS = 3_000_000_000  # an entry changed this recently: its times cannot tell a change
FINGERPRINT_MAX_ENTRIES = 100_000  # a bigger tree: ask Nix, whose hashing it would dwarf


def flake_fingerprint(flake: str) -> str | None:
    """A digest of a local `path:` flake's tree as lstat shows it, or None: not a plain
    local directory, unreadable, too big, or changed too recently to tell."""
    if not flake.startswith("path:/") or any(c in flake for c in "?#"):
        return None
    root = flake.removeprefix("path:")
    digest = hashlib.sha256()
    now = time.time_ns()
    todo, seen = [""], 0
    try:
        while todo:
            rel = todo.pop()
            with os.scandir(os.path.join(root, rel)) as found:
                entries = sorted(found, key=lambda e: e.name)
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                seen += 1
                if (
                    now - max(st.st_mtime_ns, st.st_ctime_ns) < RACY_NS
                    or seen > FINGERPRINT_MAX_ENTRIES
                ):
                    return None
                name = os.path.join(rel, entry.name)
                digest.update(
                    f"{name}\0{st.st_mode}\0{st.st_size}\0{st.st_ino}\0"
                    f"{st.st_mtime_ns}\0{st.st_ctime_ns}\n".encode(errors="surrogateescape")
                )
                if entry.is_dir(follow_symlinks=False):
                    todo.append(name)
        top = os.lstat(root)
    except OSError:
        return None
    digest.update(f".\0{top.st_ino}\0{top.st_mtime_ns}\0{top.st_ctime_ns}".encode())
    return f"{flake}\0{digest.hexdigest()}"


def flake_narhash(flake: str) -> str:
    """The locked narHash of a flake: what identifies its inputs and its own source."""
    meta = _json(
        [*NIX, "flake", "metadata", "--json", "--", flake],
        hint=f"check that the lab's flake exists and evaluates: nix flake metadata {flake}",
    )
    locked = meta.get("locked", {})
    return str(locked.get("narHash") or meta.get("url") or flake)


def evaluate(installables: Sequence[str], timeout_s: float) -> dict[str, str]:
    """Out paths of each installable's derivation, evaluated (not built) in one call. A dry
    run answers in the installables' order (Nix 2.8 lists them as given; a real build does
    not, see `build`)."""
    if not installables:
        return {}
    result = _json(
        [*NIX, "build", "--dry-run", "--json", "--no-link", "--", *installables],
        hint="evaluate it yourself to see the full error: nix build --dry-run " + installables[0],
        timeout_s=timeout_s,
    )
    return {
        inst: str(item["outputs"]["out"]) for inst, item in zip(installables, result, strict=True)
    }


def build(
    installables: Sequence[str], timeout_s: float, *, builders: str = "", local: bool = True
) -> set[str]:
    """Realise every installable in one `nix build` call; returns their out paths.

    A set, not a mapping: Nix 2.8 answers a build in an order of its own (not the
    installables'), so its answer cannot be zipped with them. `evaluate`'s dry run keeps the
    order, and the plan already knows each installable's out path from it.

    `builders` is Nix's `--builders` value (core/builders.py); `local` False sends every
    build to them (`--max-jobs 0`)."""
    remote = ["--builders", builders] if builders else []
    if builders and not local:
        remote += ["--max-jobs", "0"]
    argv = [
        *NIX,
        "build",
        "--no-link",
        "--json",
        "--print-build-logs",
        *remote,
        "--",
        *installables,
    ]
    try:
        result = _json(argv, hint="rerun the build by hand to see its log", timeout_s=timeout_s)
    except CommandError as error:
        raise CommandError(
            error.argv,
            error.returncode,
            error.output_tail,
            hint="the Nix build failed; rerun the command above to see the whole log"
            + (" (or raise lab.build_timeout)" if error.returncode == -1 else ""),
        ) from None
    return {str(item["outputs"]["out"]) for item in result}


class EvalCache:
    """installable -> out path, valid for one flake narHash, in the lab's state directory."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> Any:
        try:
            return json.loads(files.read_regular(self.path, CACHE_MAX_BYTES))
        except (OSError, ValueError):
            return {}  # absent, damaged or not a file: evaluate again

    def narhash_at(self, fingerprint: str | None) -> str | None:
        """The narHash stored with this fingerprint of the flake, if it is the one stored."""
        data = self._read()
        if fingerprint is None or not isinstance(data, dict):
            return None
        narhash = data.get("narHash")
        if data.get("fingerprint") != fingerprint or not isinstance(narhash, str):
            return None
        return narhash

    def load(self, narhash: str) -> dict[str, str]:
        data = self._read()
        if not isinstance(data, dict) or data.get("narHash") != narhash:
            return {}
        paths = data.get("paths", {})
        if not isinstance(paths, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and STORE_PATH.fullmatch(v)
            for k, v in paths.items()
        ):
            log.warning("eval cache damaged: evaluating again", path=str(self.path))
            return {}
        return dict(paths)

    def store(self, narhash: str, paths: dict[str, str], fingerprint: str | None = None) -> None:
        """Write atomically; a cache that cannot be written only costs an evaluation."""
        # A unique temporary name: a drift timer, a plan and an apply may store at once.
        doc: dict[str, Any] = {"narHash": narhash, "paths": paths}
        if fingerprint is not None:
            doc["fingerprint"] = fingerprint
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            files.write_atomic(self.path, json.dumps(doc, sort_keys=True))
        except (OSError, ReconcileError) as exc:
            log.warning("eval cache not written", path=str(self.path), error=str(exc))


def resolve_systems(
    flake: str, installables: Sequence[str], cache: EvalCache, timeout_s: float
) -> dict[str, str]:
    """Out paths for the installables; evaluates only what the cache does not hold.

    Installables outside the lab's flake are evaluated every time (their inputs are not
    covered by the lab flake's narHash).
    """
    if not installables:
        return {}  # a lab of hypervisors only: nothing to evaluate, not even the flake
    fingerprint = flake_fingerprint(flake)
    narhash = cache.narhash_at(fingerprint)
    known = narhash is not None
    if narhash is None:
        narhash = flake_narhash(flake)
    cached = cache.load(narhash)
    ours = [i for i in installables if i.startswith(flake + "#")]
    missing = sorted({i for i in ours if i not in cached})
    foreign = sorted({i for i in installables if i not in ours})
    fresh = evaluate([*missing, *foreign], timeout_s)
    if missing or (fingerprint is not None and not known):
        cache.store(narhash, {**cached, **{i: fresh[i] for i in missing}}, fingerprint)
    log.debug("systems resolved", cached=len(ours) - len(missing), evaluated=len(fresh))
    return {i: cached.get(i) or fresh[i] for i in installables}


def is_built(store_path: str) -> bool:
    """Whether a store path is present. A stat, not a Nix call: cheap per guest."""
    return os.path.exists(store_path)


def _auto(link: Path) -> Path:
    """The link's registration in Nix's gcroots/auto (named by a hash of its path)."""
    return GCROOTS_AUTO / hashlib.sha256(str(link).encode()).hexdigest()[:32]


def _registered(link: Path | str) -> bool:
    name = hashlib.sha256(str(link).encode()).hexdigest()[:32]  # as _auto, without Paths
    try:
        return os.readlink(os.path.join(GCROOTS_AUTO, name)) == str(link)
    except OSError:
        return False


def observe_gc_roots(root: Path) -> dict[str, dict[str, GcRootFacts]]:
    """Every guest's root links under `root` (`<state_dir>/gcroots`), by guest and link
    name: a readlink per link and one of its registration, no Nix call."""
    root = root.absolute()
    found: dict[str, dict[str, GcRootFacts]] = {}
    try:
        guests = list(os.scandir(root))
    except OSError:
        return found  # none yet (or unreadable: every root then reads as missing)
    for guest in guests:
        if not guest.is_dir(follow_symlinks=False):
            continue  # the layout before per-closure roots: made anew by the next sync
        links: dict[str, GcRootFacts] = {}
        try:
            entries = list(os.scandir(guest.path))
        except OSError:
            entries = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            link = entry.path  # a str: 1000 guests' links cost ~15 ms more as Paths
            try:
                target = os.readlink(link)
            except OSError:
                target = ""  # not a link: not a root
            links[entry.name] = GcRootFacts(target, _registered(link))
        found[guest.name] = links
    return found


def add_gc_root(link: Path, target: str) -> None:
    """An indirect GC root, as `nix-store --add-root --indirect` makes: our symlink under the
    lab's state directory, registered in Nix's gcroots/auto."""
    link = link.absolute()  # what gcroots/auto points at must not depend on the cwd
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    tmp.replace(link)
    GCROOTS_AUTO.mkdir(parents=True, exist_ok=True)
    auto = _auto(link)
    if not auto.is_symlink() or os.readlink(auto) != str(link):
        auto.unlink(missing_ok=True)
        auto.symlink_to(link)


def sync_gc_roots(directory: Path, targets: set[str]) -> None:
    """Make `directory` hold exactly one root per store path in `targets`.

    A guest keeps a root for the closure of its persistent definition and, while it runs
    an older one, for its running definition too: a redefine never leaves a running guest's
    closure collectable. An empty set removes them all.
    """
    directory = directory.absolute()
    if directory.is_symlink():  # the layout before per-closure roots: one link per guest
        remove_gc_root(directory)
    wanted = {directory / Path(t).name: t for t in targets}
    for link, target in sorted(wanted.items()):
        if not link.is_symlink() or os.readlink(link) != target or not _registered(link):
            add_gc_root(link, target)
    if directory.is_dir():
        for link in directory.iterdir():
            if link not in wanted and not link.name.startswith("."):
                remove_gc_root(link)
        if not targets:
            with contextlib.suppress(OSError):
                directory.rmdir()


def remove_gc_root(link: Path) -> None:
    link = link.absolute()
    link.unlink(missing_ok=True)
    _auto(link).unlink(missing_ok=True)


def read_bootspec(toplevel: str) -> dict[str, Any]:
    """The closure's NixOS bootspec v1 (boot.json)."""
    path = Path(toplevel) / "boot.json"
    try:
        doc = json.loads(files.read_regular(path, 1 << 20))
        spec: dict[str, Any] = doc["org.nixos.bootspec.v1"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ReconcileError(
            f"{path}: not a NixOS bootspec v1 ({exc})",
            hint="the system must be a NixOS toplevel (config.system.build.toplevel)",
        ) from None
    return spec


def closure_sizes(store_path: str) -> dict[str, int] | None:
    """Each path of `store_path`'s closure with its NAR size; None when it is not here
    (not built yet, or collected): a closure diff then says what it cannot know."""
    if not STORE_PATH.fullmatch(store_path) or not is_built(store_path):
        return None
    try:
        found = _json(
            [*NIX, "path-info", "--json", "--recursive", "--", store_path],
            hint=f"nix path-info --recursive {store_path}",
        )
    except ReconcileError as error:
        log.warning("closure unreadable", path=store_path, error=error.message)
        return None
    return {str(p["path"]): int(p.get("narSize") or 0) for p in found if "path" in p}
