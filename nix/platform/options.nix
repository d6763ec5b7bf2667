# The NixOS options that the backends set and the demo platform implements, with
# nixpkgs' names and types (where nixpkgs declares each: ../tests/nixos-stub.nix's header).
# Shared by the demo platform (./default.nix) and the option stubs of the module checks.
{ lib, ... }:
let
  inherit (lib) types;
  inherit (import ./types.nix lib) opt strs unitOption unitCommon;
  service = types.submodule {
    options = unitCommon // {
      serviceConfig = opt (types.attrsOf unitOption) { };
      path = opt (types.listOf (types.either types.package types.str)) [ ];
      environment = opt (types.attrsOf (types.nullOr (types.oneOf [ types.str types.path types.package ]))) { };
      script = opt types.lines "";
      restartIfChanged = opt types.bool true;
    };
  };
  fileSystem = types.submodule ({ name, ... }: {
    options = {
      mountPoint = opt types.str name;
      device = opt (types.nullOr types.str) null;
      fsType = opt types.str "auto";
      options = opt (types.nonEmptyListOf types.str) [ "defaults" ];
      neededForBoot = opt types.bool false;
      autoResize = opt types.bool false;
      autoFormat = opt types.bool false;
    };
  });
in
{
  options = {
    assertions = opt (types.listOf types.unspecified) [ ];
    warnings = strs;
    networking.hostName = opt types.str "nixos";
    boot.kernelParams = opt (types.listOf (types.strMatching ''([^"[:space:]]|"[^"]*")+'')) [ ];
    boot.initrd.availableKernelModules = strs;
    boot.initrd.kernelModules = strs;
    boot.bootspec.enable = opt types.bool true;
    boot.loader.grub.enable = opt types.bool true;
    boot.loader.grub.device = opt types.str "";
    boot.growPartition = opt types.bool false;
    fileSystems = opt (types.attrsOf fileSystem) { };
    systemd.services = opt (types.attrsOf service) { };
    system.build = opt (types.lazyAttrsOf types.raw) { };
    # What the disk backend sets besides (nixos-stub.nix adds the users' other options).
    users.users = lib.mkOption {
      type = types.attrsOf (types.submodule {
        options.openssh.authorizedKeys.keys = opt (types.listOf types.singleLineStr) [ ];
      });
    };
    services.openssh.enable = opt types.bool false;
    services.openssh.settings.PermitRootLogin = opt (types.enum [ "yes" "without-password" "prohibit-password" "forced-commands-only" "no" ]) "prohibit-password";
    services.openssh.settings.PasswordAuthentication = opt types.bool true;
    image.modules = opt (types.attrsOf types.deferredModule) { };
  };
}
