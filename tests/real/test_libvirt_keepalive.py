"""A libvirtd that stops answering ends the connection: calls fail, they never hang."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest

from reconcile.adapters.libvirt import LibvirtHypervisor
from tests.support.stack import SYSTEM_URI, ensure_libvirtd

pytestmark = pytest.mark.real


def _libvirtd_pid() -> int:
    out = subprocess.run(["pgrep", "-x", "libvirtd"], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def test_a_hung_daemon_makes_the_hypervisor_unknown_not_a_hang() -> None:
    ensure_libvirtd()
    with LibvirtHypervisor(SYSTEM_URI, keepalive=(1, 2)) as hv:
        assert hv.observe().error is None  # connected, keepalive running
        pid = _libvirtd_pid()
        # Without keepalive the call waits as long as the daemon is stopped: a watchdog
        # resumes it, so a regression fails the assertion below instead of hanging.
        watchdog = threading.Timer(20, os.kill, (pid, signal.SIGCONT))
        os.kill(pid, signal.SIGSTOP)
        watchdog.start()
        try:
            started = time.monotonic()
            seen = hv.observe()
            waited = time.monotonic() - started
        finally:
            watchdog.cancel()
            os.kill(pid, signal.SIGCONT)
    assert seen.domains is None and seen.error is not None
    assert waited < 15, f"observe waited {waited:.1f}s on a stopped daemon"
    ensure_libvirtd()
    with LibvirtHypervisor(SYSTEM_URI) as hv:  # the daemon itself is fine again
        assert hv.observe().error is None
