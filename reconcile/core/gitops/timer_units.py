"""The controller's systemd service and timer for `reconcile gitops`, as text. Pure."""

from __future__ import annotations

from collections.abc import Sequence

SERVICE = "reconcile-gitops.service"
TIMER = "reconcile-gitops.timer"


def _quote(word: str) -> str:
    """One word of an ExecStart= line: systemd's quoting, and `%`/`$` kept literal."""
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"'


START_TIMEOUT_S = 3600.0  # a cycle that builds kernels and boots guests fits in an hour


def service_unit(argv: Sequence[str], start_timeout_s: float = START_TIMEOUT_S) -> str:
    """One cycle per start (oneshot); the timer starts it again after `interval`.

    A oneshot's start has no time limit by default: a hung cycle (a git server that stops
    answering mid-transfer, a wedged build) would block every later one. TimeoutStartSec
    stops it; SIGTERM first, so the lab lock and history are left as after an interrupt."""
    return "\n".join(
        [
            "# Written by `reconcile gitops --install-timer`; rerun it rather than edit this.",
            "[Unit]",
            "Description=reconcile: one GitOps cycle (fetch, plan, apply, report)",
            "Wants=network-online.target",
            "After=network-online.target libvirtd.service",
            "",
            "[Service]",
            "Type=oneshot",
            "ExecStart=" + " ".join(_quote(a) for a in argv),
            f"TimeoutStartSec={max(1, round(start_timeout_s))}s",
            # exit 2 (plan-only: changes), 3 (degraded) and 4 (rolled back) are reports, not
            # unit failures; 1 (an error) is, so `systemctl --failed` shows it
            "SuccessExitStatus=2 3 4",
            "",
        ]
    )


def timer_unit(interval_s: float) -> str:
    seconds = max(1, round(interval_s))
    return "\n".join(
        [
            "# Written by `reconcile gitops --install-timer` from gitops.interval.",
            "[Unit]",
            f"Description=reconcile: a GitOps cycle every {seconds}s",
            "",
            "[Timer]",
            "OnBootSec=2min",
            # counted from the end of the last cycle: cycles never overlap or pile up
            f"OnUnitInactiveSec={seconds}s",
            "RandomizedDelaySec=30s",
            "",
            "[Install]",
            "WantedBy=timers.target",
            "",
        ]
    )
