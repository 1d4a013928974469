#!/usr/bin/env bash
# Installs the arm64 route from Debian's packages (what `make check-aarch64`
# needs on a fresh x86-64 Debian 12 machine): the arm64 architecture,
# Debian's rustc with its arm64 standard library (rustup's toolchain has
# none here), the cross C compiler and its C library, and QEMU's user-mode
# emulator. libstd-rust-web-dev:arm64 also brings the multiarch arm64 C
# library (/lib/ld-linux-aarch64.so.1), which dynamically linked arm64
# programs with threads need under QEMU 7.2 (the cross toolchain's own
# under /usr/aarch64-linux-gnu hangs in the first pthread_create there).
set -euo pipefail
need=()
[ -x /usr/bin/rustc ] || need+=(rustc-web)
[ -d /usr/lib/rustlib/aarch64-unknown-linux-gnu ] || need+=(libstd-rust-web-dev:arm64)
command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu)
[ -f /usr/aarch64-linux-gnu/include/stdio.h ] || need+=(libc6-dev-arm64-cross)
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
# The asmjit engine (integrations/asmjit) for arm64: the cross C++ compiler
# and Debian's arm64 asmjit (Multi-Arch: same, beside the amd64 one).
command -v aarch64-linux-gnu-g++ >/dev/null || need+=(g++-aarch64-linux-gnu)
[ -f /usr/lib/aarch64-linux-gnu/libasmjit.a ] || need+=(libasmjit-dev:arm64)
if [ ${#need[@]} -gt 0 ]; then
  echo "aarch64 deps: installing ${need[*]}"
  dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
