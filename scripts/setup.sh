#!/usr/bin/env bash
# Brings a fresh Debian 12 machine (root, no systemd) to where `reconcile` and its tests
# run against the real stack. Idempotent and quick when everything is in place.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  libvirt-daemon-system libvirt-clients libvirt-dev pkg-config
  qemu-system-x86 qemu-utils openssh-server openssh-client busybox-static nix-bin
  linux-image-amd64 git iproute2 cpio gzip
  grub-pc-bin dropbear-bin e2fsprogs bash-static  # the demo disk images (nix/disk-image.nix)
  dnsmasq-base  # libvirt's default network (DHCP) for disk guests on it
  linux-source bc bison flex libelf-dev libssl-dev xz-utils build-essential
  chromium
  zsh fish ansible-core  # the completion scripts and the Ansible inventory are checked in them
)

say() { printf 'setup: %s\n' "$*" >&2; }

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
  say "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# Nix without network: flakes on, no substituters, builds as root, sandboxed.
mkdir -p /etc/nix
if ! grep -q '^# reconcile' /etc/nix/nix.conf 2>/dev/null; then
  say "writing /etc/nix/nix.conf"
  cat >/etc/nix/nix.conf <<'CONF'
# reconcile: offline Nix for the demo lab and the tests
experimental-features = nix-command flakes
substituters =
build-users-group =
sandbox = true
CONF
fi

# No systemd here: start the libvirt daemons by hand when they are not answering.
if ! virsh -c qemu:///system list >/dev/null 2>&1; then
  say "starting virtlogd and libvirtd"
  pgrep -x virtlogd >/dev/null || virtlogd -d
  pgrep -x libvirtd >/dev/null || libvirtd -d
  for _ in $(seq 50); do virsh -c qemu:///system list >/dev/null 2>&1 && break; sleep 0.2; done
  virsh -c qemu:///system list >/dev/null
fi

# The demo flake's builder: a static busybox, copied in at build time, never committed.
if [[ -d nix ]] && ! cmp -s /bin/busybox nix/bb/busybox 2>/dev/null; then
  install -D -m 0755 /bin/busybox nix/bb/busybox
fi

