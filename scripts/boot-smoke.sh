#!/usr/bin/env bash
# Boots a demo flake system for real: QEMU under TCG, the host's Debian kernel, the
# closure's initrd with an early-modules archive appended (virtio and virtiofs are modules
# in that kernel), the host /nix/store over virtiofs. Passes when the guest prints
# "reconcile-ready: <toplevel>" and "reconcile-store: read-only" on its serial console.
# Then (POWEROFF_CHECK=1, the default) a second boot also shares the kernel's modules
# (virtiofs tag `modules`) and checks that an ACPI power-button press powers the guest off.
#
# Environment: FLAKE_DIR (default: nix/ of this repository), SYSTEM (demo-a), KERNEL
# (/vmlinuz), KERNEL_RELEASE (from the kernel's file name), BOOT_TIMEOUT (90 s),
# EARLY_FIRST=1 (put the early archive before the system's initrd instead of after it),
# POWEROFF_CHECK (1), KEEP=1 (keep the work directory).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
flake_dir=$(cd "${FLAKE_DIR:-$repo/nix}" && pwd)
system=${SYSTEM:-demo-a}
kernel=${KERNEL:-/vmlinuz}
timeout_s=${BOOT_TIMEOUT:-90}
virtiofsd=${VIRTIOFSD:-/usr/lib/qemu/virtiofsd}
early_modules=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci fuse virtiofs)

say() { printf 'boot-smoke: %s\n' "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

if [[ -n ${KERNEL_RELEASE:-} ]]; then
  release=$KERNEL_RELEASE
else
  release=$(basename "$(readlink -f "$kernel")")
  release=${release#vmlinuz-}
  [[ -d /lib/modules/$release ]] || release=$(uname -r)
fi
modules_dir=/lib/modules/$release
[[ -d $modules_dir ]] || die "no $modules_dir for $kernel (set KERNEL_RELEASE)"

work=$(mktemp -d /tmp/boot-smoke.XXXXXX)
pids=()
cleanup() {
  local pid
  # QEMU first, then virtiofsd: it must outlive the guest.
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  pids=()
  if [[ ${KEEP:-0} == 1 ]]; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# 1. Build the closure (busybox is the builder; it is never committed).
if ! cmp -s /bin/busybox "$flake_dir/bb/busybox"; then
  install -D -m 0755 /bin/busybox "$flake_dir/bb/busybox"
fi
attr="nixosConfigurations.$system.config.system.build.toplevel"
t0=$(now)
json=$(nix build --no-link --json "path:$flake_dir#$attr")
say "built $attr in $(since "$t0") s"
toplevel=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])[0]["outputs"]["out"])' "$json")
initrd=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["org.nixos.bootspec.v1"]["initrd"])' \
  "$toplevel/boot.json")
init=$toplevel/init
say "toplevel $toplevel"

# 2. The early-modules archive (/early/order and /early/*.ko) joined to the system's initrd.
mkdir -p "$work/early/early"
: >"$work/early/early/order"
for module in "${early_modules[@]}"; do
  file=$(modinfo -k "$release" -F filename "$module") || die "module $module not found"
  [[ $file == *.ko ]] || die "$file: only uncompressed modules are handled here"
  cp "$file" "$work/early/early/$module.ko"
  echo "$module.ko" >>"$work/early/early/order"
done
(cd "$work/early" && find early | LC_ALL=C sort | busybox cpio -o -H newc 2>/dev/null) >"$work/early.cpio"
if [[ ${EARLY_FIRST:-0} == 1 ]]; then
  cat "$work/early.cpio" "$initrd" >"$work/initrd"
else
  cat "$initrd" "$work/early.cpio" >"$work/initrd"
fi

start_virtiofsd() { # start_virtiofsd TAG SOURCE: a read-only guest mount is the guest's part
  "$virtiofsd" --socket-path="$work/$1.sock" -o source="$2" -o cache=none \
    >"$work/virtiofsd-$1.log" 2>&1 &
  pids=("$!" "${pids[@]}")
  local _
  for _ in $(seq 100); do
    [[ -S $work/$1.sock ]] && return 0
    sleep 0.05
  done
  cat "$work/virtiofsd-$1.log" >&2
  die "virtiofsd for $1 did not make its socket"
}

