#!/usr/bin/env bash
# Brings a fresh Debian 12 machine (root, no systemd) to where `reconcile` and its tests
# run against the real stack. Idempotent and quick when everything is in place.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  libvirt-daemon-system libvirt-clients libvirt-dev pkg-config
  qemu-system-x86 qemu-utils openssh-server openssh-client busybox-static nix-bin
  linux-image-amd64 git iproute2 cpio gzip
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
