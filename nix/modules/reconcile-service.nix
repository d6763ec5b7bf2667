# services.reconcile: the controller's GitOps as a NixOS service. The same unit pair as
# `reconcile gitops --install-timer` (reconcile/core/gitops/timer_units.py): a oneshot service
# running one cycle, with a start timeout and exits 2, 3 and 4 counted as success, and a
# timer starting it `interval` after the last cycle ended (OnUnitInactiveSec=), so cycles
# never overlap; the lab's lock keeps a person's `reconcile apply` out of the way too.
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.services.reconcile;

  # systemd's quoting of one ExecStart= word, `%` and `$` kept literal (timer_units._quote).
  quote = word: ''"${lib.replaceStrings [ "\\" "\"" "%" "$" ] [ "\\\\" "\\\"" "%%" "$$" ] word}"'';

  manifestFile = if builtins.isPath cfg.manifest then "${cfg.manifest}" else cfg.manifest;
  # A manifest given as a Nix path is read at evaluation time for its defaults.
  manifestData = if builtins.isPath cfg.manifest then lib.importTOML cfg.manifest else { };

  argv = [ "${cfg.package}/bin/reconcile" "gitops" manifestFile
    "--report-dir" cfg.reportDir "--lock-timeout" cfg.lockTimeout ]
    ++ lib.optionals (cfg.metricsPath != null) [ "--metrics" cfg.metricsPath ]
    ++ cfg.extraArgs;
  absolute = types.strMatching "/.+";
in
{
  options.services.reconcile = {
    enable = lib.mkEnableOption "reconcile's GitOps controller (a cycle every `interval`)";
    package = mkOption {
      type = types.package;
      default = pkgs.reconcile or (throw "services.reconcile.package: pkgs has no reconcile; add this flake's overlays.default or set the package");
      defaultText = "pkgs.reconcile (this flake's overlays.default)";
      description = "The reconcile package; its `bin/reconcile` runs the cycles.";
    };
    manifest = mkOption {
      type = types.either types.path absolute;
      example = "/etc/reconcile/lab.toml";
      description = ''
        The bootstrap manifest: the controller's copy of the lab's manifest, with its
        `[gitops]` (repository, branch, signers, allowed paths) and `[lab]`. A Nix path is
        copied to the store (so paths in it must be absolute) and read for the defaults of
        `stateDir` and `interval`; a string names a file on the controller.
      '';
    };
    interval = mkOption {
      type = types.str;
      default = manifestData.gitops.interval or "15min";
      defaultText = "the manifest's gitops.interval when it is a Nix path, else \"15min\"";
      example = "5min";
      description = "Time from the end of one cycle to the start of the next (a systemd time span).";
    };
    stateDir = mkOption {
      type = absolute;
      default = manifestData.lab.state_dir or "/var/lib/reconcile";
      defaultText = "the manifest's lab.state_dir when it is a Nix path, else /var/lib/reconcile";
      description = "The lab's state directory: it must be the manifest's `lab.state_dir`.";
    };
    reportDir = mkOption {
      type = absolute;
      default = "${cfg.stateDir}/reports";
      defaultText = "<stateDir>/reports";
      description = "Where each cycle writes drift.html, drift.json and drift.md.";
    };
    metricsPath = mkOption {
      type = types.nullOr absolute;
      default = null;
      example = "/var/lib/prometheus/node-exporter/reconcile.prom";
      description = ''
        Prometheus metrics of each cycle (textfile format); the `controller` profile points
        it at the node exporter's textfile directory.
      '';
    };
    startTimeout = mkOption {
      type = types.str;
      default = "1h";
      description = "`TimeoutStartSec=`: a cycle running longer is stopped (SIGTERM first).";
    };
    lockTimeout = mkOption {
      type = types.str;
      default = "60s";
      description = "`--lock-timeout`: how long a cycle waits for the lab's lock before skipping.";
    };
    extraArgs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "--parallel" "8" ];
      description = "More arguments to `reconcile gitops`.";
    };
    path = mkOption {
      type = types.listOf types.package;
      default = with pkgs; [ nix git openssh util-linux qemu-utils ];
      defaultText = "[ nix git openssh util-linux qemu-utils ]";
      description = "Programs on the service's PATH (what reconcile runs).";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = !(manifestData ? lab.state_dir) || manifestData.lab.state_dir == cfg.stateDir;
        message = "services.reconcile.stateDir (${cfg.stateDir}) is not the manifest's lab.state_dir";
      }
    ];
    systemd.tmpfiles.rules = [ "d ${cfg.stateDir} 0750 root root -" ];

    systemd.services.reconcile-gitops = {
      description = "reconcile: one GitOps cycle (fetch, plan, apply, report)";
      wants = [ "network-online.target" ];
      after = [ "network-online.target" "libvirtd.service" ];
      inherit (cfg) path;
      environment.HOME = cfg.stateDir;
      # A switch of the controller itself must not stop a cycle half-way.
      restartIfChanged = false;
      serviceConfig = {
        Type = "oneshot";
        ExecStart = lib.concatMapStringsSep " " quote argv;
        TimeoutStartSec = cfg.startTimeout;
        # 2 (plan-only: changes), 3 (degraded), 4 (rolled back) are reports, not failures.
        SuccessExitStatus = "2 3 4";
        # Hardening that needs no private mount namespace: reconcile bind-mounts read-only
        # views under the state directory that libvirt's virtiofsd must see, so
        # ProtectSystem=, PrivateTmp= and the like (which give the unit its own mounts)
        # would hide them from the guests.
        UMask = "0077";
        NoNewPrivileges = true;
        LockPersonality = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        SystemCallArchitectures = "native";
        RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" "AF_NETLINK" ];
        ProtectClock = true;
        ProtectHostname = true;
        KeyringMode = "private";
      };
    };

    systemd.timers.reconcile-gitops = {
      description = "reconcile: a GitOps cycle every ${cfg.interval}";
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnBootSec = "2min";
        # counted from the end of the last cycle: cycles never overlap or pile up
        OnUnitInactiveSec = cfg.interval;
        RandomizedDelaySec = "30s";
        Unit = "reconcile-gitops.service";
      };
    };
  };
}
