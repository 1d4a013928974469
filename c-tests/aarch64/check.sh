#!/usr/bin/env bash
# `make check-aarch64`: the same library, tests and demo on AArch64 Linux,
# cross-built on this x86-64 machine and run under QEMU's user-mode
# emulator. Usage: check.sh OUTDIR C_TEST...
#
# - the Rust tests (unit, stress, fuzz replay, config, no-heap) through
#   cargo's runner;
# - libwcpt.a and libwcpt.so for arm64, then every C test against each
#   (static binaries, and dynamic ones on the multiarch arm64 C library),
#   test_dlopen, the asmjit engine's tests and the mini JIT demo (both emit
#   AArch64 code).
#
# QEMU runs arm64 code with x86's stronger memory ordering, so this checks
# arm64 code paths, not weak ordering: loom (C11 orderings) checks those.
# The tests that measure RLIMIT_DATA or RSS run with
# WCPT_TEST_INSTRUMENTED=1: under QEMU those count QEMU's own memory.
set -uo pipefail
out=${1:?usage: check.sh OUTDIR C_TEST...}
shift
tests=("$@")
cd "$(dirname "$0")/../.."
c-tests/aarch64/deps.sh || exit 1

T=aarch64-unknown-linux-gnu
TD=target/aarch64
export RUSTC=/usr/bin/rustc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64-static
CC=aarch64-linux-gnu-gcc
CFLAGS=(-std=c11 -D_GNU_SOURCE -Wall -Wextra -pedantic -Werror -O2 -g -Iinclude -Ic-tests -pthread)
mkdir -p "$out/static" "$out/shared" "$out/lib"
log=$out/log
failed=$out/failed
: > "$log"
rm -f "$failed"
run() { # name command...: runs, logs, remembers a failure
  local name=$1
  shift
  echo "-- $name" | tee -a "$log"
  "$@" 2>&1 | tee -a "$log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || echo "FAILED: $name" >> "$failed"
}

echo "== Rust tests for $T under qemu-aarch64"
# --tests: every test target but the doctests (compile_fail examples of the
# API, which rustdoc checks natively; Debian's arm64 std has no rustdoc).
run "cargo test ($T)" cargo test --release --features capi --target $T --target-dir $TD --tests

echo "== libwcpt.a and libwcpt.so for $T"
cargo rustc --release --lib --features capi --crate-type staticlib --target $T --target-dir $TD \
  -- --print native-static-libs 2> "$out/rustc.log" || { cat "$out/rustc.log"; exit 1; }
A=$TD/$T/release/libwcpt.a
LIBS=$(sed -n 's/.*native-static-libs: //p' "$out/rustc.log" | tail -1)
# -static links libgcc's unwinder itself (libgcc_eh); there is no static libgcc_s.
STATIC_LIBS=${LIBS//-lgcc_s/}
SOVER=${SOVER:?the Makefile passes SOVER}
printf 'WCPT_%s {\n  global:\n    wcpt_*;\n  local:\n    *;\n};\n' "$SOVER" > "$out/wcpt.map"
$CC -shared -o "$out/lib/libwcpt.so" -Wl,--whole-archive "$A" -Wl,--no-whole-archive \
  -Wl,--version-script="$out/wcpt.map" -Wl,-soname,libwcpt.so.$SOVER -Wl,--gc-sections -Wl,-z,relro,-z,now,-z,nodelete $LIBS \
  || exit 1
ln -sf libwcpt.so "$out/lib/libwcpt.so.$SOVER"

echo "== the C tests, static and shared, under qemu-aarch64"
emulated=" test_limits test_oom test_oom_recovery test_sweep_rss "
for t in "${tests[@]}"; do
  $CC "${CFLAGS[@]}" "c-tests/$t.c" -o "$out/static/$t" -static "$A" $STATIC_LIBS || { echo "FAILED: build $t" >> "$failed"; continue; }
  $CC "${CFLAGS[@]}" "c-tests/$t.c" -o "$out/shared/$t" -L"$out/lib" -lwcpt -Wl,-rpath,"$PWD/$out/lib" || { echo "FAILED: build shared $t" >> "$failed"; continue; }
  # Quick mode (loop counts / 20): every instruction is emulated.
  env=(WCPT_TEST_EMULATED=1 WCPT_TEST_QUICK=1 WCPT_TEST_EXEC_WRAPPER=/usr/bin/qemu-aarch64-static)
  [[ $emulated == *" $t "* ]] && env+=(WCPT_TEST_INSTRUMENTED=1)
  run "static/$t" env "${env[@]}" qemu-aarch64-static "$out/static/$t"
  run "shared/$t" env "${env[@]}" qemu-aarch64-static "$out/shared/$t"
done
$CC "${CFLAGS[@]}" c-tests/test_dlopen.c -o "$out/shared/test_dlopen" -ldl || echo "FAILED: build test_dlopen" >> "$failed"
run "shared/test_dlopen" env WCPT_TEST_EMULATED=1 WCPT_TEST_QUICK=1 qemu-aarch64-static "$out/shared/test_dlopen" "$PWD/$out/lib/libwcpt.so"

echo "== the asmjit engine (AArch64 code) under qemu-aarch64"
aarch64-linux-gnu-g++ -std=c++17 -O2 -Wall -Wextra -Werror -Iinclude integrations/asmjit/test_engine.cpp \
  -o "$out/test_engine" -static "$A" -lasmjit $STATIC_LIBS || echo "FAILED: build test_engine" >> "$failed"
run "static/test_engine" env WCPT_TEST_EMULATED=1 qemu-aarch64-static "$out/test_engine"

echo "== the mini JIT (AArch64 code) under qemu-aarch64"
$CC "${CFLAGS[@]}" examples/minijit.c -o "$out/minijit" -static "$A" $STATIC_LIBS || echo "FAILED: build minijit" >> "$failed"
if qemu-aarch64-static "$out/minijit" > "$out/minijit.out" 2>&1 && grep -q "AArch64 code called through wcpt" "$out/minijit.out"; then
  echo "test_minijit_aarch64: 1 passed, 0 failed, 0 skipped" | tee -a "$log"
else
  cat "$out/minijit.out"
  echo "FAILED: minijit" >> "$failed"
fi
c-tests/summary.sh "$log" "$failed" check-aarch64
