# Local block devices of a guest or host (the disks a test suite runs on, a scratch area):
# file systems that are mounted, and optionally made, at boot.
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.reconcile.mounts.storage;
  volume = types.submodule ({ name, ... }: {
    options = {
      device = mkOption {
        type = types.str;
        example = "/dev/vdb";
        description = "The block device.";
      };
      fsType = mkOption {
        type = types.str;
        default = "ext4";
        description = "Its file system type.";
      };
      mountPoint = mkOption {
        type = types.strMatching "/.+";
        default = "/srv/${name}";
        defaultText = "/srv/<name>";
        description = "Where it is mounted.";
      };
      options = mkOption {
        type = types.listOf types.str;
        default = [ "nofail" ];
        description = "Mount options.";
      };
      autoFormat = mkOption {
        type = types.bool;
        default = false;
        description = "Make the file system at boot when the device has none (`fileSystems.<path>.autoFormat`).";
      };
    };
  });
in
{
  options.reconcile.mounts.storage = mkOption {
    type = types.attrsOf volume;
    default = { };
    example = { scratch = { device = "/dev/vdb"; fsType = "xfs"; autoFormat = true; }; };
    description = "Local file systems by name.";
  };

  config.fileSystems = lib.mapAttrs' (_: v: lib.nameValuePair v.mountPoint {
    inherit (v) device fsType options autoFormat;
  }) cfg;
}
