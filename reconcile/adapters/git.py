"""The git side of one gitops cycle: fetch a branch, check out a commit, judge it.

A controller runs this on a timer, unattended, from a repository it does not own. So git
runs here as if on a stranger's machine: the user's and the system's git config are
ignored (no global hooks, credential helpers, `insteadOf` rewrites or `GIT_DIR` left over
from a hook), no prompt can block (`GIT_TERMINAL_PROMPT=0`, ssh in batch mode), every call
has a timeout, and each failure becomes a ReconcileError in git's own words with a hint.

The copy lives in `workdir`: `workdir/git` is a bare repository holding the fetched
history, `workdir/tree` the checked-out files of exactly one commit, with no `.git` in it.
Fetching and checking out are separate steps so the cycle can judge a fetched commit
(descends from the last applied one? signed?) before the tree moves.

Only transports that move data are allowed (`GIT_ALLOW_PROTOCOL`: file, git, http(s),
ssh; never `ext::` or another remote helper that runs a command), and no repository URL or
branch can become a git option (they are checked, and `--end-of-options` precedes them).

ssh runs with no ssh config (`-F /dev/null`), in batch mode, and accepts only the pinned
host key (`SshPin`: a key written to a known_hosts file of its own, or the operator's
known_hosts file); an inherited GIT_SSH/GIT_SSH_COMMAND is dropped. The deploy key is
`SshPin.identity`, else ssh's default keys or agent; https credentials come from a
GIT_ASKPASS program in the service's environment (git config, so any credential helper, is
not read).
"""

from __future__ import annotations

import os
import re
import shlex
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

from reconcile.adapters import files
from reconcile.adapters.process import Completed, run
from reconcile.core.errors import CommandError, ReconcileError
from reconcile.core.gitops.git_url import ALLOWED_PROTOCOLS, Transport, transport
from reconcile.logs import get_logger

log = get_logger(__name__)

FETCH_TIMEOUT_S = 120.0
LOCAL_TIMEOUT_S = 60.0

# A lock file older than this is a leftover of a git we killed (a timeout kills with
# SIGKILL, which leaves `index.lock` behind); without removing it every later cycle fails.
STALE_LOCK_S = 600.0

_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")

# Set for every git we run. GIT_CONFIG_GLOBAL/NOSYSTEM drop the user's and the system's
# config; LC_ALL=C keeps git's messages in the English the error classifier reads.
_ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_SYSTEM": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_NO_REPLACE_OBJECTS": "1",
    # Transports that only move data; `ext::` and other helpers that run commands are out.
    "GIT_ALLOW_PROTOCOL": ALLOWED_PROTOCOLS,
    "LC_ALL": "C",
}

# Inherited GIT_* variables we let through: https credentials and CAs, and tracing. Every
# other one is unset, since variables such as GIT_DIR, GIT_INDEX_FILE (both set inside a
# git hook), GIT_CONFIG_PARAMETERS or GIT_SSL_NO_VERIFY would redirect or weaken git, and
# GIT_SSH, GIT_SSH_COMMAND or GIT_PROXY_COMMAND would replace the pinned ssh below.
_KEEP_ENV = frozenset(
    {
        "GIT_ASKPASS",
        "GIT_SSL_CAINFO",
        "GIT_SSL_CAPATH",
        "GIT_HTTP_USER_AGENT",
        "GIT_CURL_VERBOSE",
    }
)

# `-c` options for every git we run: config the repository might otherwise take from
# elsewhere, pinned. hooksPath=/dev/null means no hook runs, ours or anyone's.
_CONFIG = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "protocol.ext.allow=never",
    "submodule.recurse=false",
    "gc.autoDetach=false",
    "maintenance.autoDetach=false",
    "advice.detachedHead=false",
    "init.defaultBranch=main",
)

