#!/bin/busybox sh
# Stage 1 of the reconcile demo systems (the initrd's /init).
#
# A tmpfs root, the host's /nix/store read-only over virtiofs (tag `store`), the kernel's
# modules read-only over virtiofs (tag `modules`, optional), then switch_root to the
# closure's init named by `init=` on the kernel command line. Modules listed in
# /early/order (an archive that reconcile adds to this initrd) are loaded first.
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

grep -qw virtiofs /proc/filesystems ||
  fail "the kernel has no virtiofs (built in, or its modules listed in /early/order?)"

mount -t tmpfs -o mode=0755 tmpfs /sysroot || fail "cannot mount a tmpfs at /sysroot"
mkdir -p /sysroot/nix/store /sysroot/lib/modules /sysroot/dev /sysroot/proc /sysroot/sys \
  /sysroot/run /sysroot/tmp /sysroot/etc
chmod 1777 /sysroot/tmp

# The device is probed when its driver loads; give it a few seconds all the same.
tries=0
until mount -t virtiofs -o ro store /sysroot/nix/store 2>/tmp/mount.err; do
  tries=$((tries + 1))
  if [ "$tries" -ge 25 ]; then
    fail "cannot mount virtiofs tag 'store' read-only: $(cat /tmp/mount.err)"
  fi
  usleep 200000
done
say "mounted virtiofs tag 'store' read-only at /nix/store"

if mount -t virtiofs -o ro modules /sysroot/lib/modules 2>/dev/null; then
  say "mounted virtiofs tag 'modules' read-only at /lib/modules"
else
  say "no virtiofs tag 'modules': /lib/modules stays empty"
fi

[ -e "/sysroot$init" ] || [ -L "/sysroot$init" ] || fail "init $init is not in the shared store"

say "switching to $init"
mount --move /dev /sysroot/dev || fail "cannot move /dev"
mount --move /proc /sysroot/proc || fail "cannot move /proc"
mount --move /sys /sysroot/sys || fail "cannot move /sys"
exec switch_root /sysroot "$init"
