# Evaluates the reconcile modules against nixos-stub.nix with nixpkgs' lib alone.
#   nix eval --json -f nix/tests/eval.nix --argstr libPath /path/to/nixpkgs-lib/lib cases
# `system modules` gives { config, options }; failed assertions throw, as on NixOS.
{ libPath ? null, lib ? import libPath }:
let
  index = import ../modules/index.nix;
  pkgs = import ./pkgs-stub.nix;
  system = modules:
    let
      evaluated = lib.evalModules {
        modules = [ ./nixos-stub.nix { _module.args.pkgs = pkgs; } ] ++ modules;
      };
      failed = builtins.filter (a: !a.assertion) evaluated.config.assertions;
    in
    if failed != [ ] then throw "failed assertions: ${toString (map (a: a.message) failed)}"
    else evaluated;
  profileCase = backend: profile:
    system [ index.backends.${backend} index.modules.${profile} ]
    // { name = "${backend}-${profile}"; };
  # What the checks force: every backend alone, and every profile on each.
  matrix = lib.concatLists (lib.mapAttrsToList (backend: file:
    [ (system [ file ] // { name = backend; }) ] ++ map (profileCase backend) index.profiles
  ) index.backends);
  summary = s: builtins.toJSON {
    inherit (s.config) fileSystems boot environment;
    systemd = { inherit (s.config.systemd) services timers; };
  };
  allModules = lib.attrValues index.backends ++ lib.attrValues index.modules;
in
{
  inherit lib index system matrix summary pkgs;
  # The documented options: reconcile.* and services.reconcile.*, every module
  # (all backends at once: their config conflicts, but only options are read here).
  docs =
    let
      all = lib.evalModules {
        modules = [ ./nixos-stub.nix { _module.args.pkgs = pkgs; } ]
          ++ allModules;
      };
      visible = o: o.visible && !o.internal;
      list = lib.optionAttrSetToDocList { inherit (all.options) reconcile; services.reconcile = all.options.services.reconcile; };
    in
    map (o: { inherit (o) name description type readOnly declarations; default = o.default.text or null; example = o.example.text or null; })
      (builtins.filter visible list);
}
