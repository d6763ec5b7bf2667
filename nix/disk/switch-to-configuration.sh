#!@out@/sw/bin/sh
# switch-to-configuration of the demo disk system @name@: the demo's own
# (libexec/switch-to-configuration-demo: the /run links, switchBehaviour, switchDelay),
# then what NixOS's does besides for a system on a disk:
#   switch, boot:  the boot loader boots this system next: /boot/grub/grub.cfg replaced
#                  (atomically, then synced: GRUB reads the disk without the journal)
#   switch, test:  activation (./activate: /etc files, root's keys)
# Nothing of this when the demo's part fails (switchBehaviour = fail exits 1 first).
export PATH=@out@/sw/bin:$PATH
toplevel=@out@
action=${1:-}

"$toplevel/libexec/switch-to-configuration-demo" "$@"
code=$?
case "$code" in 0 | 4) ;; *) exit "$code" ;; esac

case "$action" in
  switch | boot)
    mkdir -p /boot/grub
    cp "$toplevel/etc/grub.cfg" /boot/grub/grub.cfg.tmp &&
      sync /boot/grub/grub.cfg.tmp && mv -f /boot/grub/grub.cfg.tmp /boot/grub/grub.cfg &&
      sync && sync || {
      echo "switch-to-configuration: cannot write /boot/grub/grub.cfg" >&2
      exit 1
    }
    echo "switch-to-configuration: $action: the boot loader boots $toplevel next"
    ;;
esac
case "$action" in
  switch | test)
    "$toplevel/activate" || {
      echo "switch-to-configuration: activation of $toplevel failed" >&2
      exit 4
    }
    ;;
esac
exit "$code"