# ssh for a repository without a pin: it can reach no host (no key is known).
_NO_SSH = (
    "ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
    "-o", "UserKnownHostsFile=/dev/null", "-o", "GlobalKnownHostsFile=/dev/null",
)  # fmt: skip
KEY_ALIAS = "reconcile-gitops-repo"  # the name a `host_key` pin is filed under


@dataclass(frozen=True)
class SshPin:
    """How git's ssh reaches an ssh repository: the server's pinned key (`host_key`, a
    `type base64` line, or a `known_hosts` file), the deploy key, the connect timeout."""

    host_key: str | None = None
    known_hosts: Path | None = None
    identity: Path | None = None
    connect_timeout_s: float = 10.0


def ssh_argv(pin: SshPin, known_hosts: Path) -> list[str]:
    """The ssh git runs for a pinned repository; `known_hosts` is the file holding only the
    pinned key (`pin.known_hosts` itself, or the file `sync` writes for `pin.host_key`)."""
    argv = [
        "ssh", "-F", "/dev/null",
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "UpdateHostKeys=no",
        "-o", f"ConnectTimeout={max(1, round(pin.connect_timeout_s))}",
    ]  # fmt: skip
    if pin.host_key is not None:
        argv += ["-o", f"HostKeyAlias={KEY_ALIAS}"]
    if pin.identity is not None:
        argv += ["-o", "IdentitiesOnly=yes", "-i", str(pin.identity)]
    return argv


def ssh_command(argv: list[str] | tuple[str, ...]) -> str:
    """A value for core.sshCommand: git runs it through the shell, so each piece is quoted."""
    return " ".join(shlex.quote(a) for a in argv)


def is_ssh(repo: str) -> bool:
    return transport(repo) is Transport.SSH


class GitError(ReconcileError):
    """A git step failed; `retryable` when the cause is likely transient (the network)."""

    def __init__(self, message: str, *, hint: str | None = None, retryable: bool = False) -> None:
        super().__init__(message, hint=hint)
        self.retryable = retryable


@dataclass(frozen=True)
class Fetched:
    """The head of the followed branch after a fetch.

    `repo` is as given but with any password (or http user part) shown as ***, so it can go
    into reports; `author` is `Name <email>`; `date` the author date in strict ISO 8601.
    """

    repo: str
    branch: str
    sha: str
    subject: str
    author: str
    date: str


class SignatureStatus(StrEnum):
    GOOD = "good"
    BAD = "bad"
    UNSIGNED = "unsigned"
    UNKNOWN_KEY = "unknown-key"


@dataclass(frozen=True)
class Signature:
    """A commit's signature as git judged it.

    `signer` is the allowed-signers principal (ssh) or the user id (gpg), empty unless the
    key is trusted; `key` the key's fingerprint or id; `detail` the verifier's own words.
    `code` is git's `%G?` letter, kept for messages and for cases the status folds together
    (an expired or revoked key is `bad`, a key git cannot check is `unknown-key`).
    """

    status: SignatureStatus
    signer: str
    key: str
    code: str
    detail: str

    @property
    def good(self) -> bool:
        return self.status is SignatureStatus.GOOD

    def summary(self) -> str:
        if self.status is SignatureStatus.GOOD:
            return f"good signature by {self.signer} ({self.key})"
        if self.status is SignatureStatus.UNKNOWN_KEY:
            return f"signed by a key that is not allowed ({self.key or 'unknown key'})"
        if self.status is SignatureStatus.UNSIGNED:
            return "not signed"
        return f"bad signature (git says {self.code!r}: {self.detail or 'no detail'})"


def tree_path(workdir: Path) -> Path:
    """Where `checkout` puts the files."""
    return workdir.absolute() / "tree"


