# A stand-in for the NixOS options the reconcile modules set, for evaluating them with
# nixpkgs' `lib` alone (no nixpkgs, no NixOS here). Each declaration has the name and
# type of nixpkgs' own; only the sub-options the modules use are declared, so a misspelt
# option (or one these modules should not set) fails evaluation as it would on NixOS.
#
# | option                                   | declared in nixpkgs (nixos/modules/...)         |
# |------------------------------------------|-------------------------------------------------|
# | assertions, warnings                     | misc/assertions.nix                             |
# | boot.kernelParams                        | system/boot/kernel.nix (listOf strMatching)     |
# | boot.initrd.{available,}KernelModules    | system/boot/kernel.nix (listOf str)             |
# | boot.bootspec.enable                     | system/activation/bootspec.nix (bool)           |
# | boot.loader.grub.{enable,device}         | system/boot/loader/grub/grub.nix (bool, str)    |
# | boot.growPartition                       | system/boot/grow-partition.nix (bool)           |
# | fileSystems.<path>.*                     | tasks/filesystems.nix (attrsOf submodule)       |
# | systemd.services/timers.<name>.*         | system/boot/systemd.nix + lib/systemd-unit-options.nix |
# | systemd.tmpfiles.rules                   | system/boot/systemd/tmpfiles.nix (listOf str)   |
# | users.users.<name>.*                     | config/users-groups.nix                         |
# | users.users.<name>.openssh.authorizedKeys.keys | services/networking/ssh/sshd.nix (listOf singleLineStr) |
# | security.sudo.wheelNeedsPassword         | security/sudo.nix (bool)                        |
# | environment.systemPackages               | config/system-path.nix (listOf package)         |
# | environment.etc.<name>.text              | system/etc/etc.nix (nullOr lines)               |
# | services.openssh.enable, .settings.*     | services/networking/ssh/sshd.nix                |
# | services.prometheus.exporters.node.*     | services/monitoring/prometheus/exporters.nix (+ exporters/node.nix) |
# | virtualisation.libvirtd.enable           | virtualisation/libvirtd.nix (bool)              |
# | nix.settings.{experimental-features,trusted-users} | config/nix.nix (freeform submodule)  |
# | system.build.*                           | system/activation/top-level.nix (lazyAttrsOf)   |
# | system.build.images, image.modules       | image/images.nix (lazyAttrsOf raw, attrsOf deferredModule) |
# | virtualisation.diskSize, image.format, image.efiSupport (inside image.modules.*) | virtualisation/disk-size-option.nix, disk-image.nix |
{ config, lib, ... }:
let
  inherit (lib) types;
  inherit (import ../platform/types.nix lib) opt strs unitOption unitCommon;
  # systemd.timers (services are declared in ../platform/options.nix, the same way).
  timer = types.submodule { options = unitCommon // { timerConfig = opt (types.attrsOf unitOption) { }; }; };
  user = types.submodule {
    options = {
      isNormalUser = opt types.bool false;
      extraGroups = strs;
    };
  };
  # Inside each image variant (image.modules.<name>), what nixpkgs' disk-image.nix declares.
  imageVariantStub = {
    options = {
      virtualisation.diskSize = opt (types.either (types.enum [ "auto" ]) types.ints.positive) "auto";
      image.format = opt (types.enum [ "raw" "qcow2" ]) "qcow2";
      image.efiSupport = opt types.bool true;
    };
  };
  imageVariants = {
    qemu = { image.efiSupport = false; };
    qemu-efi = { };
  };
in
{
  # The options the demo platform implements too (boot.*, fileSystems, systemd.services,
  # users.users.*.openssh, services.openssh, image.modules).
  imports = [ ../platform/options.nix ];

  options = {
    systemd.timers = opt (types.attrsOf timer) { };
    systemd.tmpfiles.rules = strs;
    users.users = opt (types.attrsOf user) { };
    security.sudo.wheelNeedsPassword = opt types.bool true;
    environment.systemPackages = opt (types.listOf types.package) [ ];
    environment.etc = opt (types.attrsOf (types.submodule { options.text = opt (types.nullOr types.lines) null; })) { };
    services.prometheus.exporters.node = {
      enable = opt types.bool false;
      port = opt types.port 9100;
      openFirewall = opt types.bool false;
      enabledCollectors = strs;
      extraFlags = strs;
    };
    virtualisation.libvirtd.enable = opt types.bool false;
    nix.settings.experimental-features = strs;
    nix.settings.trusted-users = opt (types.listOf types.str) [ "root" ];
  };

  # The image variants, evaluated against their own stub like nixpkgs' extendModules does
  # against the whole system; `passthru.config` as in nixos/modules/image/images.nix.
  config.image.modules = imageVariants;
  config.system.build.images = lib.mapAttrs (name: module: {
    passthru.config = (lib.evalModules { modules = [ imageVariantStub module ]; }).config;
  }) config.image.modules;
}
