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

  # Stage 1: a newc cpio of busybox and ./stage-1-init.sh, gzip-compressed and padded with
  # zeros to a multiple of 4 bytes, so that Linux also finds an archive appended after it
  # (the /early modules; README.md).
  initrd = run "reconcile-demo-initrd" { } ''
    set -e
    b=${bb}
    $b mkdir -p root/bin root/dev root/proc root/sys root/sysroot root/tmp root/run $out
    $b cp $b root/bin/busybox
    for applet in $($b --list); do
      [ -e root/bin/$applet ] || $b ln -s busybox root/bin/$applet
    done
    $b cp ${./stage-1-init.sh} root/init
    $b chmod 0755 root/init root/bin/busybox
    cd root
    $b find . | $b sort | $b cpio -o -H newc | $b gzip -9 > $out/initrd
    size=$($b wc -c < $out/initrd)
    $b head -c $(( (4 - size % 4) % 4 )) /dev/zero >> $out/initrd
  '';

  behaviours = [ "ok" "fail" "degraded" ];
  knownOptions = [ "message" "switchBehaviour" "failBuild" "healthy" "switchDelay" "probeShares" ];
  isTag = tag: builtins.match "[A-Za-z0-9_-]+" tag != null;

  mkSystem = name: options:
    let
      unknown = builtins.filter (o: !(builtins.elem o knownOptions)) (builtins.attrNames options);
      o = {
        message = name;
        switchBehaviour = "ok";
        failBuild = false;
        healthy = true;
        switchDelay = 0;
        probeShares = [ ];
      } // options;
    in
    if unknown != [ ] then
      throw "nix/systems.nix: ${name}: unknown option(s) ${toString unknown} (known: ${toString knownOptions})"
    else if !(builtins.elem o.switchBehaviour behaviours) then
      throw "nix/systems.nix: ${name}: switchBehaviour must be one of ${toString behaviours}"
    else if !(builtins.all isTag o.probeShares) then
      throw "nix/systems.nix: ${name}: probeShares must be virtiofs tags ([A-Za-z0-9_-]+)"
    else
      run "nixos-system-${name}"
        {
          # Passed through the environment, never spliced into shell text.
          inherit (o) message switchBehaviour;
          systemName = name;
          health = if o.healthy then "ok" else "broken";
          switchDelay = toString o.switchDelay;
          failBuild = if o.failBuild then "1" else "";
          probeShares = builtins.concatStringsSep "\n" o.probeShares;
        }
        ''
          set -e
          b=${bb}
          if [ -n "$failBuild" ]; then
            echo "demo system $systemName is made to fail its build (failBuild = true)" >&2
            exit 1
          fi
          fill() {
            $b sed -e "s|@out@|$out|g" -e "s|@name@|$systemName|g" \
              -e "s|@switchBehaviour@|$switchBehaviour|g" \
              -e "s|@switchDelay@|$switchDelay|g" "$1" > "$2"
            $b chmod 0555 "$2"
          }
          $b mkdir -p $out/bin $out/etc/acpi/PWRF
          $b ln -s ${busybox} $out/sw
          $b ln -s ${initrd}/initrd $out/initrd
          fill ${./stage-2-init.sh} $out/init
          fill ${./switch-to-configuration.sh} $out/bin/switch-to-configuration
          fill ${./power-button.sh} $out/etc/acpi/PWRF/00000080
          $b printf '%s\n' "$message" > $out/etc/reconcile-message
          $b printf '%s\n' "$health" > $out/etc/reconcile-health
          if [ -n "$probeShares" ]; then
            $b printf '%s\n' "$probeShares" > $out/etc/reconcile-probe-shares
          fi
          echo "$systemName" > $out/nixos-version
          echo "${system}" > $out/system
          echo "root=tmpfs" > $out/kernel-params
          # No kernel is built here: imageless guests boot an external kernel (bootspec's
          # "kernel" must still name a file, so it names this note).
          echo "no kernel: the offline demo flake boots an external kernel" > $out/kernel
          $b cat > $out/boot.json <<EOF
          {"org.nixos.bootspec.v1": {"init": "$out/init", "initrd": "${initrd}/initrd", "kernel": "$out/kernel", "kernelParams": ["root=tmpfs"], "label": "reconcile demo $systemName", "system": "${system}", "toplevel": "$out"}, "org.nixos.specialisation.v1": {}}
          EOF
        '';
in
{
  inherit busybox initrd mkSystem;
}