def sync(
    repo: str,
    branch: str,
    workdir: Path,
    *,
    ssh: SshPin | None = None,
    timeout: float = FETCH_TIMEOUT_S,
) -> Fetched:
    """Fetch `branch` of `repo` into the copy in `workdir` (made on first use).

    Only that branch, no tags, forced: a force push is fetched like any other update, and
    judging it is `is_ancestor`'s job. The checked-out tree does not move. An ssh `repo`
    needs `ssh`, its pin.
    """
    _check_repo(repo)
    _check_branch(branch)
    if is_ssh(repo) and (ssh is None or (ssh.host_key is None) == (ssh.known_hosts is None)):
        raise ReconcileError(
            f"the ssh repository {_redact(repo)} has no pinned host key",
            hint='set gitops.host_key = "ssh-ed25519 AAAA..." (from `ssh-keyscan HOST`) or '
            "gitops.known_hosts in the controller's manifest",
        )
    gitdir = _gitdir(workdir)
    gitdir.mkdir(parents=True, exist_ok=True)
    # Idempotent: completes a copy a killed run left half made. --template= copies no
    # sample hooks or other files from a template directory.
    _ok(_git(workdir, "init", "--quiet", "--bare", "--template=", str(gitdir)), "git init")
    _clear_stale_locks(gitdir)
    # Set every time, so a manifest that changes `gitops.repo` is followed.
    _ok(
        _git(workdir, "config", "--end-of-options", "remote.origin.url", repo),
        "git config remote.origin.url",
    )
    ref = _tracking_ref(branch)
    config: tuple[str, ...] = ()
    if ssh is not None and is_ssh(repo):
        known_hosts = ssh.known_hosts
        if known_hosts is None:
            known_hosts = workdir.absolute() / "ssh_known_hosts"
            files.write_atomic(known_hosts, f"{KEY_ALIAS} {ssh.host_key}\n")
        elif not known_hosts.is_file():
            raise ReconcileError(
                f"gitops.known_hosts not found: {known_hosts}",
                hint="a known_hosts file holding the git server's key (`ssh-keyscan HOST`)",
            )
        config = (f"core.sshCommand={ssh_command(ssh_argv(ssh, known_hosts.absolute()))}",)
    done = _git(
        workdir,
        "fetch",
        "--quiet",
        "--no-tags",
        "--no-recurse-submodules",
        "--no-write-fetch-head",
        "--end-of-options",
        "origin",
        f"+refs/heads/{branch}:{ref}",
        config=config,
        timeout=timeout,
        what=f"fetching {branch!r} from {_redact(repo)}",
    )
    if done.returncode != 0:
        raise _fetch_error(repo, branch, done.stderr)
    shown = _ok(
        _git(
            workdir,
            "log",
            "-1",
            "--no-show-signature",
            "--format=%H%x00%s%x00%an <%ae>%x00%aI",
            ref,
            "--",
        ),
        "git log",
    )
    fields = shown.stdout.rstrip("\n").split("\0")
    if len(fields) != 4 or not _SHA.fullmatch(fields[0]):
        raise GitError(f"unexpected output from git log: {shown.stdout[:200]!r}", hint=_LOCAL_HINT)
    sha, subject, author, date = fields
    log.info("git fetched", repo=_redact(repo), branch=branch, sha=sha)
    return Fetched(_redact(repo), branch, sha, subject, author, date)


def checkout(workdir: Path, sha: str) -> Path:
    """Make the tree hold exactly `sha`'s files (detached, local changes and untracked
    files gone) and return its path.
    """
    _require_commit(workdir, sha)
    _clear_stale_locks(_gitdir(workdir))
    tree = tree_path(workdir)
    tree.mkdir(parents=True, exist_ok=True)
    _ok(
        _git(
            workdir,
            "checkout",
            "--quiet",
            "--force",
            "--detach",
            sha,  # a checked full commit id (git 2.39's checkout refuses --end-of-options)
            "--",
            tree=True,
        ),
        f"git checkout {sha}",
    )
    # -ff: also nested repositories; -x: also files the commit's .gitignore names.
    _ok(_git(workdir, "clean", "-ffdxq", tree=True), "git clean")
    return tree


