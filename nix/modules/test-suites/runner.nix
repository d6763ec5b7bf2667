# What fstests and blktests have in common: a oneshot unit that runs the suite and copies
# its results to a share (the manifest's `shares = [{ tag = "results", writable = true }]`),
# and the options saying which share and when to run.
{ lib }:
let
  inherit (lib) mkOption types;
in
{
  options = suite: defaultTests: {
    enable = lib.mkEnableOption "${suite} and a unit (`${suite}.service`) that runs it";
    tests = mkOption {
      type = types.listOf types.str;
      default = defaultTests;
      example = [ "generic/001" "xfs/001" ];
      description = "Arguments to ${suite}'s `check`: groups (`-g auto`), tests, `-x` exclusions.";
    };
    resultsTag = mkOption {
      type = types.strMatching "[A-Za-z0-9_-]+";
      default = "results";
      description = "The virtiofs tag results are written to (a writable share of the guest).";
    };
    resultsDir = mkOption {
      type = types.strMatching "/.+";
      default = "/results";
      description = "Where that share is mounted; results go to `<resultsDir>/${suite}/<hostname>/`.";
    };
    autoStart = mkOption {
      type = types.bool;
      default = true;
      description = "Run the suite at boot (otherwise `systemctl start ${suite}`).";
    };
    timeout = mkOption {
      type = types.str;
      default = "12h";
      description = "`TimeoutStartSec=` of the unit.";
    };
  };

  # The unit: `run` is a shell fragment that runs the suite with `$out` the results dir.
  unit = { suite, cfg, path, environment, run }: {
    description = "reconcile: run ${suite}, results to the ${cfg.resultsTag} share";
    wantedBy = lib.optional cfg.autoStart "multi-user.target";
    after = [ "local-fs.target" "network.target" ];
    requires = [ "local-fs.target" ];
    inherit path environment;
    restartIfChanged = false;
    serviceConfig = {
      Type = "oneshot";
      TimeoutStartSec = cfg.timeout;
    };
    script = ''
      out=${cfg.resultsDir}/${suite}/$(hostname)
      mkdir -p "$out"
      status=0
      ${run} || status=$?
      echo "$status" >"$out/exit-status"
      echo "${suite}: check exited $status, results in $out"
    '';
  };

  mount = cfg: {
    "${cfg.resultsDir}" = {
      device = cfg.resultsTag;
      fsType = "virtiofs";
      options = [ "nofail" ];
    };
  };
}
