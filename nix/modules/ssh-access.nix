# Shared by the backends reconcile reaches over SSH (disk guests updated in place,
# baremetal hosts): sshd, and the keys root accepts (`nix copy`, `switch-to-configuration`).
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.reconcile.ssh;
in
{
  options.reconcile.ssh = {
    authorizedKeys = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "ssh-ed25519 AAAA... reconcile@controller" ];
      description = "Public keys root accepts: the controller's deploy key.";
    };
  };

  config = {
    services.openssh.enable = true;
    services.openssh.settings.PermitRootLogin = lib.mkDefault "prohibit-password";
    services.openssh.settings.PasswordAuthentication = lib.mkDefault false;
    users.users.root.openssh.authorizedKeys.keys = cfg.authorizedKeys;
    reconcile.readiness.after = [ "sshd.service" ];
  };
}