qmp() { # qmp COMMAND: one QMP command on the guest's monitor socket
  python3 - "$work/qmp.sock" "$1" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()
for cmd in ("qmp_capabilities", sys.argv[2]):
    f.write(json.dumps({"execute": cmd}) + "\n")
    f.flush()
    while "return" not in (reply := json.loads(f.readline())) and "error" not in reply:
        pass
    if "error" in reply:
        sys.exit(f"qmp {cmd}: {reply['error']}")
PY
}

boot() { # boot NAME TAG...: start virtiofsd per tag and QEMU; sets log, qemu_pid
  local name=$1 tag
  shift
  log=$work/$name.log
  local args=(
    -accel tcg -m 512 -nographic -no-reboot
    -kernel "$kernel" -initrd "$work/initrd"
    -append "root=tmpfs console=ttyS0,115200 init=$init"
    -object memory-backend-memfd,id=mem,size=512M,share=on
    -machine q35,memory-backend=mem
    -serial "file:$log" -display none -monitor none
    -qmp "unix:$work/qmp.sock,server=on,wait=off"
  )
  for tag in "$@"; do
    case $tag in
      store) start_virtiofsd store /nix/store ;;
      modules) start_virtiofsd modules /lib/modules ;;
    esac
    args+=(-chardev "socket,id=fs-$tag,path=$work/$tag.sock"
      -device "vhost-user-fs-pci,chardev=fs-$tag,tag=$tag")
  done
  rm -f "$work/qmp.sock"
  : >"$log"
  qemu-system-x86_64 "${args[@]}" </dev/null >"$work/qemu-$name.out" 2>&1 &
  qemu_pid=$!
  pids=("$qemu_pid" "${pids[@]}")
}

fail_boot() {
  say "FAILED: $*"
  say "serial console (last 40 lines of $log):"
  tail -n 40 "$log" >&2 || true
  say "qemu said:"
  cat "$work"/qemu-*.out >&2 || true
  exit 1
}

wait_ready() { # wait_ready: until the readiness line, bounded; fail fast on known failures
  local t0 deadline
  t0=$(now)
  deadline=$((SECONDS + timeout_s))
  while ! grep -qF "reconcile-ready: $toplevel" "$log"; do
    grep -qE 'Kernel panic|reconcile-initrd: error:' "$log" && fail_boot "the guest failed to boot"
    kill -0 "$qemu_pid" 2>/dev/null || fail_boot "QEMU exited"
    ((SECONDS < deadline)) || fail_boot "no readiness line after ${timeout_s} s"
    sleep 0.2
  done
  say "ready after $(since "$t0") s (QEMU start to readiness line, TCG)"
}

# 3. Boot as specified: the store share only.
boot store-only store
wait_ready
grep -q '^reconcile-store: read-only' "$log" || fail_boot "the store is writable from the guest"
say "guest: $(grep -m1 '^reconcile-store:' "$log")"
grep -q "reconcile-initrd: no virtiofs tag 'modules'" "$log" ||
  fail_boot "the initrd did not carry on without a modules share"
cleanup_one() {
  kill "$qemu_pid" 2>/dev/null || true
  wait "$qemu_pid" 2>/dev/null || true
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  pids=()
}
cleanup_one

# 4. With the modules share: an ACPI power-button press powers the guest off.
if [[ ${POWEROFF_CHECK:-1} == 1 ]]; then
  boot with-modules store modules
  wait_ready
  grep -q "reconcile-initrd: mounted virtiofs tag 'modules'" "$log" ||
    fail_boot "the modules share was not mounted"
  grep -q '^reconcile-acpi: the power button powers off' "$log" ||
    fail_boot "no ACPI power button in the guest"
  t0=$(now)
  qmp system_powerdown || fail_boot "system_powerdown failed"
  for _ in $(seq 150); do
    kill -0 "$qemu_pid" 2>/dev/null || break
    sleep 0.2
  done
  kill -0 "$qemu_pid" 2>/dev/null && fail_boot "the guest did not power off within 30 s of the power button"
  say "powered off $(since "$t0") s after the ACPI power button"
  cleanup_one
fi
say "OK: $system booted ($toplevel)"
