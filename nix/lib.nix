# Builders for the demo closures. Each derivation runs `busybox sh -c SCRIPT`; busybox picks
# its applet from argv[0], so the builder path must end in "busybox".
{ bb, system }:
let
  run = name: script: derivation {
    inherit name system;
    builder = "${bb}";
    args = [ "sh" "-c" script ];
    PATH = "/no-path";
  };

  # Stage 1: mount the store (and modules) over virtiofs on a tmpfs root, then hand over
  # to the closure's init. Modules in /early (appended by reconcile for kernels whose
  # virtio drivers are modules) are loaded first.
  initrdInit = ''
    #!/bin/busybox sh
    /bin/busybox mkdir -p /proc /sys /dev /sysroot /bin
    /bin/busybox --install -s /bin
    mount -t devtmpfs dev /dev
    exec </dev/console >/dev/console 2>&1
    mount -t proc proc /proc
    mount -t sysfs sys /sys
    say() { echo "reconcile-initrd: $*"; }
    fail() { say "error: $*"; echo "reconcile-initrd: dropping to a shell"; exec sh; }
    if [ -f /early/order ]; then
      while read -r module; do
        insmod "/early/$module" || say "insmod $module failed"
      done < /early/order
    fi
    mount -t tmpfs -o mode=0755 root /sysroot || fail "cannot mount the tmpfs root"
    mkdir -p /sysroot/nix/store /sysroot/lib/modules /sysroot/dev /sysroot/proc /sysroot/sys
    mount -t virtiofs -o ro store /sysroot/nix/store || fail "cannot mount virtiofs tag 'store'"
    if mount -t virtiofs -o ro modules /sysroot/lib/modules 2>/dev/null; then
      say "modules mounted"
    fi
    init=""
    for word in $(cat /proc/cmdline); do
      case "$word" in init=*) init="''${word#init=}";; esac
    done
    [ -n "$init" ] || fail "no init= on the kernel command line"
    [ -x "/sysroot$init" ] || fail "$init is not in the store"
    say "switching to $init"
    mount --move /dev /sysroot/dev
    umount /proc /sys
    exec switch_root /sysroot "$init"
  '';

  initrd = run "reconcile-demo-initrd" ''
    set -e
    b=${bb}
    $b mkdir -p root/bin root/early $out
    $b cp $b root/bin/busybox
    $b cat > root/init <<'INIT'
    ${initrdInit}
    INIT
    $b sed -i 's/^    //' root/init
    $b chmod 0755 root/init root/bin/busybox
    cd root
    $b find . | $b sort | $b cpio -o -H newc | $b gzip -9 > $out/initrd
  '';

  mkSystem = name: { message ? name, switchBehaviour ? "ok", failBuild ? false }:
    run "nixos-system-${name}" ''
      set -e
      b=${bb}
      if [ "${if failBuild then "1" else ""}" = 1 ]; then
        echo "demo system ${name} is made to fail its build" >&2
        exit 1
      fi
      $b mkdir -p $out/bin $out/sw/bin
      for applet in $($b --list); do $b ln -s $b $out/sw/bin/$applet; done

      $b cat > $out/init <<EOF
      #!$b sh
      # Stage 2 of the demo system: PID 1 on a tmpfs root with the store read-only.
      export PATH=$out/sw/bin
      mkdir -p /proc /sys /run /tmp /etc
      mount -t proc proc /proc
      mount -t sysfs sys /sys
      mount -t tmpfs -o mode=0755 run /run
      ln -sfn $out /run/current-system
      ln -sfn $out /run/booted-system
      exec </dev/console >/dev/console 2>&1
      echo "reconcile-message: ${message}"
      if touch /nix/store/.reconcile-write-test 2>/dev/null; then
        rm -f /nix/store/.reconcile-write-test
        echo "reconcile-store: WRITABLE"
      else
        echo "reconcile-store: read-only"
      fi
      # The ACPI power button powers off (a graceful libvirt shutdown); its drivers may be
      # modules, found in /lib/modules from the modules share.
      modprobe -q button 2>/dev/null; modprobe -q evdev 2>/dev/null
      for event in /sys/class/input/event*; do
        if grep -q "Power Button" "\$event/device/name" 2>/dev/null; then
          (head -c 1 "/dev/input/\''${event##*/}" >/dev/null; echo "reconcile-poweroff"; sync; poweroff -f) &
        fi
      done
      echo "reconcile-ready: $out"
      while :; do sleep 3600; done
      EOF
      $b sed -i 's/^      //' $out/init

      $b cat > $out/bin/switch-to-configuration <<EOF
      #!$b sh
      # The demo's activation: what matters to reconcile (the current-system link).
      export PATH=$out/sw/bin
      action="\$1"
      case "\$action" in
        switch|test|boot|dry-activate) ;;
        *) echo "usage: switch-to-configuration switch|boot|test|dry-activate" >&2; exit 1;;
      esac
      behaviour="${switchBehaviour}"
      if [ "\$behaviour" = fail ]; then echo "activation of $out failed" >&2; exit 1; fi
      echo "\$action: $out"
      case "\$action" in
        switch|test)
          mkdir -p /run
          ln -sfn $out /run/.current-system.tmp
          mv -T /run/.current-system.tmp /run/current-system
          ;;
      esac
      if [ "\$behaviour" = degraded ]; then echo "some units failed" >&2; exit 4; fi
      exit 0
      EOF
      $b sed -i 's/^      //' $out/bin/switch-to-configuration
      $b chmod 0755 $out/init $out/bin/switch-to-configuration

      $b cat > $out/boot.json <<EOF
      {"org.nixos.bootspec.v1": {"init": "$out/init", "initrd": "${initrd}/initrd", "kernel": "$out/kernel", "kernelParams": ["root=tmpfs"], "label": "reconcile demo ${name}", "system": "${system}", "toplevel": "$out"}, "org.nixos.specialisation.v1": {}}
      EOF
      echo "${name}" > $out/nixos-version
    '';
in
{
  inherit initrd mkSystem;
}