def is_ancestor(workdir: Path, old_sha: str, new_sha: str) -> bool:
    """Whether `new_sha` descends from (or is) `old_sha`: False after a force push.

    `new_sha` must be fetched. `old_sha` may be gone: a copy made after a force push never
    saw it, and then it cannot be in the new history (fetches are complete, not shallow),
    so the answer is False. If it is still in the object store, merge-base answers.
    """
    _require_commit(workdir, new_sha)
    _check_sha(old_sha)
    if not _has_commit(workdir, old_sha):
        return False
    done = _git(workdir, "merge-base", "--is-ancestor", old_sha, new_sha)
    if done.returncode in (0, 1):
        return done.returncode == 0
    raise GitError(f"git merge-base failed: {_words(done.stderr)}", hint=_LOCAL_HINT)


def verify_signed(workdir: Path, sha: str, allowed_signers: Path | None) -> Signature:
    """Judge `sha`'s signature; SSH signatures against the `allowed_signers` file.

    Without a file, SSH signatures come out `unknown-key` (git is pointed at an empty
    list: left unset, git 2.39 reports an SSH-signed commit as unsigned). GPG signatures
    are checked against the keyring of the user running this.
    """
    _require_commit(workdir, sha)
    if allowed_signers is not None and not allowed_signers.is_file():
        raise ReconcileError(
            f"allowed signers file not found: {allowed_signers}",
            hint='one line per key: `PRINCIPAL namespaces="git" ssh-ed25519 AAAA...`',
        )
    signers = str(allowed_signers.absolute()) if allowed_signers else os.devnull
    # Not %GT: git 2.39 aborts on it (BUG: invalid trust level) for an SSH signature
    # when allowedSignersFile is unset.
    done = _ok(
        _git(
            workdir,
            "log",
            "-1",
            "--no-show-signature",
            "--format=%G?%x00%GK%x00%GS%x00%GG",
            sha,
            "--",
            config=(f"gpg.ssh.allowedSignersFile={signers}",),
        ),
        "git log (signature)",
    )
    fields = done.stdout.split("\0", 3)
    if len(fields) != 4 or len(fields[0]) != 1:
        raise GitError(f"unexpected output from git log: {done.stdout[:200]!r}")
    code, key, signer, detail = fields
    # Git prints a verifier it could not run (no ssh-keygen, no gpg) only to stderr.
    detail = " ".join(detail.split()) or _words(done.stderr)
    status = _STATUS.get(code, SignatureStatus.BAD)
    return Signature(
        status=status,
        signer=signer if status is SignatureStatus.GOOD else "",
        key=key,
        code=code,
        detail=detail,
    )


# %G?: G good; U good but the key is not trusted (an SSH key not in allowed signers);
# E cannot be checked (key missing); N none; B bad; X/Y expired signature/key; R revoked.
_STATUS = {
    "G": SignatureStatus.GOOD,
    "U": SignatureStatus.UNKNOWN_KEY,
    "E": SignatureStatus.UNKNOWN_KEY,
    "N": SignatureStatus.UNSIGNED,
    "B": SignatureStatus.BAD,
    "X": SignatureStatus.BAD,
    "Y": SignatureStatus.BAD,
    "R": SignatureStatus.BAD,
}

_LOCAL_HINT = (
    "the local git copy may be damaged; removing its directory makes the next cycle fetch it afresh"
)


def _gitdir(workdir: Path) -> Path:
    return workdir.absolute() / "git"


def _tracking_ref(branch: str) -> str:
    return f"refs/remotes/origin/{branch}"


