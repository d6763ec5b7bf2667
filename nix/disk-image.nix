# What the demo platform adds for systems that boot from their own disk (the disk backend):
# the guest's commands (busybox, Debian's nix and dropbear), the disk initrd, GRUB's menu
# and the bootable image. Every binary is Debian's, copied from the host by
# scripts/setup.sh into bb/disk/ (gitignored) and imported by flake.nix (`disk`): dynamic
# ones run through their own ld-linux with --library-path, in the sandbox and the guest.
{ bb, system, disk, builders }:
let
  inherit (builders) run busybox;
  # `ld BUNDLE`: the command prefix that runs BUNDLE/bin/* with BUNDLE/lib.
  ld = dir: "${dir}/lib/ld-linux-x86-64.so.2 --library-path ${dir}/lib";
in
rec {
  # The guest's `sw`: busybox's applets, Debian's nix (one wrapper per command: nix picks
  # its command from argv[0]), dropbear, and `setsid -f` (util-linux's: always fork, what
  # reconcile's deploy detaches activations with; busybox's setsid has no -f). `sh` is
  # Debian's static bash: busybox's sh runs its own applets before PATH's commands, so
  # reconcile's `sh -c 'setsid -f ...'` would never reach the wrapper.
  sw = run "demo-disk-sw" { } ''
    set -e
    b=${bb}
    $b mkdir -p $out/bin $out/libexec
    for applet in $($b --list); do
      $b ln -s ${busybox}/bin/busybox $out/bin/$applet
    done
    wrap() { # NAME BUNDLE BINARY: $out/bin/NAME runs BUNDLE/bin/BINARY as NAME
      $b rm -f $out/bin/$1
      $b printf '#!%s\nexec %s --argv0 %s %s "$@"\n' \
        ${busybox}/bin/sh "${ld "$2"}" "$1" "$2/bin/$3" > $out/bin/$1
      $b chmod 0555 $out/bin/$1
    }
    for cmd in nix nix-store nix-env nix-daemon nix-build nix-instantiate \
      nix-collect-garbage nix-copy-closure nix-hash; do
      wrap $cmd ${disk.nix} nix
    done
    wrap dropbear ${disk.dropbear} dropbear
    wrap dropbearkey ${disk.dropbear} dropbearkey
    $b rm $out/bin/sh
    $b ln -s ${disk.bash}/bin/bash $out/bin/sh
    $b ln -s ${disk.bash}/bin/bash $out/bin/bash
    $b rm $out/bin/setsid
    $b cat > $out/bin/setsid <<'SETSID'
    #!${busybox}/bin/sh
    if [ "$1" = -f ]; then shift; ${busybox}/bin/setsid "$@" & exit 0; fi
    exec ${busybox}/bin/setsid "$@"
    SETSID
    $b sed -i 's/^    //' $out/bin/setsid
    $b chmod 0555 $out/bin/setsid
    $b sed -e "s|@busybox@|${busybox}|g" ${./disk/udhcpc.sh} > $out/libexec/udhcpc.script
    $b chmod 0555 $out/libexec/udhcpc.script
  '';

  # Stage 1 of a disk system: busybox, ./disk/stage-1.sh as /init, the mount table (the
  # root file system) and the kernel's modules with their load order (scripts/setup.sh
  # took them, dependencies first, from modinfo), a gzip-compressed newc cpio.
  mkInitrd = { mounts }: run "reconcile-demo-disk-initrd" { inherit mounts; } ''
    set -e
    b=${bb}
    $b mkdir -p root/bin root/dev root/etc root/proc root/sys root/sysroot root/tmp root/run root/lib $out
    $b cp $b root/bin/busybox
    for applet in $($b --list); do
      [ -e root/bin/$applet ] || $b ln -s busybox root/bin/$applet
    done
    $b cp -r ${disk.kernel}/modules root/lib/modules
    $b cp ${./disk/stage-1.sh} root/init
    $b printf '%s' "$mounts" > root/etc/reconcile-mounts
    $b chmod -R u+w root
    $b chmod 0755 root/init root/bin/busybox
    cd root
    $b find . | $b sort | $b cpio -o -H newc | $b gzip -9 > $out/initrd
  '';

  kernel = "${disk.kernel}/bzImage";

  # GRUB's configuration for a system: no menu, straight to its kernel and initrd (paths in
  # the store on the root file system, GRUB's $root). `@out@` is the toplevel.
  grubCfg = { name, kernelParams, initrd }: ''
    serial --unit=0 --speed=115200
    terminal_output serial console
    echo "reconcile-grub: booting ${name}"
    linux ${kernel} init=@out@/init ${builtins.concatStringsSep " " kernelParams}
    initrd ${initrd}/initrd
    boot
  '';

  # A bootable disk of `size` MiB holding `toplevel`'s closure: an MBR with partition 1 from
  # 1 MiB to the end, an ext4 file system (label `nixos`, made by mke2fs -d straight into
  # the partition's place in the file) with the closure, /boot/grub/grub.cfg (the
  # toplevel's etc/grub.cfg) and /nix-path-registration (the closure's references, which
  # the first boot registers: ./disk/activate.sh), and GRUB i386-pc in the MBR gap (boot.img
  # in the first 440 bytes, core.img from sector 1, its modules built in: no /boot/grub/
  # i386-pc needed). `format`: "raw" (NAME.img) or "qcow2" (NAME.qcow2).
  mkImage = { name, toplevel, size, format }:
    run "nixos-disk-image-${name}-${format}" {
      inherit size format;
      imageName = name;
      exportReferencesGraph = [ "closure" toplevel ];
      MKE2FS_CONFIG = ./disk/mke2fs.conf;
    } ''
      set -e
      b=${bb}
      t=${disk.tools}
      tool() { x=$1; shift; ${ld disk.tools} "$t/bin/$x" "$@"; }
      [ "$size" -ge 64 ] || { echo "disk image: $size MiB is too small" >&2; exit 1; }

      # The file system's contents: the closure, GRUB's menu, the registration.
      $b mkdir -p root/nix/store root/boot/grub
      $b awk 'state == 0 { print; state = 1; next }
              state == 1 { state = 2; next }
              state == 2 { left = $1; state = left ? 3 : 0; next }
              state == 3 { if (--left == 0) state = 0 }' closure > paths
      for p in $($b cat paths); do $b cp -a "$p" root/nix/store/; done
      $b cp closure root/nix-path-registration
      $b cp ${toplevel}/etc/grub.cfg root/boot/grub/grub.cfg
      $b chmod -R u+w root/boot root/nix-path-registration

      # The disk: sparse, partition 1 = sectors 2048..end (type 0x83, active).
      sectors=$((size * 2048))
      $b truncate -s $((size * 1024 * 1024)) disk.img
      oct() { $b printf '\\%03o' $(( ($1 >> $2) & 255 )); }
      le32() { echo "$(oct $1 0)$(oct $1 8)$(oct $1 16)$(oct $1 24)"; }
      # status 0x80, CHS 0/32/33, type 0x83, CHS "beyond", first sector, sector count
      entry="\200\000\040\041\203\376\377\377$(le32 2048)$(le32 $((sectors - 2048)))"
      $b printf "$entry" | $b dd of=disk.img bs=1 seek=446 conv=notrunc 2>/dev/null
      $b printf '\125\252' | $b dd of=disk.img bs=1 seek=510 conv=notrunc 2>/dev/null

      tool mke2fs -q -F -t ext4 -L nixos -d root -E offset=1048576,root_owner=0:0 \
        disk.img $(( (size - 1) * 1024 ))k

      tool grub-mkimage -O i386-pc -d $t/grub/i386-pc -o core.img \
        -p '(hd0,msdos1)/boot/grub' \
        biosdisk part_msdos ext2 normal boot linux echo serial terminal
      [ $($b wc -c < core.img) -lt $(( 2047 * 512 )) ] || { echo "core.img does not fit" >&2; exit 1; }
      $b dd if=$t/grub/i386-pc/boot.img of=disk.img bs=440 count=1 conv=notrunc 2>/dev/null
      $b dd if=core.img of=disk.img bs=512 seek=1 conv=notrunc 2>/dev/null

      $b mkdir $out
      if [ "$format" = qcow2 ]; then
        tool qemu-img convert -f raw -O qcow2 disk.img "$out/$imageName.qcow2"
      else
        $b mv disk.img "$out/$imageName.img"
      fi
    '';
}
