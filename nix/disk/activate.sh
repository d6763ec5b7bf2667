#!@out@/sw/bin/sh
# Activation of the demo disk system @name@ (NixOS's toplevel/activate): run at boot (the
# `activate` service, first) and by switch-to-configuration switch|test. Idempotent.
# First boot of an image (/nix-path-registration is there, as on NixOS's images), last
# (nix wants root's passwd entry): own the files the image builder made (uid 1000 in its
# sandbox), register the image's store paths in this guest's Nix database and make this
# system the profile's first generation.
toplevel=@out@
export PATH=$toplevel/sw/bin
set -e
umask 022

# The files a login needs (root's shell, dropbear's account lookup), root's keys, Nix's
# configuration; the commands on PATH of an SSH session (dropbear sets a fixed PATH,
# /usr/sbin:/usr/bin:...) follow the current system.
mkdir -p /etc/nix /etc/dropbear /root/.ssh /usr /var/tmp /nix/var/nix/profiles /run/reconcile
chmod 0700 /root /root/.ssh
[ -e /etc/passwd ] || echo 'root:x:0:0:root:/root:/bin/sh' >/etc/passwd
[ -e /etc/group ] || echo 'root:x:0:' >/etc/group
echo /bin/sh >/etc/shells
cp "$toplevel/etc/nix/nix.conf" /etc/nix/nix.conf.tmp && mv -f /etc/nix/nix.conf.tmp /etc/nix/nix.conf
cp "$toplevel/etc/ssh/authorized_keys.d/root" /root/.ssh/authorized_keys.tmp
chmod 0600 /root/.ssh/authorized_keys.tmp
mv -f /root/.ssh/authorized_keys.tmp /root/.ssh/authorized_keys
[ -e /bin/sh ] || ln -sfn "$toplevel/sw/bin/sh" /bin/sh
for dir in /usr/bin /usr/sbin; do
  if [ ! -L "$dir" ]; then
    rm -rf "$dir"
    ln -s /run/current-system/sw/bin "$dir"
  fi
done
if ! grep -q '^[^ ]* /dev/pts ' /proc/mounts; then
  mkdir -p /dev/pts
  mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts || true
fi

if [ -e /nix-path-registration ]; then
  echo "reconcile-activate: first boot: registering the image's store paths"
  chown 0:0 / /nix /nix/store /boot /boot/grub /boot/grub/grub.cfg
  chmod 1775 /nix/store
  # Without --hash-given Nix hashes the paths itself (and makes them root's, read-only).
  nix-store --register-validity </nix-path-registration
  nix-env -p /nix/var/nix/profiles/system --set "$toplevel" >/dev/null
  rm /nix-path-registration
  sync
fi
