# Builders for the demo closures. Each derivation runs `busybox sh -c SCRIPT`; busybox picks
# its applet from argv[0], so the builder path must end in "busybox". The scripts that end
# up in the closures are the *.sh files beside this one, with @placeholders@ filled in.
{ bb, system }:
let
  run = name: env: script: derivation ({
    inherit name system;
    builder = "${bb}";
    args = [ "sh" "-c" script ];
    PATH = "/no-path";
  } // env);

  # busybox and one symlink per applet: what the closures' scripts run with.
  busybox = run "busybox-static" { } ''
    set -e
    b=${bb}
    $b mkdir -p $out/bin
    $b cp $b $out/bin/busybox
    $b chmod 0555 $out/bin/busybox
    for applet in $($b --list); do
      [ -e $out/bin/$applet ] || $b ln -s busybox $out/bin/$applet
    done
  '';

  # Stage 1: a newc cpio of busybox, ./stage-1-init.sh and the mount table (what the
  # platform made of `fileSystems`), gzip-compressed and padded with zeros to a multiple of
  # 4 bytes, so that Linux also finds an archive appended after it (the /early modules;
  # README.md). Systems with the same file systems share one initrd.
  mkInitrd = { mounts }: run "reconcile-demo-initrd" { inherit mounts; } ''
    set -e
    b=${bb}
    $b mkdir -p root/bin root/dev root/etc root/proc root/sys root/sysroot root/tmp root/run $out
    $b cp $b root/bin/busybox
    for applet in $($b --list); do
      [ -e root/bin/$applet ] || $b ln -s busybox root/bin/$applet
    done
    $b cp ${./stage-1-init.sh} root/init
    $b printf '%s' "$mounts" > root/etc/reconcile-mounts
    $b chmod 0755 root/init root/bin/busybox
    cd root
    $b find . | $b sort | $b cpio -o -H newc | $b gzip -9 > $out/initrd
    size=$($b wc -c < $out/initrd)
    $b head -c $(( (4 - size % 4) % 4 )) /dev/zero >> $out/initrd
  '';

  # A system's closure, from what the platform (platform/default.nix) made of its config:
  # name, hostName, message, switchBehaviour, healthy, switchDelay, sshd, failBuild,
  # probeShares, kernelParams, initrd (a mkInitrd), bootspec (write boot.json) and
  # services (name -> script, run by stage 2 in this order, the readiness line's among them).
  # Disk systems (../disk-image.nix) also pass `sw` (busybox and more), and `extraEnv` and
  # `extraCommands` (run last); without them the derivation is what it always was.
  mkToplevel = o:
    let serviceAttrs = builtins.genList (i: "service${toString i}") (builtins.length o.services);
    in
    run "nixos-system-${o.name}"
      ({
        # Passed through the environment, never spliced into shell text.
        inherit (o) message switchBehaviour hostName;
        sshdAction = if o.sshd then "start" else "stop";
        systemName = o.name;
        health = if o.healthy then "ok" else "broken";
        switchDelay = toString o.switchDelay;
        failBuild = if o.failBuild then "1" else "";
        probeShares = builtins.concatStringsSep "\n" o.probeShares;
        kernelParams = builtins.concatStringsSep " " o.kernelParams;
        bootJson = if o.bootspec then builtins.toJSON {
          "org.nixos.bootspec.v1" = {
            init = "@out@/init";
            initrd = "${o.initrd}/initrd";
            kernel = "@out@/kernel";
            inherit (o) kernelParams;
            label = "reconcile demo ${o.name}";
            inherit system;
            toplevel = "@out@";
          };
          "org.nixos.specialisation.v1" = { };
        } else "";
        serviceNames = builtins.concatStringsSep "\n" (map (s: s.name) o.services);
        # Each script in a file of its own ($service<i>Path), never in shell text.
        passAsFile = serviceAttrs;
      } // (o.extraEnv or { }) // builtins.listToAttrs (builtins.genList
        (i: { name = "service${toString i}"; value = (builtins.elemAt o.services i).script; })
        (builtins.length o.services)))
      (''
        set -e
        b=${bb}
        if [ -n "$failBuild" ]; then
          echo "demo system $systemName is made to fail its build (failBuild = true)" >&2
          exit 1
        fi
        fill() {
          $b sed -e "s|@out@|$out|g" -e "s|@name@|$systemName|g" \
            -e "s|@hostName@|$hostName|g" \
            -e "s|@switchBehaviour@|$switchBehaviour|g" \
            -e "s|@switchDelay@|$switchDelay|g" -e "s|@sshd@|$sshdAction|g" "$1" > "$2"
          $b chmod 0555 "$2"
        }
        $b mkdir -p $out/bin $out/etc/acpi/PWRF $out/etc/services
        $b ln -s ${o.sw or busybox} $out/sw
        $b ln -s ${o.initrd}/initrd $out/initrd
        fill ${./stage-2-init.sh} $out/init
        fill ${./switch-to-configuration.sh} $out/bin/switch-to-configuration
        fill ${./power-button.sh} $out/etc/acpi/PWRF/00000080
        $b printf '%s\n' "$message" > $out/etc/reconcile-message
        $b printf '%s\n' "$health" > $out/etc/reconcile-health
        if [ -n "$probeShares" ]; then
          $b printf '%s\n' "$probeShares" > $out/etc/reconcile-probe-shares
        fi
        i=0
        for service in $serviceNames; do
          eval "script=\$service''${i}Path"
          $b cp "$script" "$out/etc/services/$service"
          i=$((i + 1))
        done
        $b printf '%s\n' "$serviceNames" > $out/etc/services/order
        echo "$systemName" > $out/nixos-version
        echo "${system}" > $out/system
        $b printf '%s\n' "$kernelParams" > $out/kernel-params
        # No kernel is built here: imageless guests boot an external kernel (bootspec's
        # "kernel" must still name a file, so it names this note).
        echo "no kernel: the offline demo flake boots an external kernel" > $out/kernel
        if [ -n "$bootJson" ]; then
          $b printf '%s\n' "$bootJson" | $b sed -e "s|@out@|$out|g" > $out/boot.json
        fi
      '' + (o.extraCommands or ""));
in
{
  inherit run busybox mkInitrd mkToplevel;
}
