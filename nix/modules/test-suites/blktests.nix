# blktests: the suite, its `config` from options, a unit that runs it and writes its
# results to a share.
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption types;
  runner = import ./runner.nix { inherit lib; };
  cfg = config.reconcile.testSuites.blktests;
  configFile = ''
    TEST_DEVS=(${lib.escapeShellArgs cfg.testDevs})
  '' + lib.optionalString (cfg.exclude != [ ]) ''
    EXCLUDE=(${lib.escapeShellArgs cfg.exclude})
  '' + cfg.extraConfig;
in
{
  options.reconcile.testSuites.blktests = runner.options "blktests" [ "block" ] // {
    package = mkOption {
      type = types.package;
      # nixpkgs has no blktests package (pkgs/by-name/bl/ holds none): a lab brings its
      # own, or an overlay's `pkgs.blktests`
      default = pkgs.blktests or (throw
        "reconcile.testSuites.blktests.package: nixpkgs has no blktests; set it to a package whose bin/blktests runs blktests' ./check");
      defaultText = "pkgs.blktests (from an overlay: nixpkgs has none)";
      description = "The suite: a package whose `bin/blktests` runs blktests' `check` (nixpkgs has none; bring one, or an overlay's `pkgs.blktests`).";
    };
    testDevs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "/dev/vdb" ];
      description = "`TEST_DEVS`: block devices the tests may destroy.";
    };
    exclude = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "`EXCLUDE`: tests not to run.";
    };
    extraConfig = mkOption {
      type = types.lines;
      default = "";
      description = "More lines of blktests' `config`.";
    };
  };

  config = lib.mkIf cfg.enable {
    environment.systemPackages = [ cfg.package ];
    environment.etc."blktests/config".text = configFile;
    fileSystems = runner.mount cfg;
    systemd.services.blktests = runner.unit {
      suite = "blktests";
      inherit cfg;
      path = with pkgs; [ cfg.package fio util-linux ];
      environment = { };
      run = ''blktests -c /etc/blktests/config -o "$out" ${lib.escapeShellArgs cfg.tests} >"$out/check.log" 2>&1'';
    };
  };
}
