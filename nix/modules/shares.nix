# The guest's side of a manifest's `shares = [{ tag, source, writable }]`: each virtiofs
# tag mounted at a mount point. `store` and `modules` are the backend's own tags.
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.reconcile.mounts.shares;
  reserved = [ "store" "modules" ];
  share = types.submodule ({ name, ... }: {
    options = {
      mountPoint = mkOption {
        type = types.strMatching "/.+";
        default = "/mnt/${name}";
        defaultText = "/mnt/<tag>";
        description = "Where the share is mounted.";
      };
      readOnly = mkOption {
        type = types.bool;
        default = false;
        description = ''
          Mount it read-only. A share the manifest gives `writable = false` is read-only on
          the host whatever the guest does; this only says so in the guest too.
        '';
      };
      required = mkOption {
        type = types.bool;
        default = false;
        description = "Fail the boot when the tag is missing (otherwise `nofail`).";
      };
    };
  });
in
{
  options.reconcile.mounts.shares = mkOption {
    type = types.attrsOf share;
    default = { };
    example = { results = { mountPoint = "/results"; }; };
    description = ''
      virtiofs tags (the manifest's `shares[].tag`, `[A-Za-z0-9_-]+`) to mount points.
    '';
  };

  config = {
    assertions = lib.mapAttrsToList (tag: _: {
      assertion = builtins.match "[A-Za-z0-9_-]+" tag != null && !(builtins.elem tag reserved);
      message = "reconcile.mounts.shares.${tag}: a share's tag is [A-Za-z0-9_-]+ and not one of ${toString reserved}";
    }) cfg;
    fileSystems = lib.mapAttrs' (tag: s: lib.nameValuePair s.mountPoint {
      device = tag;
      fsType = "virtiofs";
      options = lib.optional s.readOnly "ro" ++ lib.optional (!s.required) "nofail";
    }) cfg;
  };
}
