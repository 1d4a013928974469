#!/usr/bin/env bash
# Builds and runs a Rust program that depends on wcpt without the `capi`
# feature, in its own target folder (usage: run.sh TARGET_DIR), and checks
# that doing so built no cbindgen, no C library, and wrote nothing into the
# source folder.
set -u
target=$1
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
manifest="$here/Cargo.toml"
passed=0 failed=0
ok() { echo "  ok   $1"; passed=$((passed + 1)); }
bad() { echo "  FAIL $1"; failed=$((failed + 1)); }
before=$(cd "$root" && git status --porcelain --untracked-files=all -- include src 2>/dev/null)
rm -rf "$target"
if cargo build -q --manifest-path "$manifest" --target-dir "$target" && "$target/debug/wcpt-rust-consumer"; then
  ok "builds and runs"
else
  bad "builds and runs"
fi
if cargo tree -q --manifest-path "$manifest" --target-dir "$target" -e all 2>/dev/null | grep -q cbindgen; then
  bad "no cbindgen in its dependency tree"
else
  ok "no cbindgen in its dependency tree"
fi
libs=$(find "$target" -name 'libwcpt.so*' -o -name 'libwcpt.a' | head -3)
if [ -z "$libs" ]; then ok "no C library built"; else bad "no C library built: $libs"; fi
after=$(cd "$root" && git status --porcelain --untracked-files=all -- include src 2>/dev/null)
if [ "$before" = "$after" ]; then ok "nothing written into the source folder"; else bad "the source folder changed"; fi
echo "test_rust_dependent: $passed passed, $failed failed, 0 skipped"
[ "$failed" -eq 0 ]
