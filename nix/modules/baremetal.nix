# Backend `baremetal`: a host reconcile switches over pinned SSH (`nix copy`, the system
# profile, `switch-to-configuration`, health checks; docs/hosts.md). Its boot loader and
# file systems are the host's own (from its hardware configuration).
{ config, lib, ... }:
{
  imports = [ ./common.nix ./ssh-access.nix ];

  config = {
    reconcile.backend = "baremetal";
    # A host's console is its own business; readiness is read over SSH (health checks).
    reconcile.console = lib.mkDefault null;
    reconcile.readiness.enable = lib.mkDefault false;
    # `nix copy --to ssh://root@host` imports paths as root: no signature needed from a
    # trusted user.
    nix.settings.trusted-users = [ "root" ];
  };
}
