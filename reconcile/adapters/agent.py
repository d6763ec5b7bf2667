"""A private ssh-agent for one run, for identities protected by a passphrase.

`nix copy` runs OpenSSH, which cannot be handed a passphrase. The run starts its own agent
(socket in the lab's state directory), adds the key with `ssh-add`, which reads the
passphrase through an askpass program from its own environment only, and gives `nix copy`
the agent's socket. The passphrase is never on a command line, in a file or in a log.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from reconcile.adapters import process
from reconcile.core.desired import Ssh
from reconcile.core.errors import ReconcileError
from reconcile.logs import get_logger

log = get_logger(__name__)

ASKPASS = '#!/bin/sh\nprintf "%s\\n" "$RECONCILE_ASKPASS_SECRET"\n'
SECRET_VAR = "RECONCILE_ASKPASS_SECRET"  # noqa: S105 (a variable name, not a secret)


def passphrase(ssh: Ssh) -> str | None:
    """The identity's passphrase from the variable the manifest names (None: no passphrase)."""
    if ssh.passphrase_env is None:
        return None
    value = os.environ.get(ssh.passphrase_env)
    if value is None:
        raise ReconcileError(
            f"ssh.passphrase_env names {ssh.passphrase_env}, which is not set",
            hint=f"export {ssh.passphrase_env} with the key's passphrase before running",
        )
    return value


class Agent:
    """An ssh-agent started on first use and killed by `close()`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._socket: Path | None = None
        self._pid = ""
        self._added: set[Path] = set()

    def _start(self) -> Path:
        if self._socket is not None:
            return self._socket
        self.directory.mkdir(parents=True, exist_ok=True)
        run_dir = Path(tempfile.mkdtemp(prefix="agent.", dir=self.directory))
        socket = run_dir / "socket"
        done = process.run(["ssh-agent", "-s", "-a", str(socket)], timeout=10)
        for part in done.stdout.replace("\n", ";").split(";"):
            key, _, value = part.strip().partition("=")
            if key == "SSH_AGENT_PID":
                self._pid = value
        askpass = run_dir / "askpass"
        askpass.write_text(ASKPASS)
        askpass.chmod(0o700)
        self._socket = socket
        return socket

    def env(self, ssh: Ssh) -> dict[str, str]:
        """Environment for OpenSSH with the identity in the agent (added on first use)."""
        socket = self._start()
        assert ssh.identity is not None  # passphrase_env comes with an identity
        if ssh.identity not in self._added:
            secret = passphrase(ssh)
            process.run(
                ["ssh-add", "-q", "--", str(ssh.identity)],
                env={
                    "SSH_AUTH_SOCK": str(socket),
                    "SSH_ASKPASS": str(socket.parent / "askpass"),
                    "SSH_ASKPASS_REQUIRE": "force",
                    SECRET_VAR: secret or "",
                },
                timeout=10,
                hint="is the passphrase right? it is read from ssh.passphrase_env",
            )
            self._added.add(ssh.identity)
        return {"SSH_AUTH_SOCK": str(socket)}

    def close(self) -> None:
        if self._pid:
            process.run(["ssh-agent", "-k"], env={"SSH_AGENT_PID": self._pid}, check=False)
            deadline = time.monotonic() + 5
            while Path(f"/proc/{self._pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.02)  # gone before the run ends, not a moment after
            self._pid = ""
        if self._socket is not None:
            for name in ("askpass", "socket"):
                (self._socket.parent / name).unlink(missing_ok=True)
            self._socket.parent.rmdir()
            self._socket = None
