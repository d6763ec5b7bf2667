# Profile `monitoring`: Prometheus' node exporter, with a textfile directory that
# reconcile's metrics (`--metrics FILE`, services.reconcile.metricsPath) are written to.
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.reconcile.monitoring;
in
{
  options.reconcile.monitoring = {
    textfileDir = mkOption {
      type = types.strMatching "/.+";
      default = "/var/lib/prometheus/node-exporter";
      description = "The node exporter's textfile collector directory (`*.prom` files).";
    };
    port = mkOption {
      type = types.port;
      default = 9100;
      description = "The node exporter's port.";
    };
    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open `port` in the firewall.";
    };
  };

  config = {
    services.prometheus.exporters.node = {
      enable = true;
      inherit (cfg) port openFirewall;
      enabledCollectors = [ "systemd" "textfile" ];
      extraFlags = [ "--collector.textfile.directory=${cfg.textfileDir}" ];
    };
    systemd.tmpfiles.rules = [ "d ${cfg.textfileDir} 0755 root root -" ];
  };
}
