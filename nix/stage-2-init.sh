#!@out@/sw/bin/sh
# Stage 2 of the reconcile demo system @name@: PID 1 on a tmpfs root, the store read-only.
# Prints, in this order: reconcile-message, reconcile-store, reconcile-acpi, then runs the
# system's services (systemd.services wanted by multi-user.target, etc/services/order):
# the backends' reconcile-ready prints the readiness line "reconcile-ready: @out@". Then it
# stays up for ever (PID 1 never exits).
toplevel=@out@
export PATH=$toplevel/sw/bin
umask 022
mkdir -p /proc /sys /dev /run /tmp /etc /bin
[ -e /proc/self ] || mount -t proc proc /proc
[ -d /sys/kernel ] || mount -t sysfs sysfs /sys
[ -e /dev/null ] || mount -t devtmpfs devtmpfs /dev
grep -q '^[^ ]* /run ' /proc/mounts || mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
exec </dev/console >/dev/console 2>&1

# /dev/console is the last console= of the kernel command line. When that is not ttyS0
# (console=hvc0 last, say), the lines below go to ttyS0 as well: readiness is read there.
serial=
active=$(cat /sys/class/tty/console/active 2>/dev/null)
if [ "${active##* }" != ttyS0 ] && [ -c /dev/ttyS0 ]; then serial=/dev/ttyS0; fi
say() {
  echo "$*"
  if [ -n "$serial" ]; then echo "$*" >"$serial" 2>/dev/null; fi
}

ln -sfn "$toplevel" /run/current-system
ln -sfn "$toplevel" /run/booted-system
ln -sfn "$toplevel/sw/bin/sh" /bin/sh
hostname @hostName@

while read -r line; do say "reconcile-message: $line"; done <"$toplevel/etc/reconcile-message"

probe=/nix/store/.reconcile-write-test.$$
if touch "$probe" 2>/dev/null; then
  rm -f "$probe"
  say "reconcile-store: WRITABLE"
else
  say "reconcile-store: read-only"
fi

# Write probes (systems.nix `probeShares`): each tag is mounted read-write by the guest,
# whatever the host meant, and a file is created in it. Only the host can refuse then.
# Prints "reconcile-probe: TAG mount=rw|ro|none write=written|EROFS|error: ...".
mode_of() { awk -v d="$1" '$2 == d { split($4, o, ","); m = o[1] } END { print m ? m : "none" }' /proc/mounts; }
probe() {
  file="$2/.reconcile-probe-@name@"
  if out=$( { echo "$toplevel" >"$file"; } 2>&1); then
    write=written
  else
    case "$out" in *"Read-only file system"*) write=EROFS ;; *) write="error: $out" ;; esac
  fi
  say "reconcile-probe: $1 mount=$(mode_of "$2") write=$write"
}
if [ -f "$toplevel/etc/reconcile-probe-shares" ]; then
  while read -r tag; do
    case "$tag" in
      store) dir=/nix/store ;;
      modules) dir=/lib/modules ;;
      *) dir=/mnt/$tag && mkdir -p "$dir" && mount -t virtiofs "$tag" "$dir" ;;
    esac
    case "$tag" in store | modules) mount -o remount,rw "$dir" ;; esac
    probe "$tag" "$dir"
    case "$tag" in store | modules) mount -o remount,ro "$dir" ;; esac
  done <"$toplevel/etc/reconcile-probe-shares"
fi

# The ACPI power button powers the guest off (libvirt's graceful shutdown). Debian's kernel
# has its drivers (button, evdev) as modules: they load from the `modules` share when it is
# there (or from /early when reconcile put them in the initrd).
modprobe -q evdev 2>/dev/null
modprobe -q button 2>/dev/null
if [ -e /dev/input/event0 ]; then
  acpid -d -c "$toplevel/etc/acpi" -p /run/acpid.pid </dev/null >/dev/null 2>&1 &
  say "reconcile-acpi: the power button powers off"
else
  say "reconcile-acpi: no input devices (evdev and button not loaded): no ACPI shutdown"
fi

# The demo's systemd: each service's script, in order, once (Type=oneshot).
while read -r service; do
  [ -n "$service" ] || continue
  sh -e "$toplevel/etc/services/$service" </dev/null || say "reconcile-service: $service failed ($?)"
done <"$toplevel/etc/services/order"
while :; do sleep 3600; done
