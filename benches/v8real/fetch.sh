#!/usr/bin/env bash
# Extracts V8 15.2's code pointer table sources from the `v8` crate 152.2.0
# (crates.io; it vendors V8's source tree under v8/) into OUT/v8, fetching
# the crate with cargo if it is not in cargo's cache yet. Only these five
# files are extracted; nothing of V8 is committed to wcpt.
set -euo pipefail
out=${1:?usage: fetch.sh OUTDIR}
ver=152.2.0
files=(src/wasm/wasm-code-pointer-table.h src/wasm/wasm-code-pointer-table-inl.h
       src/wasm/wasm-code-pointer-table.cc src/common/segmented-table.h src/common/segmented-table-inl.h)
if [ -f "$out/v8/${files[2]}" ]; then exit 0; fi
cache="${CARGO_HOME:-$HOME/.cargo}/registry/cache"
find_crate() { ls "$cache"/*/v8-$ver.crate 2>/dev/null | head -1 || true; }
crate=$(find_crate)
if [ -z "$crate" ]; then
  # A throwaway package that depends on the crate: `cargo fetch` downloads it
  # (and its dependencies' sources, which are small) without building it.
  mkdir -p "$out/fetch/src"
  printf '[package]\nname = "v8-fetch"\nversion = "0.0.0"\nedition = "2021"\npublish = false\n\n[workspace]\n\n[dependencies]\nv8 = "=%s"\n' "$ver" > "$out/fetch/Cargo.toml"
  : > "$out/fetch/src/lib.rs"
  cargo fetch --quiet --manifest-path "$out/fetch/Cargo.toml"
  crate=$(find_crate)
fi
[ -n "$crate" ] || { echo "fetch.sh: v8-$ver.crate not found after cargo fetch" >&2; exit 1; }
mkdir -p "$out" && rm -rf "$out/v8-$ver"
tar -xzf "$crate" -C "$out" "${files[@]/#/v8-$ver/v8/}"
rm -rf "$out/v8" && mv "$out/v8-$ver/v8" "$out/v8" && rm -rf "$out/v8-$ver"
echo "fetch.sh: V8 $ver table sources in $out/v8 (from $(basename "$crate"))"
