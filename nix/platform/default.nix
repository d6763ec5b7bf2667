# The demo platform: the few NixOS options the backends set (./options.nix), implemented by
# turning the evaluated config into the busybox closure of ../lib.nix. The offline demo's
# systems are `lib.evalModules` of [ nixosModules.imageless, this, the system's settings
# (../systems.nix, the `demo.*` options below) ]: the backend's mounts, kernel parameters
# and readiness unit are what the demo guest boots with, so the guest booting is the
# backend's test (a wrong virtiofs tag in ../modules/imageless.nix and it does not boot).
#
#   fileSystems          needed for boot ("/", "/nix", "/nix/store" or neededForBoot):
#                        the initrd's mount table (/etc/reconcile-mounts, ../stage-1-init.sh);
#                        tmpfs and virtiofs only, `nofail` honoured; no other file systems
#   boot.kernelParams    boot.json's kernelParams and kernel-params (reconcile makes the
#                        command line itself, contracts.md §2)
#   boot.bootspec.enable boot.json
#   boot.loader.grub     must be off: nothing to install a boot loader on
#   boot.initrd.*KernelModules  accepted, not loaded: the demo's kernel drivers come from
#                        the /early archive reconcile appends (../README.md)
#   systemd.services     those wanted by multi-user.target: stage 2 runs each `script`
#                        once, in name order, after everything else (reconcile-ready)
#   networking.hostName  the hostname, the closure's name
#   system.build         toplevel and initialRamdisk (set here)
{ bb, system }:
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.demo;
  builders = import ../lib.nix { inherit bb system; };

  # As NixOS's fsNeededForBoot (nixos/lib/utils.nix), for the paths a demo system has.
  bootPaths = [ "/" "/nix" "/nix/store" ];
  fileSystems = lib.sort (a: b: a.mountPoint < b.mountPoint) (lib.attrValues config.fileSystems);
  neededForBoot = fs: fs.neededForBoot || builtins.elem fs.mountPoint bootPaths;
  forBoot = builtins.filter neededForBoot fileSystems;
  notForBoot = builtins.filter (fs: !neededForBoot fs) fileSystems;
  word = s: s != null && builtins.match "[A-Za-z0-9/_.,=%:+-]+" s != null;
  mountOptions = fs:
    let o = builtins.filter (o: o != "nofail") fs.options; in
    if o == [ ] then "defaults" else lib.concatStringsSep "," o;
  mountLine = fs: lib.concatStringsSep " " [
    fs.device fs.mountPoint fs.fsType (mountOptions fs)
    (if builtins.elem "nofail" fs.options then "1" else "0")
  ] + "\n";

  services = lib.mapAttrsToList (name: s: { inherit name; inherit (s) script; })
    (lib.filterAttrs (_: s: builtins.elem "multi-user.target" s.wantedBy) config.systemd.services);

  failed = map (a: a.message) (builtins.filter (a: !a.assertion) config.assertions);
in
{
  imports = [ ./options.nix ];

  options.demo = {
    message = mkOption {
      type = types.str;
      default = config.networking.hostName;
      description = "Printed at boot (`reconcile-message: ...`); changing it changes the closure.";
    };
    switchBehaviour = mkOption {
      type = types.enum [ "ok" "fail" "degraded" ];
      default = "ok";
      description = "switch-to-configuration: `fail` exits 1 before changing anything, `degraded` switches, then exits 4.";
    };
    failBuild = mkOption {
      type = types.bool;
      default = false;
      description = "The toplevel's build fails (for tests of build errors).";
    };
    healthy = mkOption {
      type = types.bool;
      default = true;
      description = "`false` writes `broken` to etc/reconcile-health (the baremetal tests' health check).";
    };
    switchDelay = mkOption {
      type = types.ints.unsigned;
      default = 0;
      description = "Seconds switch-to-configuration waits before acting.";
    };
    sshd = mkOption {
      type = types.bool;
      default = true;
      description = "Whether the system runs the host's SSH daemon: switch and test start it if it is not running, or (false) stop it, through the host's /run/demo-units/sshd where there is one (the baremetal test hosts).";
    };
    probeShares = mkOption {
      type = types.listOf (types.strMatching "[A-Za-z0-9_-]+");
      default = [ ];
      description = "virtiofs tags stage 2 tries to write to at boot (`reconcile-probe: ...`).";
    };
  };

  config = {
    assertions = [
      {
        assertion = !config.boot.loader.grub.enable;
        message = "the demo platform has no boot loader: set boot.loader.grub.enable = false (a backend does)";
      }
      {
        assertion = builtins.all (fs: builtins.elem fs.fsType [ "tmpfs" "virtiofs" ]) forBoot;
        message = "the demo platform mounts tmpfs and virtiofs file systems only: ${toString (map (fs: "${fs.mountPoint} (${fs.fsType})") forBoot)}";
      }
      {
        assertion = builtins.all (fs: word fs.device && word fs.mountPoint && builtins.all word fs.options) forBoot;
        message = "the demo platform's file systems need a device, and no spaces in device, mount point or options";
      }
      {
        assertion = notForBoot == [ ];
        message = "the demo platform mounts only file systems needed for boot, not ${toString (map (fs: fs.mountPoint) notForBoot)}";
      }
      {
        assertion = builtins.all (s: builtins.match "[A-Za-z0-9_.@-]+" s.name != null) services;
        message = "the demo platform's service names are [A-Za-z0-9_.@-]+";
      }
      {
        assertion = builtins.match "[A-Za-z0-9_.-]+" config.networking.hostName != null;
        message = "networking.hostName: [A-Za-z0-9_.-]+";
      }
    ];

    system.build.initialRamdisk = builders.mkInitrd { mounts = lib.concatMapStrings mountLine forBoot; };
    system.build.toplevel =
      if failed != [ ] then throw "failed assertions: ${lib.concatStringsSep "; " failed}"
      else builders.mkToplevel {
        name = config.networking.hostName;
        inherit (config.networking) hostName;
        inherit (cfg) message switchBehaviour failBuild healthy switchDelay sshd probeShares;
        inherit (config.boot) kernelParams;
        inherit services;
        initrd = config.system.build.initialRamdisk;
        bootspec = config.boot.bootspec.enable;
      };
  };
}
