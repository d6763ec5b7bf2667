# The demo platform: the few NixOS options the backends set (./options.nix), implemented by
# turning the evaluated config into the busybox closure of ../lib.nix. The offline demo's
# systems are `lib.evalModules` of [ nixosModules.imageless, this, the system's settings
# (../systems.nix, the `demo.*` options below) ]: the backend's mounts, kernel parameters
# and readiness unit are what the demo guest boots with, so the guest booting is the
# backend's test (a wrong virtiofs tag in ../modules/imageless.nix and it does not boot).
#
#   fileSystems          needed for boot ("/", "/nix", "/nix/store" or neededForBoot):
#                        the initrd's mount table (/etc/reconcile-mounts, ../stage-1-init.sh);
#                        tmpfs and virtiofs only, `nofail` honoured; no other file systems
#                        (disk systems: virtiofs ones too, mounted at stage 2, see below)
#   boot.kernelParams    boot.json's kernelParams and kernel-params (reconcile makes the
#                        command line itself, contracts.md §2)
#   boot.bootspec.enable boot.json
#   boot.loader.grub     off (imageless): nothing to install a boot loader on. On (the
#                        disk backend; device /dev/vda): the system boots from its own
#                        disk, see "Disk systems" below
#   boot.initrd.*KernelModules  accepted, not loaded: the demo's kernel drivers come from
#                        the /early archive reconcile appends (../README.md), or the disk
#                        initrd's fixed list
#   systemd.services     those wanted by multi-user.target: stage 2 runs each `script`
#                        once, in name order but after the services its `after` names
#                        and before those its `before` names, after everything else
#                        (reconcile-ready)
#   networking.hostName  the hostname, the closure's name
#   system.build         toplevel and initialRamdisk (set here); images.{qemu,raw} (disk)
#
# Disk systems (boot.loader.grub.enable, ../disk-image.nix): the root file system is the
# ext4 `fileSystems."/"` (by label) that stage 1 (../disk/stage-1.sh) mounts read-write;
# the toplevel has the kernel, GRUB's menu (etc/grub.cfg), `activate` and a
# switch-to-configuration that installs the menu (../disk/switch-to-configuration.sh);
# services `activate`, `network` (DHCP on eth0) and, with services.openssh.enable, `sshd`
# (dropbear, root's users.users.root.openssh.authorizedKeys.keys, its host key made at
# first boot and printed as `reconcile-ssh-host-key: TYPE BASE64`) run before the others;
# `system.build.images.<variant>` is the bootable disk, `virtualisation.diskSize` MiB of
# `image.modules.<variant>` (qemu: qcow2, raw: raw; 512 when "auto").
#   boot.loader.grub.device  must be /dev/vda (the disk the guest boots from)
#   boot.growPartition, fileSystems.*.autoResize  accepted, not done: the file system
#                        keeps the image's size
#   fileSystems not needed for boot: virtiofs only (reconcile.mounts.shares), the table
#                        etc/reconcile-shares, mounted by the service reconcile-shares
#                        (../disk/shares.sh: after sshd, before reconcile-ready) once it
#                        has loaded fuse and virtiofs from the image (kernel-modules);
#                        `ro` and `nofail` honoured, a missing required one withholds
#                        the readiness line
{ bb, system, disk ? null }:
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.demo;
  builders = import ../lib.nix { inherit bb system; };
  diskBuilders = import ../disk-image.nix { inherit bb system disk builders; };
  bootsFromDisk = config.boot.loader.grub.enable;

  # As NixOS's fsNeededForBoot (nixos/lib/utils.nix), for the paths a demo system has.
  bootPaths = [ "/" "/nix" "/nix/store" ];
  fileSystems = lib.sort (a: b: a.mountPoint < b.mountPoint) (lib.attrValues config.fileSystems);
  neededForBoot = fs: fs.neededForBoot || builtins.elem fs.mountPoint bootPaths;
  forBoot = builtins.filter neededForBoot fileSystems;
  notForBoot = builtins.filter (fs: !neededForBoot fs) fileSystems;
  # Disk systems mount virtiofs file systems after boot (../disk/shares.sh); the
  # imageless ones mount nothing after boot (an assertion).
  lateMounts = lib.optionals bootsFromDisk notForBoot;
  word = s: s != null && builtins.match "[A-Za-z0-9/_.,=%:+-]+" s != null;
  mountOptions = fs:
    let o = builtins.filter (o: o != "nofail") fs.options; in
    if o == [ ] then "defaults" else lib.concatStringsSep "," o;
  mountLine = fs: lib.concatStringsSep " " [
    fs.device fs.mountPoint fs.fsType (mountOptions fs)
    (if builtins.elem "nofail" fs.options then "1" else "0")
  ] + "\n";

  # Name order, except that a service comes after those its `after` names ("x.service")
  # and before those its `before` names.
  wanted = lib.mapAttrsToList (name: s: { inherit name; inherit (s) script after before; })
    (lib.filterAttrs (_: s: builtins.elem "multi-user.target" s.wantedBy) config.systemd.services);
  order = done: todo:
    let
      names = map (s: "${s.name}.service") todo;
      ready = s: builtins.all (a: !builtins.elem a names) s.after
        && !builtins.any (t: builtins.elem "${s.name}.service" t.before) todo;
      next = lib.findFirst ready (builtins.head todo) todo;
    in
    if todo == [ ] then done
    else order (done ++ [ next ]) (builtins.filter (s: s.name != next.name) todo);
  services = map (s: { inherit (s) name script; }) (order [ ] wanted);

  # Disk systems: the image variants the platform builds, their sizes from image.modules.
  variants = { qemu = "qcow2"; raw = "raw"; };
  diskSize = variant:
    let
      evaluated = lib.evalModules {
        modules = [
          { options.virtualisation.diskSize = mkOption { type = types.either (types.enum [ "auto" ]) types.ints.positive; default = "auto"; }; }
        ] ++ lib.optional (config.image.modules ? ${variant}) config.image.modules.${variant};
      };
      size = evaluated.config.virtualisation.diskSize;
    in
    if size == "auto" then 512 else size;
  rootKeys = config.users.users.root.openssh.authorizedKeys.keys or [ ];
  ssh = config.services.openssh;
  # dropbear's options for services.openssh.settings.
  dropbearFlags = lib.concatStringsSep " " (
    lib.optional (!ssh.settings.PasswordAuthentication) "-s"
    ++ lib.optional (ssh.settings.PermitRootLogin == "no") "-w"
    ++ lib.optional (builtins.elem ssh.settings.PermitRootLogin [ "prohibit-password" "without-password" ]) "-g");
  # A line for the serial console (where reconcile reads it), as common.nix's readiness.
  consoleLine = ''
    say() {
      echo "$*" >/dev/console
      active=$(cat /sys/class/tty/console/active 2>/dev/null || true)
      if [ "''${active##* }" != ttyS0 ] && [ -c /dev/ttyS0 ]; then echo "$*" >/dev/ttyS0 || true; fi
    }
  '';
  fsTypes = if bootsFromDisk then [ "ext4" "ext2" ] else [ "tmpfs" "virtiofs" ];

  failed = map (a: a.message) (builtins.filter (a: !a.assertion) config.assertions);
