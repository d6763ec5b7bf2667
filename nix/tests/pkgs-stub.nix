# Stand-ins for the nixpkgs packages the modules name: derivation-shaped attribute sets
# (what lib.types.package accepts), so a package name that is not here fails evaluation.
let
  names = [
    "git" "vim" "gdb" "strace" "ltrace" "tmux" "htop" "file" "less"
    "gcc" "gnumake" "bc" "bison" "flex" "elfutils" "openssl" "pkg-config" "ncurses" "perl"
    "python3" "cpio" "zstd" "openssh" "qemu-utils" "nix" "util-linux"
    "xfstests" "xfsprogs" "e2fsprogs" "btrfs-progs" "fio" "reconcile"
  ];
  fake = name: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
  };
in
builtins.listToAttrs (map (name: { inherit name; value = fake name; }) names)
