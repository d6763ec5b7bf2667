# fstests (xfstests): the suite, its configuration from options (`local.config`), a unit
# that runs it and writes its results to a share.
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption types;
  runner = import ./runner.nix { inherit lib; };
  cfg = config.reconcile.testSuites.fstests;
  localConfig = ''
    export FSTYP=${cfg.fsType}
    export TEST_DEV=${cfg.testDev}
    export TEST_DIR=${cfg.testDir}
    export SCRATCH_DEV=${cfg.scratchDev}
    export SCRATCH_MNT=${cfg.scratchMnt}
  '' + lib.optionalString (cfg.mkfsOptions != "") ''
    export MKFS_OPTIONS="${cfg.mkfsOptions}"
  '' + lib.optionalString (cfg.mountOptions != "") ''
    export MOUNT_OPTIONS="${cfg.mountOptions}"
  '' + cfg.extraConfig;
in
{
  options.reconcile.testSuites.fstests = runner.options "fstests" [ "-g" "quick" ] // {
    package = mkOption {
      type = types.package;
      default = pkgs.xfstests;
      defaultText = "pkgs.xfstests";
      description = "The suite (nixpkgs' xfstests: `bin/xfstests-check` runs `check` in a scratch copy).";
    };
    fsType = mkOption {
      type = types.str;
      default = "xfs";
      description = "`FSTYP`: the file system under test.";
    };
    testDev = mkOption {
      type = types.str;
      example = "/dev/vdb";
      description = "`TEST_DEV`: a device holding a file system of `fsType`.";
    };
    testDir = mkOption {
      type = types.str;
      default = "/mnt/test";
      description = "`TEST_DIR`: where `testDev` is mounted.";
    };
    scratchDev = mkOption {
      type = types.str;
      example = "/dev/vdc";
      description = "`SCRATCH_DEV`: a device the tests may make file systems on.";
    };
    scratchMnt = mkOption {
      type = types.str;
      default = "/mnt/scratch";
      description = "`SCRATCH_MNT`: where `scratchDev` is mounted.";
    };
    mkfsOptions = mkOption {
      type = types.str;
      default = "";
      example = "-b size=1024";
      description = "`MKFS_OPTIONS`.";
    };
    mountOptions = mkOption {
      type = types.str;
      default = "";
      description = "`MOUNT_OPTIONS`.";
    };
    extraConfig = mkOption {
      type = types.lines;
      default = "";
      description = "More lines of `local.config`.";
    };
  };

  config = lib.mkIf cfg.enable {
    environment.systemPackages = [ cfg.package ];
    environment.etc."xfstests/local.config".text = localConfig;
    fileSystems = runner.mount cfg;
    systemd.tmpfiles.rules = [ "d ${cfg.testDir} 0755 root root -" "d ${cfg.scratchMnt} 0755 root root -" ];
    systemd.services.fstests = runner.unit {
      suite = "fstests";
      inherit cfg;
      path = with pkgs; [ cfg.package xfsprogs e2fsprogs btrfs-progs util-linux ];
      environment.HOST_OPTIONS = "/etc/xfstests/local.config";
      run = ''RESULT_BASE="$out" xfstests-check ${lib.escapeShellArgs cfg.tests} >"$out/check.log" 2>&1'';
    };
  };
}
