# Backend `imageless`: direct kernel boot, nothing persists. A tmpfs root, the host's
# /nix/store read-only over virtiofs (tag `store`) and the kernel's modules over virtiofs
# (tag `modules`), what nix/stage-1-init.sh mounts for the demo systems too
# (nix/README.md). reconcile passes `init=<toplevel>/init` itself.
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.reconcile.imageless;
in
{
  imports = [ ./common.nix ];

  options.reconcile.imageless = {
    rootSize = mkOption {
      type = types.str;
      default = "50%";
      example = "2G";
      description = "`size=` of the tmpfs root (tmpfs syntax: bytes, k/m/g suffix or a % of RAM).";
    };
    modules = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Mount the virtiofs tag `modules` at /lib/modules (`nofail`: a guest whose kernel
        has every driver built in may not have the tag).
      '';
    };
  };

  config = {
    reconcile.backend = "imageless";

    boot.kernelParams = [ "root=tmpfs" ];
    # Drivers for kernels that have them as modules; a kernel built for imageless guests
    # has them built in (VIRTIO_PCI, FUSE_FS, VIRTIO_FS, TMPFS = y) and ignores these.
    # Only made available (loaded when the devices appear): forcing them would fail on a
    # kernel that is not nixpkgs' own.
    boot.initrd.availableKernelModules = [ "virtio_pci" "virtio_console" "fuse" "virtiofs" ];
    # Nothing to install a boot loader on: the hypervisor boots the kernel directly.
    boot.loader.grub.enable = false;

    fileSystems = {
      "/" = {
        device = "tmpfs";
        fsType = "tmpfs";
        options = [ "mode=0755" "size=${cfg.rootSize}" ];
      };
      "/nix/store" = {
        device = "store";
        fsType = "virtiofs";
        options = [ "ro" ];
        neededForBoot = true;
      };
      "/lib/modules" = lib.mkIf cfg.modules {
        device = "modules";
        fsType = "virtiofs";
        options = [ "ro" "nofail" ];
        neededForBoot = true;
      };
    };
  };
}
