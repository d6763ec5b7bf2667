"""The gitops git side against real git: a bare repository in tmp_path is the remote, a
second clone pushes to it, and the adapter fetches, checks out and judges what arrived.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconcile.adapters import git
from reconcile.adapters.git import GitError, SignatureStatus
from reconcile.core.errors import ReconcileError
from testbed.hosts import TestHost

DATE = "2024-01-02T03:04:05+00:00"

# The test's own git (pushing, committing) must not depend on who runs it either.
ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Alice Example",
    "GIT_AUTHOR_EMAIL": "alice@example.com",
    "GIT_AUTHOR_DATE": DATE,
    "GIT_COMMITTER_NAME": "Alice Example",
    "GIT_COMMITTER_EMAIL": "alice@example.com",
    "GIT_COMMITTER_DATE": DATE,
    "LC_ALL": "C",
}


def sh(*argv: str | Path, cwd: Path | None = None, stdin: str | None = None) -> str:
    proc = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=ENV,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, f"{argv}: {proc.stderr}"
    return proc.stdout.strip()


class Dev:
    """A clone that commits and pushes to the remote, as a person would."""

    def __init__(self, path: Path, remote: Path) -> None:
        self.path = path
        sh("git", "init", "--quiet", "--initial-branch=main", path)
        sh("git", "remote", "add", "origin", remote, cwd=path)

    def git(self, *args: str | Path) -> str:
        return sh("git", *args, cwd=self.path)

    def commit(
        self,
        message: str,
        files: dict[str, str | None],
        *,
        sign_with: Path | None = None,
    ) -> str:
        """Write (or with None delete) files, commit, and return the new sha."""
        for name, content in files.items():
            target = self.path / name
            if content is None:
                self.git("rm", "--quiet", name)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content)
                self.git("add", name)
        signing: list[str | Path] = []
        if sign_with is not None:
            signing = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={sign_with}"]
        self.git(*signing, "commit", "--quiet", *(["-S"] if sign_with else []), "-m", message)
        return self.git("rev-parse", "HEAD")

    def push(self, branch: str = "main", *, force: bool = False) -> None:
        self.git("push", "--quiet", *(["--force"] if force else []), "origin", f"HEAD:{branch}")


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    path = tmp_path / "remote.git"
    sh("git", "init", "--quiet", "--bare", "--initial-branch=main", path)
    return path


@pytest.fixture
def dev(tmp_path: Path, remote: Path) -> Dev:
    return Dev(tmp_path / "dev", remote)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path / "state" / "gitops"


def files_in(tree: Path) -> set[str]:
    return {str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file()}


def test_first_sync_fetches_the_head_and_leaves_the_tree_alone(
    dev: Dev, remote: Path, workdir: Path
) -> None:
    sha = dev.commit("Add the lab\n\nWith a body.", {"manifests/lab.toml": "x = 1\n"})
    dev.push()

    fetched = git.sync(str(remote), "main", workdir)

    assert fetched.sha == sha
    assert fetched.subject == "Add the lab"
    assert fetched.author == "Alice Example <alice@example.com>"
    assert fetched.date == DATE
    assert fetched.branch == "main"
    assert not git.tree_path(workdir).exists() or files_in(git.tree_path(workdir)) == set()
    assert git.sync(str(remote), "main", workdir).sha == sha  # again: nothing new, no error


def test_a_new_commit_arrives_and_descends_from_the_old(
    dev: Dev, remote: Path, workdir: Path
) -> None:
    old = dev.commit("one", {"a": "1"})
    dev.push()
    assert git.sync(str(remote), "main", workdir).sha == old
    new = dev.commit("two", {"a": "2"})
    dev.push()

    fetched = git.sync(str(remote), "main", workdir)

    assert fetched.sha == new
    assert fetched.subject == "two"
    assert git.is_ancestor(workdir, old, new)
    assert git.is_ancestor(workdir, new, new)
    assert not git.is_ancestor(workdir, new, old)


def test_a_force_push_is_fetched_and_is_not_a_descendant(
    dev: Dev, remote: Path, tmp_path: Path, workdir: Path
) -> None:
    base = dev.commit("base", {"a": "1"})
    old = dev.commit("to be rewritten", {"a": "2"})
    dev.push()
    git.sync(str(remote), "main", workdir)
    dev.git("reset", "--quiet", "--hard", base)
    new = dev.commit("rewritten", {"a": "3"})
    dev.push(force=True)

    assert git.sync(str(remote), "main", workdir).sha == new
    # The old commit is still in this copy's object store: merge-base answers.
    assert not git.is_ancestor(workdir, old, new)
    assert git.is_ancestor(workdir, base, new)
    # A copy made after the push never saw it: still False, not an error.
    fresh = tmp_path / "fresh"
    git.sync(str(remote), "main", fresh)
    assert not git.is_ancestor(fresh, old, new)
    assert not git.is_ancestor(fresh, "0" * 40, new)


def test_sync_does_not_move_the_checked_out_tree(dev: Dev, remote: Path, workdir: Path) -> None:
    first = dev.commit("one", {"a": "1"})
    dev.push()
    git.sync(str(remote), "main", workdir)
    tree = git.checkout(workdir, first)
    dev.commit("two", {"a": "2", "b": "new"})
    dev.push()

    git.sync(str(remote), "main", workdir)

    assert files_in(tree) == {"a"}
    assert (tree / "a").read_text() == "1"


def test_checkout_gives_exactly_the_commits_files(dev: Dev, remote: Path, workdir: Path) -> None:
    first = dev.commit("one", {"keep": "k", "gone": "g", "sub/dir/file": "f"})
    second = dev.commit("two", {"gone": None, "sub/dir/file": None, "added": "a"})
    dev.push()
    git.sync(str(remote), "main", workdir)

    tree = git.checkout(workdir, first)
    assert files_in(tree) == {"keep", "gone", "sub/dir/file"}

    (tree / "keep").write_text("edited by hand")
    (tree / "untracked").write_text("junk")
    (tree / "junkdir").mkdir()
    (tree / "junkdir" / "x").write_text("junk")
    assert git.checkout(workdir, second) == tree
    assert files_in(tree) == {"keep", "added"}
    assert (tree / "keep").read_text() == "k"
    assert not (tree / "sub").exists()
    assert not (tree / ".git").exists()

    git.checkout(workdir, first)
    assert files_in(tree) == {"keep", "gone", "sub/dir/file"}


def test_checkout_of_a_commit_not_fetched_is_an_error(
    dev: Dev, remote: Path, workdir: Path
) -> None:
    dev.commit("one", {"a": "1"})
    dev.push()
    git.sync(str(remote), "main", workdir)
    with pytest.raises(ReconcileError, match="not in the git copy") as err:
        git.checkout(workdir, "f" * 40)
    assert err.value.hint
    with pytest.raises(ReconcileError, match="not a full commit id"):
        git.checkout(workdir, "--orphan")


def test_a_stale_lock_from_a_killed_run_is_removed(dev: Dev, remote: Path, workdir: Path) -> None:
    sha = published(dev, remote, workdir, dev.commit("one", {"a": "1"}))
    lock = workdir / "git" / "index.lock"
    lock.write_text("")
    with pytest.raises(GitError, match=r"index\.lock"):  # a live run's lock is respected
        git.checkout(workdir, sha)
    old = time.time() - git.STALE_LOCK_S - 60
    os.utime(lock, (old, old))

    assert files_in(git.checkout(workdir, sha)) == {"a"}
    assert not lock.exists()


def test_unknown_branch(dev: Dev, remote: Path, workdir: Path) -> None:
    dev.commit("one", {"a": "1"})
    dev.push()
    with pytest.raises(GitError, match="couldn't find remote ref refs/heads/nope") as err:
        git.sync(str(remote), "nope", workdir)
    assert "branch 'nope' not found" in err.value.message
    assert err.value.hint and "gitops.branch" in err.value.hint
    assert not err.value.retryable


def test_missing_repository(tmp_path: Path, workdir: Path) -> None:
    missing = tmp_path / "no-such-repo"
    with pytest.raises(GitError, match="does not appear to be a git repository") as err:
        git.sync(str(missing), "main", workdir)
    assert err.value.message.startswith("no git repository at")
    assert err.value.hint and "gitops.repo" in err.value.hint


def test_an_unreachable_url_is_a_retryable_network_error(workdir: Path) -> None:
    with pytest.raises(GitError, match="Couldn't connect to server") as err:
        git.sync("http://127.0.0.1:1/lab.git", "main", workdir, timeout=30)
    assert err.value.message.startswith("cannot reach")
    assert err.value.retryable
    assert err.value.hint


@pytest.mark.parametrize(
    "repo", ["nosuch://host/lab.git", "ext::sh -c touch% /tmp/pwned", "fd::3", "ext::sh"]
)
def test_transports_that_run_commands_or_are_unknown_are_refused(workdir: Path, repo: str) -> None:
    with pytest.raises(ReconcileError, match="not a usable git repository URL") as err:
        git.sync(repo, "main", workdir)
    assert err.value.hint and "ext::" in err.value.hint
    assert not workdir.exists()


def test_git_itself_refuses_the_ext_transport(tmp_path: Path, workdir: Path) -> None:
    """Behind the URL check, git's own protocol filter (GIT_ALLOW_PROTOCOL) holds."""
    marker = tmp_path / "ran"
    workdir.mkdir(parents=True)
    done = git._git(workdir, "ls-remote", f"ext::sh -c touch% {marker}")
    assert done.returncode != 0 and "transport 'ext' not allowed" in done.stderr
    assert not marker.exists()


