#!/usr/bin/env bash
# Runs test programs in a QEMU guest whose emulated CPU has protection keys
# (TCG, -cpu max), on Debian's cloud kernel, from an initramfs that holds
# the programs and every shared library they load. Used by `make check-pkeys`.
#
#   c-tests/pkeys/vm.sh OUTDIR 'NAME ENV... -- PROGRAM ARGS...' ...
#
# Each quoted spec names one run: NAME, then environment assignments, then
# `--`, then the program (a path in this tree) and its arguments. Paths are
# kept as they are under /w in the guest, so $ORIGIN rpaths still resolve.
# Writes OUTDIR/console.log and OUTDIR/failed (one line per failed run) and
# exits non-zero if the guest did not report on every run.
#
# Installs qemu-system-x86, busybox-static and cpio with apt-get where they
# are missing, and fetches the kernel package with `apt-get download` once
# (cached in OUTDIR/kernel; nothing is installed from it).
set -euo pipefail
out=$1
shift
mkdir -p "$out"
out=$(cd "$out" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
tree=$(cd "$here/../.." && pwd)

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" > /dev/null
}
need=()
command -v qemu-system-x86_64 > /dev/null || need+=(qemu-system-x86)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v cpio > /dev/null || need+=(cpio)
if [ ${#need[@]} -gt 0 ]; then
  echo "pkeys-vm: installing ${need[*]}"
  apt_install "${need[@]}"
fi

# The kernel: Debian's cloud image has CONFIG_X86_INTEL_MEMORY_PROTECTION_KEYS,
# a built-in 8250 serial console, devtmpfs and initramfs support.
kdir=$out/kernel
if ! ls "$kdir"/boot/vmlinuz-* > /dev/null 2>&1; then
  rm -rf "$kdir"
  mkdir -p "$kdir"
  pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
  if [ -z "$pkg" ]; then
    apt-get update -qq
    apt_updated=1
    pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
  fi
  echo "pkeys-vm: fetching $pkg"
  (cd "$kdir" && apt-get download -qq "$pkg" 2> /dev/null && dpkg-deb -x ./*.deb . && rm -f ./*.deb)
fi
kernel=$(ls "$kdir"/boot/vmlinuz-* | head -1)

# The initramfs: busybox, the programs, their libraries, and an init that
# runs each program and reports its exit status on the serial console.
root=$out/root
rm -rf "$root"
mkdir -p "$root"/{bin,proc,sys,dev,tmp,w}
cp /bin/busybox "$root/bin/busybox"
copy_with_libs() { # a file, kept at its path (absolute, or under /w)
  local src=$1 dst=$2
  mkdir -p "$(dirname "$root$dst")"
  cp -L "$src" "$root$dst"
  ldd "$src" 2> /dev/null | grep -o '/[^ ]*' | while read -r lib; do
    [ -e "$root$lib" ] && continue
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
}
{
  echo '#!/bin/busybox sh'
  echo '/bin/busybox --install -s /bin'
  echo 'mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev'
  echo 'echo "pkeys-vm: cpu flags: $(grep -o -w -E "pku|ospke" /proc/cpuinfo | sort -u | tr "\n" " ")"'
  echo 'cd /w'
} > "$root/init"
for spec in "$@"; do
  read -r -a words <<< "$spec"
  name=${words[0]}
  envs=()
  i=1
  while [ "${words[$i]}" != "--" ]; do envs+=("${words[$i]}"); i=$((i + 1)); done
  prog=${words[$((i + 1))]}
  args=("${words[@]:$((i + 2))}")
  copy_with_libs "$tree/$prog" "/w/$prog"
  for a in "${args[@]}"; do
    if [ -f "$tree/$a" ]; then copy_with_libs "$tree/$a" "/w/$a"; fi
  done
  echo "echo '== pkeys-vm: run $name'"
  echo "env ${envs[*]} timeout 300 ./$prog ${args[*]}; echo \"== pkeys-vm: $name exit \$?\""
done >> "$root/init"
# The .so next to the programs, under its SONAME too.
for so in "$tree"/target/release/libwcpt.so*; do
  [ -e "$so" ] && copy_with_libs "$so" "/w/target/release/$(basename "$so")"
done
{
  echo "echo '== pkeys-vm: done'"
  echo 'poweroff -f'
} >> "$root/init"
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc 2> /dev/null | gzip -1 > "$out/initrd.gz")

echo "pkeys-vm: booting $(basename "$kernel") under TCG with -cpu max"
timeout 1200 qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m 1024 -nographic -no-reboot \
  -kernel "$kernel" -initrd "$out/initrd.gz" \
  -append "console=ttyS0 quiet loglevel=3 panic=-1" < /dev/null 2>&1 \
  | tr -d '\r' | tee "$out/console.log" | grep -v -e '^\s*$' -e 'iPXE' -e 'Booting from' || true

: > "$out/failed"
for spec in "$@"; do
  name=${spec%% *}
  rc=$(sed -n "s/^== pkeys-vm: $name exit \([0-9]*\)$/\1/p" "$out/console.log" | tail -1)
  if [ -z "$rc" ]; then
    echo "FAILED: $name (no report from the guest)" >> "$out/failed"
  elif [ "$rc" != 0 ]; then
    echo "FAILED: $name (exit $rc)" >> "$out/failed"
  fi
done
grep -q '^== pkeys-vm: done$' "$out/console.log" || echo "FAILED: the guest did not finish" >> "$out/failed"
grep -q 'cpu flags: .*pku' "$out/console.log" || echo "FAILED: the guest CPU has no pku" >> "$out/failed"
[ ! -s "$out/failed" ]
