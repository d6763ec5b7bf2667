"""Booting a new system once: a failed boot comes back to the previous system by itself.

The guard (guard.py) lives in `/run` and dies with its boot, so a new system that never
comes back from a reboot has nobody to roll it back. On a host that boots with
systemd-boot, reconcile reboots into the new system through a one-shot entry instead
(`bootctl set-oneshot`), with the booted system set as the default (`bootctl
set-default`). The boot loader consumes the one-shot entry as it boots it, so the next
reset (a watchdog, `panic=`, a person) boots the previous system again. Confirming the
new system gives the default back to the boot loader's configuration, which
`switch-to-configuration boot` made the new system.

NixOS names the entry of generation N of the system profile `nixos-generation-N.conf`.
What reconcile set as the default is recorded in `RECORD` (under /nix, which outlives
reboots), and only a recorded default is ever cleared: one a person set is left alone.

Pure: the scripts are constants; every value arrives as a positional parameter.
"""

from __future__ import annotations

RECORD = "/nix/var/reconcile/boot-default"

# $0 the system profile, $1 the new system, $2 the booted system (to fall back to),
# $3 RECORD. Exit 3: one of them has no generation of the profile (so no entry).
ARM = (
    'p="$0"; '
    'gen() { n=; for l in "$p"-*-link; do [ "$(readlink -f "$l")" = "$1" ] || continue; '
    'g=${l#"$p"-}; g=${g%-link}; case "$g" in "" | *[!0-9]*) continue ;; esac; '
    '{ [ -z "$n" ] || [ "$g" -gt "$n" ]; } && n=$g; done; echo "$n"; }; '
    'new=$(gen "$1"); old=$(gen "$2"); '
    '[ -n "$new" ] || { echo "no generation of $p is $1"; exit 3; }; '
    '[ -n "$old" ] || { echo "no generation of $p is $2"; exit 3; }; '
    'mkdir -p "${3%/*}" && printf "%s\\n" "nixos-generation-$old.conf" > "$3" || exit 1; '
    'bootctl set-default "nixos-generation-$old.conf" || exit 1; '
    'bootctl set-oneshot "nixos-generation-$new.conf" || exit 1; '
    'echo "default=nixos-generation-$old.conf oneshot=nixos-generation-$new.conf"'
)
NO_GENERATION = 3

# $0 the system profile, $1 the new system, $2 the booted (previous) system, $3 RECORD:
# after the boot loader fell back, the profile back to the booted system, and that system
# the boot loader's default again, as the guard's rollback of a `boot` activation does.
RESTORE = (
    'p="$0"; if [ "$(readlink -f "$p")" = "$1" ]; then nix-env -p "$p" --rollback || exit 1; fi; '
    '[ "$(readlink -f "$p")" = "$2" ] || nix-env -p "$p" --set "$2" || exit 1; '
    '"$2/bin/switch-to-configuration" boot < /dev/null; s=$?; '
    '[ "$s" = 0 ] || [ "$s" = 4 ] || exit 1; '
    '[ -e "$3" ] || exit 0; bootctl set-default "" && rm -f "$3"'
)

# What `wait_for_new_boot` reads: the boot id, then the booted system ("" if none).
NEW_BOOT = "cat /proc/sys/kernel/random/boot_id && { readlink /run/booted-system || echo; }"


def parse_new_boot(output: str) -> tuple[str, str]:
    """NEW_BOOT's output as (boot id, booted system)."""
    lines = [*output.splitlines(), "", ""]
    return lines[0].strip(), lines[1].strip()
