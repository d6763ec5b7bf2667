#!/bin/busybox sh
# Stage 1 of the demo's disk systems (their initrd's /init; ../stage-1-init.sh is the
# imageless systems' one). Loads the kernel modules the initrd carries (/lib/modules/order:
# Debian's kernel has virtio, ext4 and virtio-net as modules), mounts the root file system
# of /etc/reconcile-mounts (the system's fileSystems."/", by label) read-write at
# /sysroot and switch_roots to the `init=` of the kernel command line.
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
say "stage 1 (disk) on Linux $(uname -r)"

while read -r module; do
  case "$module" in '' | '#'*) continue ;; esac
  insmod "/lib/modules/$module" || say "warning: insmod $module failed"
done </lib/modules/order

init=
set -f
for word in $(cat /proc/cmdline); do
  case "$word" in init=*) init="${word#init=}" ;; esac
done
set +f
[ -n "$init" ] || fail "no init= on the kernel command line"

# The root file system: DEVICE / FSTYPE OPTIONS NOFAIL (the platform allows no other).
read -r device mountpoint fstype options _ </etc/reconcile-mounts
[ "$mountpoint" = / ] || fail "no root file system (fileSystems.\"/\") in /etc/reconcile-mounts"
case "$device" in
  /dev/disk/by-label/*) spec="LABEL=${device#/dev/disk/by-label/}" ;; # no udev: findfs
  /dev/disk/by-uuid/*) spec="UUID=${device#/dev/disk/by-uuid/}" ;;
  *) spec= ;;
esac
# The disk appears while virtio_blk loads, its partitions just after: wait a little.
tries=0
while :; do
  if [ -n "$spec" ]; then dev=$(findfs "$spec" 2>/dev/null); else dev=$device; fi
  [ -n "$dev" ] && [ -b "$dev" ] && break
  tries=$((tries + 1))
  [ "$tries" -lt 50 ] || fail "no root device $device"
  usleep 200000
done
case "$options" in defaults | '') options=rw ;; esac
mount -t "$fstype" -o "$options" "$dev" /sysroot 2>/tmp/mount.err ||
  fail "cannot mount $fstype $dev at /: $(cat /tmp/mount.err)"
say "mounted $fstype $dev read-write at /"
mkdir -p /sysroot/dev /sysroot/proc /sysroot/sys /sysroot/run /sysroot/tmp
chmod 1777 /sysroot/tmp

[ -e "/sysroot$init" ] || [ -L "/sysroot$init" ] || fail "init $init is not on the root file system"

say "switching to $init"
mount --move /dev /sysroot/dev || fail "cannot move /dev"
mount --move /proc /sysroot/proc || fail "cannot move /proc"
mount --move /sys /sysroot/sys || fail "cannot move /sys"
exec switch_root /sysroot "$init"
