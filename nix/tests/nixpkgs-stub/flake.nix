# A stand-in for nixpkgs with only what ../../package.nix takes: callPackage, python3Packages
# (buildPythonApplication and the six dependencies) and the tools the package wraps. It
# lets packages.<system>.reconcile and apps.<system>.default be evaluated offline:
# tests/test_nix_modules.py overrides the flake's `nixpkgs` input with it. Nothing here
# is ever built. The names are nixpkgs' own (each attribute's file in nixpkgs):
#   python3Packages.buildPythonApplication  pkgs/top-level/python-packages.nix
#   python3Packages.{setuptools,tomlkit,jsonschema,networkx,fabric,structlog}
#                                           pkgs/development/python-modules/<name>
#   python3Packages.libvirt                 pkgs/development/python-modules/libvirt
#   nix git openssh qemu-utils              pkgs/top-level/all-packages.nix
# The lock is the main flake's: its lib is the vendored copy that scripts/setup.sh puts in
# the store.
{
  inputs.nixpkgs-lib.url = "github:nix-community/nixpkgs.lib";

  outputs = { self, nixpkgs-lib }:
    let
      lib = nixpkgs-lib.lib;
      fake = name: {
        type = "derivation";
        inherit name;
        outPath = "/nix/store/00000000000000000000000000000000-${name}";
      };
      fakes = names: lib.genAttrs names fake;
      python3Packages =
        fakes [ "setuptools" "tomlkit" "jsonschema" "networkx" "libvirt" "fabric" "structlog" ]
        // {
          # What the test reads back; unknown arguments are refused, as a misspelt one
          # would be silently ignored by the real function.
          buildPythonApplication =
            { pname, version, pyproject, src, build-system, dependencies
            , makeWrapperArgs, pythonImportsCheck, meta }:
            fake "${pname}-${version}" // {
              inherit pname version pyproject src build-system dependencies makeWrapperArgs
                pythonImportsCheck meta;
            };
        };
      pkgs = fakes [ "nix" "git" "openssh" "qemu-utils" ] // {
        inherit lib python3Packages;
        callPackage = lib.callPackageWith pkgs;
      };
    in
    {
      inherit lib; # as nixpkgs' flake has it (a lab's flake may make nixpkgs-lib follow it)
      legacyPackages.x86_64-linux = pkgs;
    };
}
