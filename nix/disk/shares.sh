# The `reconcile-shares` service of the demo disk systems (platform/default.nix prepends
# `say`): mounts the file systems not needed for boot, the virtiofs shares of
# reconcile.mounts.shares, from the toplevel's etc/reconcile-shares (DEVICE MOUNTPOINT
# FSTYPE OPTIONS NOFAIL, as the initrd's mount table). Runs after sshd and before the
# readiness line. One console line per share:
#   reconcile-share: TAG mounted read-only|read-write at MOUNTPOINT
#   reconcile-share: TAG missing (nofail)
#   reconcile-share: error: TAG missing (required at MOUNTPOINT): ...
# A required share that is missing withholds the readiness line (as a failed mount stops a
# NixOS boot before multi-user.target); sshd is already up, to look at the guest.
system=/run/current-system

# The virtiofs driver: Debian's kernel has fuse and virtiofs as modules, which the image
# carries (kernel-modules, from scripts/setup.sh; the initrd loaded virtio already).
while read -r file; do
  case "$file" in '' | '#'*) continue ;; esac
  name=${file%.ko}
  name=${name//-/_}
  [ -d "/sys/module/$name" ] || insmod "$system/kernel-modules/$file" ||
    say "reconcile-share: warning: insmod $file failed"
done <"$system/kernel-modules/order"

failed=
while read -r device mountpoint fstype options nofail; do
  [ -n "$device" ] || continue
  mkdir -p "$mountpoint"
  # The tag is known once virtiofs has probed its device (during insmod): retry briefly.
  tries=0
  until error=$(mount -t "$fstype" -o "$options" "$device" "$mountpoint" 2>&1); do
    tries=$((tries + 1))
    [ "$tries" -lt 5 ] || break
    usleep 200000
  done
  mode=$(awk -v d="$mountpoint" '$2 == d { split($4, o, ","); m = o[1] } END { print m }' /proc/mounts)
  case "$mode" in
    ro) say "reconcile-share: $device mounted read-only at $mountpoint" ;;
    rw) say "reconcile-share: $device mounted read-write at $mountpoint" ;;
    *)
      if [ "$nofail" = 1 ]; then
        say "reconcile-share: $device missing (nofail)"
      else
        say "reconcile-share: error: $device missing (required at $mountpoint): ${error:-not mounted}"
        failed="$failed $device"
      fi
      ;;
  esac
done <"$system/etc/reconcile-shares"

if [ -n "$failed" ]; then
  say "reconcile-share: error: required shares missing:$failed; the guest does not get ready"
  while :; do sleep 3600; done
fi
exit 0
