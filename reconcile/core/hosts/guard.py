"""The host's own guard: a rollback that does not need the controller (docs/hosts.md).

Before an activation, reconcile writes `GUARD_SCRIPT` to a file on the host and starts it
detached (its own transient unit under systemd, its own session otherwise). It waits for
the activation to end and then `confirm_timeout` for the controller's confirmation; if
none comes, it puts the system profile back and activates the previous system by itself.

Confirmation and rollback race for one token, `<id>.pending`, by renaming it: the
controller to `<id>.confirmed`, the guard to `<id>.rollback`. rename(2) is atomic, so
exactly one of the two wins, and a confirmed generation is never rolled back.

Pure: the scripts are constants (every value they work on arrives as an argument, never
as shell text) and the parser of the guard's state.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

from reconcile.core.hosts.baremetal import STATE_DIR

GUARDS_DIR = f"{STATE_DIR}/guards"
CURRENT_SYSTEM = "/run/current-system"

# The guard itself, written to GUARDS_DIR/<id>.sh and run as `sh FILE ARGS` (argv below).
GUARD_SCRIPT = r"""# reconcile's host guard (docs/hosts.md, "The guard"), written by reconcile.
# Nothing in this file comes from a manifest: every value arrives as an argument.
#   $1 the guards' directory       $2 this guard's id       $3 the system it guards
#   $4 the system to go back to    $5 switch|boot|test      $6 seconds to wait for the
#   confirmation once the activation ended                  $7 seconds the activation may
#   take   $8 the activation's status file ("": no activation to wait for)
#   $9 the system profile
# Unless the controller renames $1/$2.pending to .confirmed in time, the guard renames it
# to .rollback (the one rename that succeeds wins), puts the profile back and activates
# the previous system.
g=$1 id=$2 new=$3 prev=$4 mode=$5 confirm_s=$6 wait_s=$7 status=$8 profile=$9
t=$g/$id
exec >> "$t.log" 2>&1
case "$confirm_s$wait_s" in *[!0-9]* | "") exit 2 ;; esac
now() { read -r up _ < /proc/uptime; echo "${up%.*}${up#*.}"; } # centiseconds since boot
say() { read -r up _ < /proc/uptime; echo "[${up}s] $*"; }
echo "$$" > "$t.pid"
deadline=$(( $(now) + (wait_s + confirm_s) * 100 ))
why=timeout
say "guarding $new: back to $prev ($mode) unless confirmed"
while [ -e "$t.pending" ]; do
  if [ -n "$status" ] && [ -e "$status" ]; then
    status=
    deadline=$(( $(now) + confirm_s * 100 ))
    say "the activation ended; waiting ${confirm_s}s for the confirmation"
  fi
  if [ -e "$t.now" ]; then why=asked; break; fi
  [ "$(now)" -lt "$deadline" ] || break
  sleep 0.2
done
if ! mv "$t.pending" "$t.rollback" 2>/dev/null; then
  say "confirmed or superseded: nothing to do"
  exit 0
fi
if [ "$why" = asked ]; then
  say "reconcile asked for a rollback: back to $prev"
else
  say "not confirmed in time: back to $prev"
fi
profiled=untouched
if [ "$mode" != test ]; then
  profiled=ok
  if [ "$(readlink -f "$profile")" = "$new" ]; then
    nix-env -p "$profile" --rollback
  fi
  if [ "$(readlink -f "$profile")" != "$prev" ]; then
    nix-env -p "$profile" --set "$prev" || profiled=failed
  fi
