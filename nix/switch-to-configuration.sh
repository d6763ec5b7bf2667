#!@out@/sw/bin/sh
# The demo's activation: what matters to reconcile, the /run/current-system link.
#   switch, test:  point /run/current-system at this system (atomically)
#   boot:          record this system as the one to boot next (/run/next-boot-system)
#   dry-activate:  say what switch would do
# switchBehaviour (nix/systems.nix) = @switchBehaviour@:
#   ok: exit 0; fail: exit 1 before changing anything; degraded: do it, then exit 4.
# switchDelay = @switchDelay@: seconds to wait before acting (for tests that cut SSH mid-way).
# sshd = @sshd@ (demo.sshd): switch and test start the host's SSH daemon if it is not
#   running (start), or stop it (stop), as NixOS's switch starts sshd.service, or stops it
#   in a system without it. The demo has no service manager: it runs the host's own unit
#   script /run/demo-units/sshd when there is one (testbed/hosts.py writes one), and
#   touches nothing where there is none (imageless guests).
export PATH=@out@/sw/bin:$PATH
toplevel=@out@
behaviour=@switchBehaviour@
action=${1:-}

case "$action" in
  switch | boot | test | dry-activate) ;;
  *)
    echo "usage: switch-to-configuration switch|boot|test|dry-activate" >&2
    exit 1
    ;;
esac

link() { # link NAME: /run/NAME -> toplevel, replaced atomically
  mkdir -p /run
  ln -sfn "$toplevel" "/run/.$1.$$"
  mv -fT "/run/.$1.$$" "/run/$1"
}

unit() { # unit NAME start|stop: through the host's unit script, when it has one
  if [ -x "/run/demo-units/$1" ]; then
    echo "switch-to-configuration: $2 $1"
    "/run/demo-units/$1" "$2" || echo "switch-to-configuration: $2 $1 failed" >&2
  fi
}

sleep @switchDelay@
if [ "$behaviour" = fail ]; then
  echo "switch-to-configuration: $action of $toplevel failed (switchBehaviour = fail)" >&2
  exit 1
fi
case "$action" in
  switch | test)
    link current-system
    echo "switch-to-configuration: $action: /run/current-system -> $toplevel"
    unit sshd @sshd@
    ;;
  boot)
    link next-boot-system
    echo "switch-to-configuration: boot: /run/next-boot-system -> $toplevel"
    ;;
  dry-activate)
    echo "switch-to-configuration: dry-activate: would point /run/current-system at $toplevel"
    ;;
esac
if [ "$behaviour" = degraded ] && [ "$action" != dry-activate ]; then
  echo "switch-to-configuration: some units failed (switchBehaviour = degraded)" >&2
  exit 4
fi
exit 0