in
{
  imports = [ ./options.nix ];

  options.demo = {
    message = mkOption {
      type = types.str;
      default = config.networking.hostName;
      description = "Printed at boot (`reconcile-message: ...`); changing it changes the closure.";
    };
    switchBehaviour = mkOption {
      type = types.enum [ "ok" "fail" "degraded" ];
      default = "ok";
      description = "switch-to-configuration: `fail` exits 1 before changing anything, `degraded` switches, then exits 4.";
    };
    failBuild = mkOption {
      type = types.bool;
      default = false;
      description = "The toplevel's build fails (for tests of build errors).";
    };
    healthy = mkOption {
      type = types.bool;
      default = true;
      description = "`false` writes `broken` to etc/reconcile-health (the baremetal tests' health check).";
    };
    switchDelay = mkOption {
      type = types.ints.unsigned;
      default = 0;
      description = "Seconds switch-to-configuration waits before acting.";
    };
    sshd = mkOption {
      type = types.bool;
      default = true;
      description = "Whether the system runs the host's SSH daemon: switch and test start it if it is not running, or (false) stop it, through the host's /run/demo-units/sshd where there is one (the baremetal test hosts).";
    };
    probeShares = mkOption {
      type = types.listOf (types.strMatching "[A-Za-z0-9_-]+");
      default = [ ];
      description = "virtiofs tags stage 2 tries to write to at boot (`reconcile-probe: ...`).";
    };
  };

  config = {
    users.users = { }; # declared without a default (../tests/nixos-stub.nix declares it too)
    assertions = [
      {
        assertion = !bootsFromDisk || config.boot.loader.grub.device == "/dev/vda";
        message = "the demo platform has no boot loader for boot.loader.grub.device = \"${config.boot.loader.grub.device}\": it installs GRUB on /dev/vda only (the disk backend's), or none (boot.loader.grub.enable = false, as the imageless backend sets)";
      }
      {
        assertion = builtins.all (fs: builtins.elem fs.fsType fsTypes) forBoot;
        message = "the demo platform mounts ${lib.concatStringsSep " and " fsTypes} file systems only${lib.optionalString bootsFromDisk " (with a boot loader)"}: ${toString (map (fs: "${fs.mountPoint} (${fs.fsType})") forBoot)}";
      }
      {
        assertion = !bootsFromDisk || map (fs: fs.mountPoint) forBoot == [ "/" ];
        message = "the demo platform's disk systems have one file system, / (not ${toString (map (fs: fs.mountPoint) forBoot)})";
      }
      {
        assertion = !ssh.enable || bootsFromDisk;
        message = "the demo platform runs an SSH daemon on disk systems only";
      }
      {
        assertion = builtins.all (fs: word fs.device && word fs.mountPoint && builtins.all word fs.options) (forBoot ++ lateMounts);
        message = "the demo platform's file systems need a device, and no spaces in device, mount point or options";
      }
      {
        assertion = bootsFromDisk || notForBoot == [ ];
        message = "the demo platform mounts only file systems needed for boot, not ${toString (map (fs: fs.mountPoint) notForBoot)}";
      }
      {
        assertion = builtins.all (fs: fs.fsType == "virtiofs") lateMounts;
        message = "the demo platform's disk systems mount virtiofs file systems only after boot, not ${toString (map (fs: "${fs.mountPoint} (${fs.fsType})") (builtins.filter (fs: fs.fsType != "virtiofs") lateMounts))}";
      }
      {
        assertion = builtins.all (s: builtins.match "[A-Za-z0-9_.@-]+" s.name != null) services;
        message = "the demo platform's service names are [A-Za-z0-9_.@-]+";
      }
      {
        assertion = builtins.match "[A-Za-z0-9_.-]+" config.networking.hostName != null;
        message = "networking.hostName: [A-Za-z0-9_.-]+";
      }
    ];

    system.build.initialRamdisk =
      (if bootsFromDisk then diskBuilders.mkInitrd else builders.mkInitrd)
        { mounts = lib.concatMapStrings mountLine forBoot; };
    system.build.images = lib.mkIf bootsFromDisk (lib.mapAttrs
      (variant: format: diskBuilders.mkImage {
        name = config.networking.hostName;
        inherit (config.system.build) toplevel;
        size = diskSize variant;
        inherit format;
      })
      variants);

    # Disk systems' services (before every other one: see `order`).
    systemd.services = lib.mkIf bootsFromDisk {
      activate = {
        wantedBy = [ "multi-user.target" ];
        script = "/run/current-system/activate";
      };
      # QEMU's user networking (the NIC reconcile forwards SSH through) answers DHCP.
      network = {
        wantedBy = [ "multi-user.target" ];
        after = [ "activate.service" ];
        script = ''
          ip link set lo up
          if [ -e /sys/class/net/eth0 ]; then
            udhcpc -i eth0 -s ${diskBuilders.sw}/libexec/udhcpc.script -q -n -t 10 -T 1 ||
              echo "reconcile-network: no DHCP lease on eth0"
          else
            echo "reconcile-network: no eth0"
          fi
        '';
      };
      sshd = lib.mkIf ssh.enable {
        wantedBy = [ "multi-user.target" ];
        after = [ "activate.service" "network.service" ];
        # This guest's own host key, made at its first boot and kept on its disk.
        script = consoleLine + ''
          key=/etc/dropbear/dropbear_ed25519_host_key
          if [ ! -s "$key" ]; then
            rm -f "$key.tmp"
            dropbearkey -t ed25519 -f "$key.tmp" >/dev/null 2>&1
            mv -f "$key.tmp" "$key"
            sync
          fi
          set -- $(dropbearkey -y -f "$key" | grep '^ssh-ed25519 ')
          say "reconcile-ssh-host-key: $1 $2"
          dropbear -E -r "$key" -p 22 -P /run/dropbear.pid ${dropbearFlags}
          # Listening on port 22 (0x16) before the readiness line.
          tries=0
          until grep -q '^ *[0-9]*: [0-9A-F]*:0016 [0-9A-F]*:0000 0A ' /proc/net/tcp /proc/net/tcp6 2>/dev/null; do
            tries=$((tries + 1))
            [ "$tries" -lt 100 ] || { echo "reconcile-sshd: dropbear does not listen on port 22"; exit 1; }
            usleep 100000
          done
        '';
      };
      # Stage 2 of the file systems not needed for boot (virtiofs shares).
      reconcile-shares = lib.mkIf (lateMounts != [ ]) {
        wantedBy = [ "multi-user.target" ];
        after = [ "activate.service" "network.service" "sshd.service" ];
        before = [ "reconcile-ready.service" ];
        script = consoleLine + builtins.readFile ../disk/shares.sh;
      };
    };

    system.build.toplevel =
      if failed != [ ] then throw "failed assertions: ${lib.concatStringsSep "; " failed}"
      else builders.mkToplevel ({
        name = config.networking.hostName;
        inherit (config.networking) hostName;
        inherit (cfg) message switchBehaviour failBuild healthy switchDelay sshd probeShares;
        inherit (config.boot) kernelParams;
        inherit services;
        initrd = config.system.build.initialRamdisk;
        bootspec = config.boot.bootspec.enable;
      } // lib.optionalAttrs bootsFromDisk {
        inherit (diskBuilders) sw;
        extraEnv = {
          grubCfg = diskBuilders.grubCfg {
            name = config.networking.hostName;
            inherit (config.boot) kernelParams;
            initrd = config.system.build.initialRamdisk;
          };
          rootKeys = lib.concatMapStrings (k: k + "\n") rootKeys;
          shareMounts = lib.concatMapStrings mountLine lateMounts;
          # fuse and virtiofs for the shares (scripts/setup.sh), from the image.
          kernelModules = lib.optionalString (lateMounts != [ ]) (
            if builtins.pathExists "${disk.kernel}/stage-2-modules/order"
            then "${disk.kernel}/stage-2-modules"
            else throw "nix/bb/disk/kernel has no stage-2-modules (fuse, virtiofs) for ${config.networking.hostName}'s shares: run `make setup` (scripts/setup.sh)");
          nixConf = ''
            experimental-features = nix-command flakes
            build-users-group =
            sandbox = false
            substituters =
          '';
        };
        # Run last in the toplevel's builder (../lib.nix), `fill` and $b are its own.
        extraCommands = ''
          $b mkdir -p $out/libexec $out/etc/nix $out/etc/ssh/authorized_keys.d
          $b mv $out/bin/switch-to-configuration $out/libexec/switch-to-configuration-demo
          fill ${../disk/switch-to-configuration.sh} $out/bin/switch-to-configuration
          fill ${../disk/activate.sh} $out/activate
          $b rm $out/kernel
          $b ln -s ${diskBuilders.kernel} $out/kernel
          $b printf '%s' "$grubCfg" | $b sed -e "s|@out@|$out|g" > $out/etc/grub.cfg
          $b printf '%s' "$rootKeys" > $out/etc/ssh/authorized_keys.d/root
          $b printf '%s' "$nixConf" > $out/etc/nix/nix.conf
          $b printf '%s' "$shareMounts" > $out/etc/reconcile-shares
          if [ -n "$kernelModules" ]; then $b ln -s "$kernelModules" $out/kernel-modules; fi
        '';
      });
  };
}
