# Profile `controller`: the machine reconcile runs on. libvirt, flakes, the tools
# reconcile calls, the node exporter (reconcile's metrics go to its textfile directory)
# and the GitOps service (services.reconcile; set its `manifest` and `enable`).
{ config, lib, pkgs, ... }:
{
  imports = [ ./monitoring.nix ../reconcile-service.nix ];

  config = {
    virtualisation.libvirtd.enable = true;
    nix.settings.experimental-features = [ "nix-command" "flakes" ];
    environment.systemPackages = [ config.services.reconcile.package ]
      ++ (with pkgs; [ git openssh qemu-utils ]);
    services.reconcile.metricsPath = lib.mkDefault "${config.reconcile.monitoring.textfileDir}/reconcile.prom";
  };
}
