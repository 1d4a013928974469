#!/usr/bin/env bash
# Installs what `make check-cpp` and `make bench-asmjit` need and a fresh
# machine lacks: Debian's asmjit (libasmjit-dev) and a C++ compiler.
set -euo pipefail
need=()
[ -f /usr/include/asmjit/x86.h ] || need+=(libasmjit-dev)
command -v g++ >/dev/null || need+=(g++)
if [ ${#need[@]} -gt 0 ]; then
  echo "asmjit deps: installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
