#!@out@/sw/bin/sh
# The demo's activation: what matters to reconcile, the /run/current-system link.
#   switch, test:  point /run/current-system at this system (atomically)
#   boot:          record this system as the one to boot next (/run/next-boot-system)
#   dry-activate:  say what switch would do
# switchBehaviour (nix/systems.nix) = @switchBehaviour@:
#   ok: exit 0; fail: exit 1 before changing anything; degraded: do it, then exit 4.
# switchDelay = @switchDelay@: seconds to wait before acting (for tests that cut SSH mid-way).
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

sleep @switchDelay@
if [ "$behaviour" = fail ]; then
  echo "switch-to-configuration: $action of $toplevel failed (switchBehaviour = fail)" >&2
  exit 1
fi
case "$action" in
  switch | test)
    link current-system
    echo "switch-to-configuration: $action: /run/current-system -> $toplevel"
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