fi
"$prev/bin/switch-to-configuration" "$mode" < /dev/null
switched=$?
say "switch-to-configuration $mode of $prev exited $switched (profile: $profiled)"
printf 'switch=%s\nprofile=%s\nwhy=%s\n' "$switched" "$profiled" "$why" > "$t.outcome.tmp"
mv "$t.outcome.tmp" "$t.outcome"
"""

# $0 the guards' directory, $1 the id, $2 the guarded system, $3 GUARD_SCRIPT: supersede
# the guards of earlier runs still waiting (this run reached the host on the system they
# guard), refuse (exit 3) while one is rolling back, write the script and the token.
START_GUARD = (
    'umask 077; g="$0"; mkdir -p "$g" || exit 1; '
    'for t in "$g"/*.pending; do [ -e "$t" ] || continue; '
    'mv "$t" "${t%.pending}.superseded" 2>/dev/null || { echo "${t##*/}"; exit 3; }; done; '
    'for t in "$g"/*.rollback; do [ -e "$t" ] || continue; '
    '[ -e "${t%.rollback}.outcome" ] || { echo "${t##*/}"; exit 3; }; done; '
    'printf "%s" "$3" > "$g/$1.sh.tmp" && mv "$g/$1.sh.tmp" "$g/$1.sh" && '
    'printf "%s\\n" "$2" > "$g/$1.pending.tmp" && mv "$g/$1.pending.tmp" "$g/$1.pending"'
)
START_BUSY = 3

# Run argv detached (no systemd): stdio closed, a session of its own.
DETACH_ARGV = 'setsid -f "$@" < /dev/null > /dev/null 2>&1'

# $0 the state directory, $1 the expected active system ("" = whatever is active), $2 the
# guard's id ("" = none known), $3 the current-system link, $4 the boot default reconcile
# set (boot_once.RECORD). Win the guard's token (exit 5 if the guard won it), and those of
# guards of earlier runs guarding the active system, then record the active system as
# confirmed, and give the boot default back to the boot loader's configuration if
# reconcile had set it (exit 6 if that failed). Exit 4: the active system is not $1 (and
# the guard did not roll it back).
CONFIRM = (
    'd="$0"; g="$d/guards"; c=$(readlink "$3"); [ -n "$c" ] || { [ -z "$1" ]; exit; }; '
    'if [ -n "$1" ] && [ "$c" != "$1" ]; then '
    '[ -n "$2" ] && [ ! -e "$g/$2.pending" ] && exit 5; exit 4; fi; '
    'if [ -n "$2" ]; then mv "$g/$2.pending" "$g/$2.confirmed" 2>/dev/null || exit 5; fi; '
    'for t in "$g"/*.pending; do [ -e "$t" ] || continue; '
    '[ "$(cat "$t" 2>/dev/null)" = "$c" ] || continue; '
    'mv "$t" "${t%.pending}.confirmed" 2>/dev/null || exit 5; done; '
    'mkdir -p "$d" && echo "$c" > "$d/confirmed.tmp" && mv "$d/confirmed.tmp" "$d/confirmed" '
    '|| exit 1; [ -e "$4" ] || exit 0; bootctl set-default "" && rm -f "$4" || exit 6'
)


class ConfirmExit(IntEnum):
    CONFIRMED = 0
    NOT_ACTIVE = 4  # the active system is not the one health-checked
    GUARD_WON = 5  # the guard took its token first: it is rolling back, or has
    DEFAULT_KEPT = 6  # confirmed, but the boot default reconcile set could not be cleared


# $0 the guards' directory, $1 the id: its phase (checked in the order a guard moves, so a
# move between two tests is never read as "absent"), whether it runs, its outcome, its log.
GUARD_STATE = (
    't="$0/$1"; '
    'if [ -e "$t.pending" ]; then echo phase=pending; '
    'elif [ -e "$t.rollback" ]; then '
    'if [ -e "$t.outcome" ]; then echo phase=rolled-back; cat "$t.outcome"; '
    "else echo phase=rolling-back; fi; "
    'elif [ -e "$t.confirmed" ]; then echo phase=confirmed; '
    'elif [ -e "$t.superseded" ]; then echo phase=superseded; '
    "else echo phase=absent; fi; "
    'if p=$(cat "$t.pid" 2>/dev/null); then '
    'if kill -0 "$p" 2>/dev/null; then echo alive=yes; else echo alive=no; fi; '
    "else echo alive=unknown; fi; "
    'echo end=ok; tail -n 12 "$t.log" 2>/dev/null; true'
)


class GuardPhase(StrEnum):
    PENDING = "pending"  # waiting for the activation, then for the confirmation
    ROLLING_BACK = "rolling-back"  # it won the token and is putting the host back
    ROLLED_BACK = "rolled-back"  # done: see its outcome
    CONFIRMED = "confirmed"  # the controller won the token
    SUPERSEDED = "superseded"  # a later run's guard took over
    ABSENT = "absent"  # no such guard (never started, or the host rebooted: /run is new)


@dataclass(frozen=True)
class GuardState:
    phase: GuardPhase
    alive: bool | None = None  # whether its process runs (None: not known yet)
    switch_code: int | None = None  # the previous system's switch-to-configuration exit
    profile: str = ""  # "ok", "failed" or "untouched" (test activations)
    asked: bool = False  # rolled back because reconcile asked, not for want of confirmation
    log: str = ""  # the tail of its log

    @property
    def rolled_back(self) -> bool:
        """Back on the previous system (exit 4 of its activation: degraded, but active)."""
        return (
            self.phase is GuardPhase.ROLLED_BACK
            and self.switch_code in (0, 4)
            and self.profile != "failed"
        )


@dataclass(frozen=True)
class GuardSpec:
    """One guard: what it guards, what it goes back to, and how long it waits."""

    id: str  # guard-<run>: its files GUARDS_DIR/<id>.*, its unit reconcile-<id>
    toplevel: str  # the system it guards
    previous: str  # the system it goes back to
    mode: str  # switch|boot|test: how it activates `previous`
    confirm_s: int  # how long it waits for the confirmation once the activation ended
    wait_s: int  # how long the activation may take (0: none to wait for)
    status_file: str  # the activation's status file ("" = none to wait for)

    @property
    def script(self) -> str:
        return f"{GUARDS_DIR}/{self.id}.sh"

    def argv(self, profile: str) -> list[str]:
        """`sh` and the guard's file with its arguments (GUARD_SCRIPT's header)."""
        return [
            "sh", self.script, GUARDS_DIR, self.id, self.toplevel, self.previous, self.mode,
            str(self.confirm_s), str(self.wait_s), self.status_file, profile,
        ]  # fmt: skip


def parse_guard_state(output: str) -> GuardState:
    """GUARD_STATE's output; ValueError when it is not the whole of it."""
    head, sep, log = output.partition("end=ok\n")
    if not sep:
        head, sep, log = output.partition("end=ok")
    if not sep:
        raise ValueError("the guard's state is incomplete (no end=ok)")
    values: dict[str, str] = {}
    for line in head.splitlines():
        key, eq, value = line.partition("=")
        if eq:
            values[key.strip()] = value.strip()
    try:
        phase = GuardPhase(values.get("phase", ""))
    except ValueError:
        raise ValueError(f"the guard's state has no phase: {head.strip()!r}") from None
    alive = {"yes": True, "no": False}.get(values.get("alive", ""))
    code = values.get("switch", "")
    return GuardState(
        phase=phase,
        alive=alive,
        switch_code=int(code) if code.isdigit() else None,
        profile=values.get("profile", ""),
        asked=values.get("why") == "asked",
        log=log.strip(),
    )
