"""The controller's systemd service and timer for `reconcile gitops`, as text. Pure."""

from __future__ import annotations

from collections.abc import Sequence

SERVICE = "reconcile-gitops.service"
TIMER = "reconcile-gitops.timer"


def _quote(word: str) -> str:
    """One word of an ExecStart= line: systemd's quoting, and `%`/`$` kept literal."""
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"'


def service_unit(argv: Sequence[str]) -> str:
    """One cycle per start (oneshot); the timer starts it again after `interval`."""
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