def _git(
    workdir: Path,
    *args: str,
    tree: bool = False,
    config: tuple[str, ...] = (),
    timeout: float = LOCAL_TIMEOUT_S,
    what: str = "",
) -> Completed:
    """Run git on the copy in `workdir`; a timeout or unreadable output is a GitError."""
    location = [f"--git-dir={_gitdir(workdir)}"]
    if tree:
        location.append(f"--work-tree={tree_path(workdir)}")
    # The pinned ssh comes after the default that reaches no host: the last -c wins.
    pinned = [*_CONFIG, f"core.sshCommand={ssh_command(_NO_SSH)}", *config]
    argv = [
        *_unset_inherited(),
        "git",
        *location,
        *(item for pair in pinned for item in ("-c", pair)),
        *args,
    ]
    subcommand = args[0]
    try:
        return run(argv, env=_ENV, timeout=timeout, check=False)
    except CommandError as exc:  # check=False: only a timeout gets here
        raise GitError(
            f"git {subcommand} timed out after {timeout:g}s" + (f" {what}" if what else ""),
            hint="check the network and the repository's host; the next cycle tries again",
            retryable=True,
        ) from exc
    except UnicodeDecodeError as exc:
        raise GitError(
            f"git {subcommand} printed text that is not UTF-8",
            hint="a commit's subject or author is not UTF-8; amend it in the repository",
        ) from exc


def _unset_inherited() -> list[str]:
    """`env -u NAME ...` for inherited GIT_* variables (process.run can only add)."""
    names = sorted(
        name
        for name in os.environ
        if name.startswith("GIT_")
        and name not in _KEEP_ENV
        and name not in _ENV
        and not name.startswith("GIT_TRACE")
    )
    return ["env", *(item for name in names for item in ("-u", name))] if names else []


def _ok(done: Completed, what: str) -> Completed:
    if done.returncode != 0:
        raise GitError(f"{what} failed: {_words(done.stderr or done.stdout)}", hint=_LOCAL_HINT)
    return done


def _words(text: str, lines: int = 4) -> str:
    """Git's message on one line: its fatal/error lines, else its last lines."""
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    marked = [
        line for line in kept if line.lower().startswith(("fatal:", "error:", "remote:", "git:"))
    ]
    return "; ".join((marked or kept)[-lines:]) or "(no message)"


def _fetch_error(repo: str, branch: str, stderr: str) -> GitError:
    words = _redact(_words(stderr), repo)
    where = _redact(repo)
    text = stderr.lower()
    if "couldn't find remote ref" in text:
        return GitError(
            f"branch {branch!r} not found in {where}: {words}",
            hint="push the branch, or set `gitops.branch` to one that exists"
            f" (`git ls-remote --heads {where}` lists them)",
        )
    if _any(text, _MISSING_REPO):
        return GitError(
            f"no git repository at {where}: {words}",
            hint="check `gitops.repo` in the manifest, and that the repository exists",
        )
    if "host key verification failed" in text:
        return GitError(
            f"the ssh host key of {where} is not the pinned one: {words}",
            hint="if the server's key changed on purpose, pin the new one in gitops.host_key "
            "(or gitops.known_hosts) of the controller's manifest; otherwise do not trust it",
        )
    if _any(text, _AUTH):
        return GitError(
            f"access to {where} denied: {words}",
            hint="give this host read access: an SSH key ssh finds on its own (git config,"
            " so any credential helper, is not read here), or a GIT_ASKPASS program",
        )
    if _any(text, _URL):
        return GitError(
            f"cannot use {where} as a git URL: {words}",
            hint="check `gitops.repo`: a path, or an ssh://, https:// or user@host:path URL",
        )
    if _any(text, _NETWORK):
        return GitError(
            f"cannot reach {where}: {words}",
            hint="check the network and the repository's host; the next cycle tries again",
            retryable=True,
        )
    return GitError(
        f"fetching {branch!r} from {where} failed: {words}",
        hint="run the same `git fetch` by hand to see more; set GIT_TRACE=1 for detail",
    )


