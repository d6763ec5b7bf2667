"""A baremetal host as observed: which system is active, which booted, which boot.

The probe is a fixed command (no manifest data in it) whose `key=value` lines a pure
parser reads. One round trip per host.
"""

from __future__ import annotations

from dataclasses import dataclass

# Runs on the host through its login shell's `sh`; systemd's view only where systemd is.
PROBE = (
    "sh",
    "-c",
    'echo "current=$(readlink /run/current-system)"; '
    'echo "booted=$(readlink /run/booted-system)"; '
    'echo "boot_id=$(cat /proc/sys/kernel/random/boot_id)"; '
    "if [ -d /run/systemd/system ]; then "
    'echo "systemd=$(systemctl is-system-running 2>/dev/null)"; '
    'else echo "systemd=absent"; fi',
)


@dataclass(frozen=True)
class HostObservation:
    current: str | None  # /run/current-system's target
    booted: str | None  # /run/booted-system's target
    boot_id: str
    systemd: str  # "running", "degraded", ... or "absent" (no systemd: activate directly)

    @property
    def has_systemd(self) -> bool:
        return self.systemd != "absent"


def parse_probe(output: str) -> HostObservation:
    """The probe's output as an observation; ValueError when it is not the probe's."""
    values: dict[str, str] = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    missing = {"current", "booted", "boot_id", "systemd"} - set(values)
    if missing:
        raise ValueError(f"host probe output lacks {sorted(missing)}")
    return HostObservation(
        current=values["current"] or None,
        booted=values["booted"] or None,
        boot_id=values["boot_id"],
        systemd=values["systemd"] or "unknown",
    )
