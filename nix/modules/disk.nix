# Backend `disk`: a guest on a qcow2 image built by nixpkgs' image builder
# (`system.build.images.<variant>`), its size from `reconcile.disk.size`. reconcile gives
# each guest its own overlay on the image; a guest that keeps state is updated in place
# over SSH (contracts.md section 3).
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.reconcile.disk;
in
{
  imports = [ ./common.nix ./ssh-access.nix ];

  options.reconcile.disk = {
    size = mkOption {
      type = types.ints.positive;
      default = 8192;
      example = 20480;
      description = ''
        Size of the disk image in MiB (`virtualisation.diskSize` of the image variant). The
        guest's root file system grows to its overlay's size at boot.
      '';
    };
    variant = mkOption {
      type = types.str;
      default = "qemu";
      description = ''
        The `system.build.images` variant to build: `qemu` (qcow2, BIOS boot with GRUB on
        /dev/vda), or `qemu-efi`.
      '';
    };
    image = mkOption {
      type = types.raw;
      readOnly = true;
      description = ''
        The image derivation: `system.build.images.<variant>`. Build it with
        `nix build .#nixosConfigurations.<name>.config.reconcile.disk.image`.
      '';
    };
  };

  config = {
    reconcile.backend = "disk";
    reconcile.disk.image = config.system.build.images.${cfg.variant};
    # The raw variant too: the same disk uncompressed (`system.build.images.raw`).
    image.modules = lib.genAttrs [ cfg.variant "raw" ] (_: {
      virtualisation.diskSize = cfg.size;
    });

    boot.loader.grub.device = lib.mkDefault "/dev/vda";
    boot.growPartition = true;
    boot.initrd.availableKernelModules = [ "virtio_pci" "virtio_blk" ];
    fileSystems."/" = lib.mkDefault {
      device = "/dev/disk/by-label/nixos";
      fsType = "ext4";
      autoResize = true;
    };
  };
}