_MISSING_REPO = (
    "does not appear to be a git repository",
    "repository not found",
    "not a git repository",
    "could not be found",
    "invalid gitfile format",
    "' not found",  # fatal: repository 'https://host/x.git/' not found (HTTP 404)
)
_AUTH = (
    "permission denied",
    "authentication failed",
    "could not read username",
    "could not read password",
    "terminal prompts disabled",
    "host key verification failed",
    "access denied",
    "returned error: 401",
    "returned error: 403",
)
_URL = ("is not a git command", "unable to find remote helper", "unsupported protocol")
_NETWORK = (
    "could not resolve",
    "unable to access",
    "couldn't connect",
    "connection refused",
    "connection timed out",
    "timed out",
    "network is unreachable",
    "no route to host",
    "connection reset",
    "could not read from remote repository",
    "early eof",
)


def _any(text: str, needles: tuple[str, ...]) -> bool:
    return any(needle in text for needle in needles)


def _check_repo(repo: str) -> None:
    if (
        not repo
        or repo.startswith("-")
        or any(c.isspace() or c == "\0" for c in repo)
        or transport(repo) is None
    ):
        raise ReconcileError(
            f"not a usable git repository URL: {_redact(repo)!r}",
            hint="`gitops.repo` is a path, or a file://, https://, http://, git:// or ssh:// "
            "URL, or user@host:path, without spaces, not starting with '-' (remote helpers "
            "such as ext:: run commands and are refused)",
        )


def _check_branch(branch: str) -> None:
    # Git itself refuses to create a branch named with a leading '-'.
    valid = (
        "\0" not in branch
        and not branch.startswith("-")
        and (
            run(
                ["git", "check-ref-format", f"refs/heads/{branch}"],
                timeout=LOCAL_TIMEOUT_S,
                check=False,
            ).returncode
            == 0
        )
    )
    if not valid:
        raise ReconcileError(
            f"not a valid branch name: {branch!r}",
            hint="`gitops.branch` names a branch, such as main (see git check-ref-format)",
        )


def _check_sha(sha: str) -> None:
    if not _SHA.fullmatch(sha):
        raise ReconcileError(
            f"not a full commit id: {sha!r}",
            hint="pass the 40 (or 64) hex digit id that sync returned",
        )


def _has_commit(workdir: Path, sha: str) -> bool:
    return _git(workdir, "cat-file", "-e", f"{sha}^{{commit}}").returncode == 0


def _require_commit(workdir: Path, sha: str) -> None:
    _check_sha(sha)
    if not (_gitdir(workdir) / "HEAD").is_file():
        raise ReconcileError(
            f"no git copy in {workdir}",
            hint="sync the repository first (the gitops cycle does)",
        )
    if not _has_commit(workdir, sha):
        raise ReconcileError(
            f"commit {sha} is not in the git copy in {workdir}",
            hint="sync first; a commit that a force push removed is fetched no more",
        )


def _clear_stale_locks(gitdir: Path) -> None:
    """Remove lock files a killed git left (see STALE_LOCK_S); fresh ones are left alone."""
    now = time.time()
    candidates = [*gitdir.glob("*.lock"), *(gitdir / "refs").rglob("*.lock")]
    for lock in candidates:
        try:
            if now - lock.stat().st_mtime > STALE_LOCK_S:
                lock.unlink()
                log.warning("removed a stale git lock", path=str(lock))
        except FileNotFoundError:
            continue


def _secret(url: str) -> tuple[str, str] | None:
    """What in `url` not to show and what to show instead: a password, or for http(s) the
    whole user part (often a token). Matched with its `@` so that nothing else is hit.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if "@" not in parts.netloc:
        return None
    userinfo = parts.netloc.rsplit("@", 1)[0]
    if parts.scheme in ("http", "https") and userinfo:
        return f"{userinfo}@", "***@"
    if parts.password:
        return f":{parts.password}@", ":***@"
    return None


def redact(url: str) -> str:
    """`url` without its password (or http user part), fit for logs and reports."""
    return _redact(url)


def _redact(text: str, url: str | None = None) -> str:
    """`text` (by default the URL itself) without the URL's secret part."""
    secret = _secret(url if url is not None else text)
    return text.replace(*secret) if secret else text
