# A login for the person using the lab: a normal user with SSH keys and sudo.
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.reconcile.user;
in
{
  options.reconcile.user = {
    name = mkOption {
      type = types.nullOr (types.strMatching "[a-z_][a-z0-9_-]*");
      default = null;
      example = "dev";
      description = "The user's name; `null` creates no user.";
    };
    authorizedKeys = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "SSH public keys the user logs in with.";
    };
    extraGroups = mkOption {
      type = types.listOf types.str;
      default = [ "wheel" ];
      description = "Groups besides the user's own (`wheel`: sudo).";
    };
    passwordlessSudo = mkOption {
      type = types.bool;
      default = true;
      description = "sudo without a password for `wheel` (lab machines have no passwords set).";
    };
  };

  config = lib.mkIf (cfg.name != null) {
    users.users.${cfg.name} = {
      isNormalUser = true;
      inherit (cfg) extraGroups;
      openssh.authorizedKeys.keys = cfg.authorizedKeys;
    };
    security.sudo.wheelNeedsPassword = !cfg.passwordlessSudo;
  };
}
