"""The OpenSSH command line of `reconcile ssh`: a login, or one command, pinned. Pure.

Trust comes only from the lab's pin: `StrictHostKeyChecking=yes` against a known_hosts
file that holds only the pinned key (never trust on first use, never a key added), and no
ssh_config (`-F /dev/null`): a ProxyCommand, ProxyJump or a shared ControlMaster
connection there could reach the host without checking its key against the pin.

A remote command is argv after `--`, passed to ssh as separate words; reconcile builds no
shell string. OpenSSH itself joins the words with spaces and the remote user's shell
parses the result, as with a plain `ssh HOST CMD...`: quote for that shell yourself.

OpenSSH expands `%` tokens and `${VAR}` in UserKnownHostsFile and IdentityFile, and splits
them on whitespace, so each path is spelled for it: `%` doubled, whitespace quoted; a path
holding a double quote, a backslash, `${` or a control character is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from reconcile.core.desired import Ssh
from reconcile.core.errors import ReconcileError


def config_path(path: Path) -> str:
    """`path` as a value of an OpenSSH path option (`-o UserKnownHostsFile=...`)."""
    text = str(path)
    if any(c in text for c in '"\\') or "${" in text or any(ord(c) < 32 for c in text):
        raise ReconcileError(
            f"OpenSSH cannot be given the path {text!r}",
            hint="it holds a quote, a backslash, `${` or a control character; "
            "move the file (or the lab's state_dir) to a plainer path",
        )
    text = text.replace("%", "%%")
    return f'"{text}"' if any(c.isspace() for c in text) else text


def login_argv(ssh: Ssh, known_hosts: Path, command: Sequence[str] = ()) -> list[str]:
    """`ssh` to the target, trusting only the keys in `known_hosts`; `command` is run there
    instead of a login shell when given."""
    target = ssh.target
    argv = [
        "ssh", "-F", "/dev/null",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={config_path(known_hosts)}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "UpdateHostKeys=no",
        "-o", "CheckHostIP=no",
        "-o", f"ConnectTimeout={max(1, int(ssh.connect_timeout_s))}",
        *target.port_args,
    ]  # fmt: skip
    if ssh.identity is not None:
        argv += ["-o", "IdentitiesOnly=yes", "-o", f"IdentityFile={config_path(ssh.identity)}"]
    argv.append(target.destination)  # never starts with `-` (SshTarget checks)
    if command:
        # ssh reads options again after the destination: `--` keeps CMD's words its own
        argv += ["--", *command]
    return argv