def test_an_ssh_repository_without_a_pinned_key_is_refused(workdir: Path) -> None:
    for repo in ("ssh://git@example.invalid/lab.git", "git@example.invalid:lab.git"):
        with pytest.raises(ReconcileError, match="has no pinned host key") as err:
            git.sync(repo, "main", workdir, ssh=git.SshPin())
        assert err.value.hint and "gitops.host_key" in err.value.hint


def test_the_ssh_command_pins_the_key_and_reads_no_config(tmp_path: Path) -> None:
    pin = git.SshPin(
        host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ", identity=tmp_path / "my key"
    )
    argv = git.ssh_argv(pin, tmp_path / "known hosts")
    text = " ".join(argv)
    for option in (
        "-F /dev/null",
        "-o BatchMode=yes",
        "-o StrictHostKeyChecking=yes",
        f"-o UserKnownHostsFile={tmp_path / 'known hosts'}",
        "-o GlobalKnownHostsFile=/dev/null",
        "-o ConnectTimeout=10",
        f"-o HostKeyAlias={git.KEY_ALIAS}",
        "-o IdentitiesOnly=yes",
    ):
        assert option in text
    # git runs core.sshCommand through the shell: every piece comes back whole
    assert shlex.split(git.ssh_command(argv)) == argv


def test_inherited_ssh_commands_are_dropped(
    dev: Dev, remote: Path, tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "ssh-ran"
    fake = tmp_path / "fake-ssh"
    fake.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("GIT_SSH_COMMAND", str(fake))
    monkeypatch.setenv("GIT_SSH", str(fake))
    with pytest.raises(GitError):
        git.sync("ssh://git@127.0.0.1:1/lab.git", "main", workdir, ssh=git.SshPin(host_key=KEY))
    assert not marker.exists()


KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOkHTbDKBYZ6bqhhQRcSpFB0o2T4WaX3vTSRjC1z0+4T"


@pytest.fixture(scope="module")
def ssh_server() -> Iterator[TestHost]:
    """A real sshd in a network namespace of its own (testbed/hosts.py)."""
    with TestHost() as host:
        yield host


@pytest.mark.real
def test_git_over_ssh_fetches_with_the_pinned_key_and_refuses_another(
    dev: Dev, remote: Path, tmp_path: Path, workdir: Path, ssh_server: TestHost
) -> None:
    sha = dev.commit("one", {"a": "1"})
    dev.push()
    url = f"ssh://root@{ssh_server.address}{remote}"
    scp_like = f"root@{ssh_server.address}:{remote}"
    pinned = git.SshPin(host_key=ssh_server.host_key_line, identity=ssh_server.identity)
    assert git.sync(url, "main", workdir, ssh=pinned).sha == sha
    by_file = git.SshPin(known_hosts=ssh_server.known_hosts, identity=ssh_server.identity)
    assert git.sync(scp_like, "main", workdir, ssh=by_file).sha == sha

    wrong = git.SshPin(host_key=KEY, identity=ssh_server.identity)
    with pytest.raises(GitError, match="is not the pinned one") as err:
        git.sync(url, "main", tmp_path / "other", ssh=wrong)
    assert err.value.hint and "gitops.host_key" in err.value.hint


def test_credentials_in_the_url_are_not_shown(workdir: Path) -> None:
    with pytest.raises(GitError) as err:
        git.sync("http://bob:s3cret@127.0.0.1:1/lab.git", "main", workdir, timeout=30)
    assert "s3cret" not in err.value.message
    assert "***@127.0.0.1" in err.value.message


@pytest.mark.parametrize("branch", ["", "a..b", "x:y", "a b", "-", "ends.lock", "a\0b"])
def test_invalid_branch_names_are_refused_before_git_runs(
    remote: Path, workdir: Path, branch: str
) -> None:
    with pytest.raises(ReconcileError, match="not a valid branch name"):
        git.sync(str(remote), branch, workdir)
    assert not workdir.exists()


@pytest.mark.parametrize("repo", ["", "--upload-pack=touch /tmp/pwned", "a b"])
def test_unusable_repository_urls_are_refused(workdir: Path, repo: str) -> None:
    with pytest.raises(ReconcileError, match="not a usable git repository URL"):
        git.sync(repo, "main", workdir)


def test_inherited_git_environment_and_config_are_ignored(
    dev: Dev, remote: Path, tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = dev.commit("one", {"a": "1"})
    dev.push()
    marker = tmp_path / "hook-ran"
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    for name in ("post-checkout", "reference-transaction"):
        hook = hooks / name
        hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
        hook.chmod(0o755)
    user_config = tmp_path / "user.gitconfig"
    user_config.write_text(f"[core]\n\thooksPath = {hooks}\n")
    outer_index = tmp_path / "outer-index"
    # As inside a git hook running the tests, plus a user config and -c with hooks.
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "outer.git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(tmp_path))
    monkeypatch.setenv("GIT_INDEX_FILE", str(outer_index))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(user_config))
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", f"'core.hookspath'='{hooks}'")
    monkeypatch.setenv("GIT_TERMINAL_PROMPT", "1")

    assert git.sync(str(remote), "main", workdir).sha == sha
    assert files_in(git.checkout(workdir, sha)) == {"a"}

    assert not marker.exists()
    assert not outer_index.exists()
    assert not (tmp_path / "outer.git").exists()


# Signatures ---------------------------------------------------------------------------


def published(dev: Dev, remote: Path, workdir: Path, sha: str) -> str:
    """Push the dev clone and fetch into the controller's copy; returns `sha`."""
    dev.push()
    git.sync(str(remote), "main", workdir)
    return sha


def keypair(directory: Path, name: str) -> Path:
    """A fresh ed25519 key without a passphrase; returns the public key's path."""
    key = directory / name
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", key)
    return key.with_suffix(".pub")


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(an allowed key, a key not allowed, the allowed_signers file naming the first)."""
    directory = tmp_path / "keys"
    directory.mkdir()
    allowed, stranger = keypair(directory, "alice"), keypair(directory, "mallory")
    signers = directory / "allowed_signers"
    signers.write_text(f'alice@example.com namespaces="git" {allowed.read_text()}')
    return allowed, stranger, signers


def test_an_ssh_signed_commit_by_an_allowed_key_is_good(
    dev: Dev, remote: Path, workdir: Path, keys: tuple[Path, Path, Path]
) -> None:
    allowed, _stranger, signers = keys
    sha = published(dev, remote, workdir, dev.commit("signed", {"a": "1"}, sign_with=allowed))

    signature = git.verify_signed(workdir, sha, signers)

    assert signature.status is SignatureStatus.GOOD
    assert signature.good
    assert signature.signer == "alice@example.com"
    assert signature.key.startswith("SHA256:")
    assert "alice@example.com" in signature.summary()


def test_a_commit_signed_by_a_key_not_allowed_is_not_good(
    dev: Dev, remote: Path, workdir: Path, keys: tuple[Path, Path, Path]
) -> None:
    _allowed, stranger, signers = keys
    sha = published(
        dev, remote, workdir, dev.commit("signed by someone else", {"a": "1"}, sign_with=stranger)
    )

    signature = git.verify_signed(workdir, sha, signers)

    assert not signature.good
    assert signature.status is SignatureStatus.UNKNOWN_KEY
    assert signature.signer == ""
    assert signature.key.startswith("SHA256:")
    assert "No principal matched" in signature.detail


def test_without_an_allowed_signers_file_no_ssh_signature_is_good(
    dev: Dev, remote: Path, workdir: Path, keys: tuple[Path, Path, Path]
) -> None:
    allowed, _stranger, _signers = keys
    sha = published(dev, remote, workdir, dev.commit("signed", {"a": "1"}, sign_with=allowed))

    signature = git.verify_signed(workdir, sha, None)

    assert signature.status is SignatureStatus.UNKNOWN_KEY  # not "unsigned": it is signed


def test_an_unsigned_commit_is_unsigned(
    dev: Dev, remote: Path, workdir: Path, tmp_path: Path
) -> None:
    sha = published(dev, remote, workdir, dev.commit("plain", {"a": "1"}))
    signers = tmp_path / "allowed_signers"
    signers.write_text("")

    signature = git.verify_signed(workdir, sha, signers)

    assert signature.status is SignatureStatus.UNSIGNED
    assert not signature.good
    assert git.verify_signed(workdir, sha, None).status is SignatureStatus.UNSIGNED


def test_a_tampered_signed_commit_is_bad(
    dev: Dev, remote: Path, workdir: Path, keys: tuple[Path, Path, Path]
) -> None:
    allowed, _stranger, signers = keys
    signed = dev.commit("the real message", {"a": "1"}, sign_with=allowed)
    body = dev.git("cat-file", "commit", signed).replace("the real message", "a forged one")
    forged = sh("git", "hash-object", "-t", "commit", "-w", "--stdin", cwd=dev.path, stdin=body)
    dev.git("update-ref", "refs/heads/main", forged)
    dev.push()
    assert git.sync(str(remote), "main", workdir).sha == forged

    signature = git.verify_signed(workdir, forged, signers)

    assert signature.status is SignatureStatus.BAD
    assert not signature.good
    with pytest.raises(ReconcileError, match="not in the git copy"):  # never pushed
        git.verify_signed(workdir, signed, signers)


def test_a_missing_allowed_signers_file_is_an_error(
    dev: Dev, remote: Path, workdir: Path, tmp_path: Path
) -> None:
    sha = published(dev, remote, workdir, dev.commit("plain", {"a": "1"}))
    with pytest.raises(ReconcileError, match="allowed signers file not found") as err:
        git.verify_signed(workdir, sha, tmp_path / "nope")
    assert err.value.hint


def test_operations_before_any_sync_are_errors(workdir: Path) -> None:
    with pytest.raises(ReconcileError, match="no git copy") as err:
        git.checkout(workdir, "a" * 40)
    assert err.value.hint
    with pytest.raises(ReconcileError, match="no git copy"):
        git.is_ancestor(workdir, "a" * 40, "b" * 40)
