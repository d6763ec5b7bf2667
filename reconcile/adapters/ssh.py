"""SSH with pinned host keys, through fabric: the only module that imports fabric/paramiko.

Fabric (paramiko) accepts any host key unless told otherwise: every connection here loads
the pinned key (from the manifest or its known_hosts file) before connecting, and refuses
an unknown or different key with both fingerprints and how to pin the right one. Commands
are argv, joined with shlex.join: a value never becomes shell syntax.
"""

from __future__ import annotations

import base64
import hashlib
import shlex
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

import fabric
import paramiko
from invoke.exceptions import CommandTimedOut

from reconcile.adapters import process
from reconcile.adapters.agent import passphrase
from reconcile.core.desired import Ssh
from reconcile.core.errors import CommandError, ProbeError, ReconcileError
from reconcile.core.hosts.baremetal import PROBE, HostObservation, parse_probe
from reconcile.logs import get_logger

log = get_logger(__name__)


class HostKeyError(ReconcileError):
    """The host offered a key that is not the pinned one: nothing was run."""


class UnreachableError(ReconcileError):
    """The host could not be reached in time: unknown, never absent."""


def fingerprint(key: paramiko.PKey) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def pinned_keys(ssh: Ssh) -> paramiko.HostKeys:
    """The keys this host may present: the manifest's `host_key`, or its known_hosts file."""
    keys = paramiko.HostKeys()
    if ssh.host_key is not None:
        kind, data = ssh.host_key.split()[:2]
        try:
            key = paramiko.PKey.from_type_string(kind, base64.b64decode(data))
        except (paramiko.SSHException, ValueError) as exc:
            raise ReconcileError(
                f"{ssh.host}: the pinned host_key cannot be read as a {kind} key: {exc}",
                hint="copy the key again from `ssh-keyscan HOST`, whole",
            ) from None
        keys.add(ssh.target.known_hosts_name, kind, key)
    elif ssh.known_hosts is not None:
        try:
            keys.load(str(ssh.known_hosts))
        except OSError as exc:
            raise ReconcileError(
                f"cannot read known_hosts {ssh.known_hosts}: {exc.strerror}"
            ) from None
        except (paramiko.SSHException, ValueError) as exc:
            raise ReconcileError(
                f"cannot read known_hosts {ssh.known_hosts}: {exc}",
                hint="each line is `HOST TYPE BASE64`, as `ssh-keyscan HOST` prints",
            ) from None
    return keys


class _Refuse(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
    def __init__(self, ssh: Ssh) -> None:
        self.ssh = ssh

    def missing_host_key(self, client: Any, hostname: str, key: paramiko.PKey) -> None:
        line = f"{key.get_name()} {key.get_base64()}"
        raise HostKeyError(
            f"{self.ssh.host}: host key {key.get_name()} {fingerprint(key)} is not pinned; "
            "refusing to connect",
            hint=f'if that is the right key, pin it: host_key = "{line}"',
        )


class Session:
    """One connection to one host, opened on first use, reused for every command."""

    def __init__(self, ssh: Ssh) -> None:
        self.ssh = ssh
        self._conn: fabric.Connection | None = None
        self._lock = threading.Lock()

    def _connect(self) -> fabric.Connection:
        if self._conn is not None:
            return self._conn
        ssh = self.ssh
        target = ssh.target
        connect_kwargs: dict[str, Any] = {
            "banner_timeout": ssh.connect_timeout_s,
            "auth_timeout": ssh.connect_timeout_s,
        }
        if ssh.identity is not None:
            connect_kwargs["key_filename"] = str(ssh.identity)
            connect_kwargs["passphrase"] = passphrase(ssh)
            connect_kwargs["allow_agent"] = False
            connect_kwargs["look_for_keys"] = False
        conn = fabric.Connection(
            target.host,
            user=target.user,
            port=target.port,
            connect_timeout=ssh.connect_timeout_s,
            connect_kwargs=connect_kwargs,
            # No ssh_config and no fabric config files: a ProxyJump or ProxyCommand there
            # would add a hop whose key nobody pinned. The manifest says how to connect.
            config=fabric.Config(ssh_config=paramiko.SSHConfig(), lazy=True),
        )
        client = conn.client
        client._host_keys = pinned_keys(ssh)  # paramiko has no setter for them
        client.set_missing_host_key_policy(_Refuse(ssh))
        try:
            conn.open()
        except paramiko.BadHostKeyException as exc:
            raise HostKeyError(
                f"{ssh.host}: host key mismatch: it offered {exc.key.get_name()} "
                f"{fingerprint(exc.key)}, the pinned key is {fingerprint(exc.expected_key)}; "
                "refusing to connect",
                hint="if the host was reinstalled, pin its new key: "
                f'host_key = "{exc.key.get_name()} {exc.key.get_base64()}"',
            ) from None
        except HostKeyError:
            raise
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise UnreachableError(
                f"{target} unreachable: {exc}",
                hint="the host is unknown this run; nothing was changed on it",
            ) from None
        # Small request/response exchanges: Nagle plus delayed ACKs cost ~45 ms a command.
        transport = conn.client.get_transport()
        if transport is not None and isinstance(transport.sock, socket.socket):
            transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        log.debug("ssh connected", host=ssh.host, port=ssh.port)
        self._conn = conn
        return conn

    def run(
        self, argv: Sequence[str], *, check: bool = True, timeout_s: float | None = None
    ) -> process.Completed:
        args = tuple(str(a) for a in argv)
        command = shlex.join(args)
        timeout = timeout_s if timeout_s is not None else self.ssh.command_timeout_s
        started = time.monotonic()
        with self._lock:
            conn = self._connect()
            log.debug("ssh exec", host=self.ssh.host, argv=args)
            running = time.monotonic()
            try:
                done = conn.run(command, hide=True, warn=True, timeout=timeout, in_stream=False)
            except CommandTimedOut:
                raise CommandError(
                    ("ssh", self.ssh.host, *args),
                    -1,
                    f"timed out after {timeout:g}s",
                    retryable=True,
                ) from None
            except (OSError, paramiko.SSHException, EOFError) as exc:
                self.close()
                raise UnreachableError(
                    f"{self.ssh.host}: connection lost during {command}: {exc}"
                ) from None
        seconds = time.monotonic() - started
        if done.exited == -1:  # no exit status: the channel closed under the command
            self.close()
            if time.monotonic() - running >= timeout:
                # invoke's timeout closes the channel from a timer thread, and reports
                # CommandTimedOut only if that thread has finished: otherwise this.
                raise CommandError(
                    ("ssh", self.ssh.host, *args),
                    -1,
                    f"timed out after {timeout:g}s",
                    retryable=True,
                )
            raise UnreachableError(f"{self.ssh.host}: connection lost during {command}")
        result = process.Completed(args, done.exited, done.stdout, done.stderr, seconds)
        if check and result.returncode != 0:
            raise CommandError(
                ("ssh", self.ssh.target.destination, *args),
                result.returncode,
                (result.stderr or result.stdout).strip()[-2000:],
            )
        return result

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def observe_host(session: Session) -> HostObservation:
    """The host's active and booted systems and boot id, over the session's connection."""
    result = session.run(PROBE)
    try:
        return parse_probe(result.stdout)
    except ValueError as exc:
        raise ProbeError(f"{session.ssh.host}: {exc}") from None