# The demo disk systems' inputs (nix/disk-image.nix), in nix/bb/ (gitignored, never
# committed): Debian's kernel and the modules its disk initrd loads; the image tools;
# nix and dropbear for the guest. Each dynamic binary goes with the libraries ldd names
# and the loader, which runs it in the sandbox and the guest. Each directory is made
# anew in a temporary one and replaces the old only when different, so the flake's store
# paths change only when the host's files do.
bundle() { # DIR FILE...: FILE in DIR/bin, its libraries and ld-linux in DIR/lib
  local dir=$1 file lib
  shift
  mkdir -p "$dir/bin" "$dir/lib"
  for file in "$@"; do
    install -m 0755 "$file" "$dir/bin/"
    for lib in $(ldd "$file" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\/.*ld-linux/ { print $1 }'); do
      install -m 0755 "$lib" "$dir/lib/"
    done
  done
}
modules_in_order() { # RELEASE MODULE...: the modules and their dependencies, dependencies first
  local release=$1 module dep
  shift
  for module in "$@"; do
    for dep in $(modinfo -k "$release" -F depends "$module" | tr ',' ' '); do
      modules_in_order "$release" "$dep"
    done
    echo "$module"
  done
}
place() { # NAME: replace nix/bb/NAME by $new when different
  if ! diff -r -q "$new" "nix/bb/$1" >/dev/null 2>&1; then
    say "updating nix/bb/$1"
    rm -rf "nix/bb/$1"
    mkdir -p "$(dirname "nix/bb/$1")"
    mv "$new" "nix/bb/$1"
  else
    rm -rf "$new"
  fi
}
if [[ -d nix ]]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  release=$(basename "$(ls /boot/vmlinuz-* | sort -V | tail -n 1)")
  release=${release#vmlinuz-}
  new=$work/kernel
  mkdir -p "$new/modules"
  cp /boot/vmlinuz-"$release" "$new/bzImage"
  echo "$release" >"$new/release"
  # ext4 (and crc32c for its checksums), the virtio disk and NIC, the ACPI power button.
  modules_in_order "$release" crc32c_generic ext4 virtio_pci virtio_blk virtio_net \
    virtio_rng evdev button | awk '!seen[$0]++' >"$work/order"
  while read -r module; do
    file=$(modinfo -k "$release" -n "$module")
    cp "$file" "$new/modules/"
    basename "$file"
  done <"$work/order" >"$new/modules/order"
  # virtiofs shares (nix/disk/shares.sh): fuse and virtiofs, loaded at stage 2 from the
  # image when a system has shares, so not in the initrd; what stage 1 loaded is left out.
  mkdir -p "$new/stage-2-modules"
  modules_in_order "$release" fuse virtiofs |
    awk 'NR == FNR { loaded[$0]; next } !($0 in loaded) && !seen[$0]++' "$work/order" - |
    while read -r module; do
      file=$(modinfo -k "$release" -n "$module")
      cp "$file" "$new/stage-2-modules/"
      basename "$file"
    done >"$new/stage-2-modules/order"
  place disk/kernel
  new=$work/tools
  bundle "$new" /usr/sbin/mke2fs /usr/bin/qemu-img /usr/bin/grub-mkimage
  mkdir -p "$new/grub"
  cp -r /usr/lib/grub/i386-pc "$new/grub/"
  place disk/tools
  new=$work/nix
  bundle "$new" /usr/bin/nix
  # nix dlopens the DNS resolver (a stub in glibc 2.36), warning when it cannot.
  install -m 0755 /lib/x86_64-linux-gnu/libnss_dns.so.2 "$new/lib/"
  place disk/nix
  new=$work/dropbear
  bundle "$new" /usr/sbin/dropbear /usr/bin/dropbearkey
  place disk/dropbear
  new=$work/bash
  mkdir -p "$new/bin"
  install -m 0755 /bin/bash-static "$new/bin/bash"
  place disk/bash
fi

# The controller's demo SSH key pair, which the demo disk systems authorize for root
# (nix/bb/authorized_keys, read by nix/flake.nix).
demo_key=/var/lib/reconcile/demo-ssh/id_ed25519
if [[ ! -f $demo_key ]]; then
  say "generating the demo SSH key $demo_key"
  mkdir -p -m 0700 "$(dirname "$demo_key")"
  ssh-keygen -q -t ed25519 -N '' -C reconcile-demo -f "$demo_key"
fi
if [[ -d nix ]] && ! cmp -s "$demo_key.pub" nix/bb/authorized_keys; then
  install -m 0644 "$demo_key.pub" nix/bb/authorized_keys
fi

# The demo flake's one input, nixpkgs' lib (its systems are evaluated with the module
# system): nix/flake.lock pins it to the copy vendored in ../shared/vendor, by hash. Put that
# copy in the store under the name and hash the lock names, so that no evaluation of the
# flake (reconcile's own `nix build path:...` included) ever tries to fetch it, and keep it
# there with a GC root.
vendored_lib=../shared/vendor/nixpkgs-lib
if [[ -d nix && -f $vendored_lib/flake.nix ]]; then
  vendored_lib=$(realpath "$vendored_lib")
  locked=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["nodes"]["nixpkgs-lib"]["locked"]["narHash"])' nix/flake.lock)
  if [[ "$(nix hash path "$vendored_lib")" != "$locked" ]]; then
    say "warning: $vendored_lib does not hash to nix/flake.lock's $locked: the demo flake will try to fetch it"
  else
    lib_path=$(nix eval --impure --raw --expr "builtins.path { path = $vendored_lib; name = \"source\"; }")
    mkdir -p /nix/var/nix/gcroots
    [[ "$(readlink /nix/var/nix/gcroots/reconcile-nixpkgs-lib 2>/dev/null)" == "$lib_path" ]] ||
      ln -sfn "$lib_path" /nix/var/nix/gcroots/reconcile-nixpkgs-lib
  fi
fi

# The venv, rebuilt when pyproject.toml changes.
stamp=.venv/.pyproject.sha256
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [[ ! -x .venv/bin/python || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  say "installing the Python environment in .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q -U pip
  .venv/bin/pip install -q -e '.[test]'
  echo "$want" >"$stamp"
fi
# reconcile's bytecode, as an installed package has it. Where PYTHONDONTWRITEBYTECODE is
# set (this project's machines set it) Python would compile every one of its modules from
# source on each run: about 70 ms of every command. Stale files are never used (Python
# checks each source's mtime and size), so this only has to run after changes.
.venv/bin/python -m compileall -q reconcile
