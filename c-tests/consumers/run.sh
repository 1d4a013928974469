#!/usr/bin/env bash
# Consumer tests against a DESTDIR install: usage run.sh STAGE PREFIX SO
# (STAGE is the DESTDIR, PREFIX the install prefix, SO the built library).
set -u
stage=$1 prefix=$2 so=$3
root="$stage$prefix"
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
passed=0 failed=0
ok() { echo "  ok   $1"; passed=$((passed + 1)); }
bad() { echo "  FAIL $1"; failed=$((failed + 1)); }
try() { local name=$1; shift; if "$@" > "$out/log" 2>&1; then ok "$name"; else bad "$name"; sed 's/^/    /' "$out/log"; fi; }

export PKG_CONFIG_SYSROOT_DIR="$stage" PKG_CONFIG_LIBDIR="$root/lib/pkgconfig"

exports_only_wcpt() {
  local other
  other=$(nm -D --defined-only "$so" | awk '{print $3}' | grep -v '^wcpt_')
  [ -z "$other" ] || { echo "exported: $other"; return 1; }
}
soname_is_major() {
  readelf -d "$root/lib/libwcpt.so.$VERSION" | grep -q "SONAME.*\[libwcpt.so.${VERSION%%.*}\]" &&
  [ "$(readlink "$root/lib/libwcpt.so")" = "libwcpt.so.${VERSION%%.*}" ] &&
  [ "$(readlink "$root/lib/libwcpt.so.${VERSION%%.*}")" = "libwcpt.so.$VERSION" ]
}
header_documented() {
  # Every #define, enum, typedef, struct field and prototype must directly
  # follow the end of a doc comment (the line before it ends with "*/").
  awk '
    /^#define WCPT_[A-Z_]+ / || /^(enum|typedef struct) / || /^[a-z_ ]+\*?wcpt_[a-z_]+\(/ || /^  [a-z_]+ [a-z_]+;$/ || /^  WCPT_[A-Z_]+ = / {
      if (prev !~ /\*\/$/) { print FILENAME ":" NR ": undocumented: " $0; bad = 1 }
    }
    { prev = $0 }
    END { exit bad }' "$root/include/wcpt.h"
}
header_c11() { echo '#include <wcpt.h>' | cc -std=c11 -Wall -Wextra -pedantic -Werror -fsyntax-only -I"$root/include" -x c -; }
header_cxx17() { echo '#include <wcpt.h>' | c++ -std=c++17 -Wall -Wextra -pedantic -Werror -fsyntax-only -I"$root/include" -x c++ -; }
pc_shared() {
  cc -std=c11 -Wall -Wextra -pedantic -Werror "$here/consumer.c" -o "$out/shared" $(pkg-config --cflags --libs wcpt) &&
  readelf -d "$out/shared" | grep -q 'NEEDED.*libwcpt.so.0' &&
  LD_LIBRARY_PATH="$root/lib" "$out/shared"
}
pc_static() {
  # --static adds Libs.private; -Bstatic picks libwcpt.a over the .so.
  local libs
  libs=$(pkg-config --static --libs wcpt)
  echo "$libs" | grep -q -- '-lpthread' || { echo "no Libs.private in: $libs"; return 1; }
  cc -std=c11 "$here/consumer.c" -o "$out/static" $(pkg-config --cflags wcpt) \
     -Wl,--as-needed -Wl,-Bstatic -lwcpt -Wl,-Bdynamic $libs &&
  ! readelf -d "$out/static" | grep -q 'NEEDED.*libwcpt' &&
  "$out/static"
}
static_libs_match_rustc() {
  # The Makefile's STATIC_LIBS (used by the tests) is what rustc reports.
  local pc
  pc=$(sed -n 's/^Libs.private: //p' "$root/lib/pkgconfig/wcpt.pc")
  [ "$pc" = "$STATIC_LIBS" ] || { echo "wcpt.pc Libs.private: '$pc' vs Makefile STATIC_LIBS: '$STATIC_LIBS'"; return 1; }
}
cxx17() {
  c++ -std=c++17 -Wall -Wextra -pedantic -Werror "$here/consumer.cpp" -o "$out/cxx" $(pkg-config --cflags --libs wcpt) &&
  LD_LIBRARY_PATH="$root/lib" "$out/cxx"
}
cmake_find_package() {
  cmake -S "$here/cmake" -B "$out/cmake" -DCMAKE_PREFIX_PATH="$root" -DCMAKE_BUILD_TYPE=Release &&
  cmake --build "$out/cmake" &&
  LD_LIBRARY_PATH="$root/lib" "$out/cmake/consumer_shared" &&
  "$out/cmake/consumer_static"
}

try "exports only wcpt_* symbols" exports_only_wcpt
try "SONAME libwcpt.so.MAJOR and its symlinks" soname_is_major
try "header: every item documented" header_documented
try "header: C11 -Wall -Wextra -pedantic" header_c11
try "header: C++17 -Wall -Wextra -pedantic" header_cxx17
try "pkg-config consumer, shared" pc_shared
try "pkg-config --static consumer" pc_static
try "Makefile STATIC_LIBS matches rustc's native-static-libs" static_libs_match_rustc
try "C++17 consumer" cxx17
if command -v cmake >/dev/null; then
  try "CMake find_package(wcpt) with wcpt::wcpt and wcpt::wcpt_static" cmake_find_package
else
  bad "CMake consumer: cmake is not installed (.ci/run installs it)"
fi
rm -rf "$out"
echo "test_install: $passed passed, $failed failed, 0 skipped"
[ "$failed" -eq 0 ]
