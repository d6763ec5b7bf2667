#!@out@/sw/bin/sh
# busybox acpid runs this on a press of the ACPI power button: power the guest off.
echo "reconcile-acpi: power button pressed: powering off" >/dev/console
sync
exec poweroff -f
