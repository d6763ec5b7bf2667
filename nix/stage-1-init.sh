#!/bin/busybox sh
# Stage 1 of the reconcile demo systems (the initrd's /init).
#
# Mounts what /etc/reconcile-mounts lists under /sysroot (the system's `fileSystems` that
# are needed for boot, made into a table by nix/platform/default.nix: for the imageless
# backend a tmpfs root, the host's /nix/store over virtiofs tag `store`, the kernel's
# modules over tag `modules`, nofail), then switch_root to the closure's init named by
# `init=` on the kernel command line. Modules listed in /early/order (an archive that
# reconcile adds to this initrd) are loaded first.
# Every line printed starts with "reconcile-initrd:"; a failure prints
# "reconcile-initrd: error: ..." and leaves a shell on the console: PID 1 never exits.
export PATH=/bin
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1

say() { echo "reconcile-initrd: $*"; }
fail() {
  echo "reconcile-initrd: error: $*"
  say "starting a shell on the console; the guest stays up (stop it from the host)"
  sh -i
  while :; do sleep 3600; done
}

mount -t proc proc /proc || fail "cannot mount /proc"
mount -t sysfs sysfs /sys || fail "cannot mount /sys"
say "stage 1 on Linux $(uname -r)"

if [ -f /early/order ]; then
  while read -r module; do
    case "$module" in '' | '#'*) continue ;; esac
    if insmod "/early/$module"; then
      say "loaded /early/$module"
    else
      say "warning: insmod /early/$module failed"
    fi
  done </early/order
fi

init=
set -f
for word in $(cat /proc/cmdline); do
  case "$word" in init=*) init="${word#init=}" ;; esac
done
set +f
[ -n "$init" ] || fail "no init= on the kernel command line"

# One file system a line, parents first: DEVICE MOUNTPOINT FSTYPE OPTIONS NOFAIL (0|1).
[ -f /etc/reconcile-mounts ] || fail "no /etc/reconcile-mounts in the initrd"
grep -q '^[^ ]* / ' /etc/reconcile-mounts || fail "no root file system (fileSystems.\"/\")"
if grep -q '^[^ ]* [^ ]* virtiofs ' /etc/reconcile-mounts; then
  grep -qw virtiofs /proc/filesystems ||
    fail "the kernel has no virtiofs (built in, or its modules listed in /early/order?)"
fi

mount_one() { # DEVICE MOUNTPOINT FSTYPE OPTIONS NOFAIL
  target=/sysroot${2%/}
  mode=read-write
  case ",$4," in *,ro,*) mode=read-only ;; esac
  if [ "$3" = virtiofs ]; then
    what="virtiofs tag '$1'"
  else
    what="$3 $1"
  fi
  mkdir -p "$target"
  # A virtiofs device is probed when its driver loads: give it a few seconds, unless the
  # file system may be missing (nofail).
  tries=0
  until mount -t "$3" -o "$4" "$1" "$target" 2>/tmp/mount.err; do
    tries=$((tries + 1))
    if [ "$5" = 1 ]; then
      say "no $what: $2 stays empty"
      return 0
    fi
    if [ "$3" != virtiofs ] || [ "$tries" -ge 25 ]; then
      fail "cannot mount $what $mode at $2: $(cat /tmp/mount.err)"
    fi
    usleep 200000
  done
  say "mounted $what $mode at $2"
  if [ "$2" = / ]; then
    mkdir -p /sysroot/nix/store /sysroot/lib/modules /sysroot/dev /sysroot/proc /sysroot/sys \
      /sysroot/run /sysroot/tmp /sysroot/etc
    chmod 1777 /sysroot/tmp
  fi
}
# (read on fd 3: a failure's shell keeps the console as its input)
while read -r device mountpoint fstype options nofail <&3; do
  [ -n "$device" ] || continue
  mount_one "$device" "$mountpoint" "$fstype" "$options" "$nofail"
done 3</etc/reconcile-mounts

[ -e "/sysroot$init" ] || [ -L "/sysroot$init" ] || fail "init $init is not in the shared store"

say "switching to $init"
mount --move /dev /sysroot/dev || fail "cannot move /dev"
mount --move /proc /sysroot/proc || fail "cannot move /proc"
mount --move /sys /sysroot/sys || fail "cannot move /sys"
exec switch_root /sysroot "$init"
