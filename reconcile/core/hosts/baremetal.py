"""Baremetal hosts: what one should run, what it runs, and the difference.

The probe is a fixed command (no manifest data in it) whose `key=value` lines a pure
parser reads: one round trip per host. The diff is pure and keeps unknown (the probe
failed) apart from everything else: an unknown host is never acted on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING

from reconcile.core.desired import Activation, Host

if TYPE_CHECKING:  # a plan with nothing to change loads no closure diffs
    from reconcile.core.closures import ClosureDiff

SYSTEM_PROFILE = "/nix/var/nix/profiles/system"
# Written on the host by the health step once the active system passed its checks; on /run,
# so a reboot forgets it and the booted system is checked again.
STATE_DIR = "/run/reconcile"
CONFIRMED = f"{STATE_DIR}/confirmed"

# Runs on the host through its login shell's `sh`; systemd's view only where systemd is.
# Each value is absent (empty) only when its file really is absent: one that exists but
# cannot be read prints `error=`, and the last line is `end=ok`, so a probe that failed or
# was cut part-way reads as unknown, never as "no system".
_PROBE_SCRIPT = (
    'link() { if [ -L "$1" ]; then t=$(readlink "$1") && echo "$2=$t" || echo "error=$1"; '
    'elif [ -e "$1" ]; then echo "error=$1 is not a link"; else echo "$2="; fi; }; '
    "link /run/current-system current; "
    "link /run/booted-system booted; "
    f"if [ -e {SYSTEM_PROFILE} ] || [ -L {SYSTEM_PROFILE} ]; then "
    f't=$(readlink -f {SYSTEM_PROFILE}) && echo "profile=$t" || echo "error=profile"; '
    'else echo "profile="; fi; '
    f'if [ -e {CONFIRMED} ]; then t=$(cat {CONFIRMED}) && echo "confirmed=$t" '
    '|| echo "error=confirmed"; else echo "confirmed="; fi; '
    't=$(cat /proc/sys/kernel/random/boot_id) && echo "boot_id=$t" || echo "error=boot_id"; '
    # the boot loader, for booting a new system once (core/hosts/boot_once.py)
    "if command -v bootctl > /dev/null 2>&1 && bootctl is-installed > /dev/null 2>&1; "
    'then echo "loader=systemd-boot"; else echo "loader="; fi; '
    "if [ -d /run/systemd/system ]; then "
    'echo "systemd=$(systemctl is-system-running 2>/dev/null)"; '
    'else echo "systemd=absent"; fi; '
    "echo end=ok"
)
PROBE = ("sh", "-c", _PROBE_SCRIPT)
PROBE_KEYS = frozenset(
    {"current", "booted", "profile", "confirmed", "boot_id", "loader", "systemd", "end"}
)


@dataclass(frozen=True)
class HostObservation:
    current: str | None  # /run/current-system's target
    booted: str | None  # /run/booted-system's target
    boot_id: str
    systemd: str  # "running", "degraded", ... or "absent" (no systemd: activate directly)
    profile: str | None = None  # the system profile's current generation, resolved
    confirmed: str | None = None  # the system whose health checks last passed
    loader: str = ""  # "systemd-boot" (bootctl is-installed), or "" (another, or none)

    @property
    def has_systemd(self) -> bool:
        return self.systemd != "absent"

    def boots_once(self, host: Host) -> bool:
        """Whether a reboot of `host` into a new system boots it once (systemd-boot's
        one-shot entry), the booted system staying the default until confirmed."""
        return (
            host.reboot and host.boot_once and self.loader == "systemd-boot" and bool(self.booted)
        )


def parse_probe(output: str) -> HostObservation:
    """The probe's output as an observation; ValueError when it is not the whole probe's."""
    values: dict[str, str] = {}
    errors: list[str] = []
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key.strip() == "error":
            errors.append(value.strip())
        else:
            values[key.strip()] = value.strip()
    if errors:
        raise ValueError(f"host probe could not read {', '.join(errors)}")
    missing = PROBE_KEYS - set(values)
    if missing or values["end"] != "ok" or not values["boot_id"]:
        raise ValueError(f"host probe output is incomplete (lacks {sorted(missing) or 'end'})")
    return HostObservation(
        current=values["current"] or None,
        booted=values["booted"] or None,
        boot_id=values["boot_id"],
        systemd=values["systemd"] or "unknown",
        profile=values["profile"] or None,
        confirmed=values["confirmed"] or None,
        loader=values["loader"],
    )


# How a reboot goes on a host that boots once (HostObservation.boots_once), for the plan.
_ONCE = "once (systemd-boot: the booted system stays the default until it is confirmed)"


@dataclass(frozen=True)
class HostIntent:
    """A host of the manifest with its system resolved to a store path."""

    host: Host
    toplevel: str
    installable: str
    machine: str = "host"  # "disk guest": a running disk guest's system, switched the same way

    @property
    def name(self) -> str:
        return self.host.name


class HostChangeKind(StrEnum):
    SWITCH = "switch"  # copy, set the profile, activate, check health (or roll back)
    REBOOT = "reboot"  # the profile is right, the host has not booted it: reboot (allowed)
    VERIFY = "verify"  # active as desired, but its health was never confirmed
    NOOP = "no-op"
    UNKNOWN = "unknown"

    def is_change(self) -> bool:
        return self in (HostChangeKind.SWITCH, HostChangeKind.REBOOT, HostChangeKind.VERIFY)


@dataclass(frozen=True)
class HostChange:
    name: str
    target: str  # user@host:port (IPv6 in brackets), for people: SshTarget.authority
    kind: HostChangeKind
    before: str | None = None  # the system the host runs (or boots next, for `boot`)
    after: str | None = None
    note: str = ""
    intent: HostIntent | None = None
    observation: HostObservation | None = None
    reboot: bool = False  # a SWITCH that reboots into the new system after `boot`
    closure: ClosureDiff | None = None  # what its system change is (filled in by the plan)


def diff_host(intent: HostIntent, seen: HostObservation | None, error: str = "") -> HostChange:
    """The change that brings one host to its intent; `seen` None means unknown (`error`)."""
    host = intent.host
    where = host.ssh.target.authority
    base = HostChange(host.name, where, HostChangeKind.NOOP, after=intent.toplevel)
    if seen is None:
        return replace(base, kind=HostChangeKind.UNKNOWN, note=error or "not observed")
    base = replace(base, intent=intent, observation=seen)
    degraded = f" (systemd: {seen.systemd})" if seen.systemd not in ("running", "absent") else ""
    if host.activation is Activation.BOOT:
        if seen.profile != intent.toplevel:
            note = (
                "boot: then reboot into it and wait for the new boot"
                if host.reboot
                else "boot: active at the next boot (reboot = false: not rebooted by reconcile)"
            )
            if seen.boots_once(host):
                note = f"boot: then reboot into it {_ONCE}"
            return replace(
                base,
                kind=HostChangeKind.SWITCH,
                before=seen.profile,
                note=note,
                reboot=host.reboot,
            )
        if seen.booted != intent.toplevel:
            if host.reboot:
                return replace(
                    base,
                    kind=HostChangeKind.REBOOT,
                    before=seen.booted,
                    note="set to boot, not yet booted"
                    + (f": reboot into it {_ONCE}" if seen.boots_once(host) else ""),
                )
            return replace(
                base,
                before=seen.booted,
                note="set to boot at the next reboot (reboot = false)" + degraded,
            )
    elif seen.current != intent.toplevel:
        return replace(
            base, kind=HostChangeKind.SWITCH, before=seen.current, note=host.activation.value
        )
    active = seen.current
    # A disk guest's first system came with its disk, and its boot was seen ready: there is
    # no switch of it whose health could have gone unconfirmed.
    first_boot = intent.machine == "disk guest" and seen.confirmed is None
    if active is not None and seen.confirmed != active and not first_boot:
        return replace(
            base,
            kind=HostChangeKind.VERIFY,
            before=active,
            note="active, but its health checks never passed",
        )
    return replace(base, before=active, note=degraded.strip(" ()"))
