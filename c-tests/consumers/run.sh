#!/usr/bin/env bash
# Consumer tests against a DESTDIR install: usage run.sh STAGE PREFIX SO
# (STAGE is the DESTDIR, PREFIX the install prefix, SO the built library).
# LIB is the libdir under PREFIX (lib, lib64, lib/x86_64-linux-gnu); for
# any but lib only the layout-dependent consumers run.
set -u
stage=$1 prefix=$2 so=$3
root="$stage$prefix"
lib=${LIB:-lib}
libd="$root/$lib"
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
passed=0 failed=0
ok() { echo "  ok   $1"; passed=$((passed + 1)); }
bad() { echo "  FAIL $1"; failed=$((failed + 1)); }
try() { local name=$1; shift; if "$@" > "$out/log" 2>&1; then ok "$name"; else bad "$name"; sed 's/^/    /' "$out/log"; fi; }

export PKG_CONFIG_SYSROOT_DIR="$stage" PKG_CONFIG_LIBDIR="$libd/pkgconfig"

exports_only_wcpt() {
  # Functions and data: only wcpt_*; the one absolute symbol is the version.
  local other
  other=$(nm -D --defined-only "$so" | awk '$2 != "A" {print $3}' | grep -v '^wcpt_')
  [ -z "$other" ] || { echo "exported: $other"; return 1; }
}
exports_versioned() {
  # Every export is wcpt_x@@WCPT_<SOVER>, and a program linked against the
  # library records that it needs the version.
  local syms unversioned
  syms=$(readelf --dyn-syms -W "$libd/libwcpt.so.$VERSION" | awk '$5 == "GLOBAL" && $7 != "UND" {print $8}' | grep '^wcpt_')
  [ -n "$syms" ] || { echo "no wcpt_ exports"; return 1; }
  unversioned=$(echo "$syms" | grep -v "@@WCPT_$SOVER\$" || true)
  [ -z "$unversioned" ] || { echo "without the version WCPT_$SOVER: $unversioned"; return 1; }
  cc -std=c11 "$here/consumer.c" -o "$out/versioned" $(pkg-config --cflags --libs wcpt) &&
  readelf -V "$out/versioned" | grep -q "Name: WCPT_$SOVER"
}
soname_is_sover() {
  # libwcpt.so.0.MINOR while the major version is 0, then libwcpt.so.MAJOR.
  readelf -d "$libd/libwcpt.so.$VERSION" | grep -q "SONAME.*\[libwcpt.so.$SOVER\]" &&
  [ "$(readlink "$libd/libwcpt.so")" = "libwcpt.so.$SOVER" ] &&
  [ "$(readlink "$libd/libwcpt.so.$SOVER")" = "libwcpt.so.$VERSION" ]
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
header_constant_types() {
  cc -std=c11 -Wall -Wextra -Wformat=2 -pedantic -Werror -fsyntax-only -I"$root/include" "$here/constants.c" &&
  c++ -std=c++17 -Wall -Wextra -Wformat=2 -pedantic -Werror -fsyntax-only -I"$root/include" -x c++ "$here/constants.c"
}
header_c11() { echo '#include <wcpt.h>' | cc -std=c11 -Wall -Wextra -pedantic -Werror -fsyntax-only -I"$root/include" -x c -; }
header_cxx17() { echo '#include <wcpt.h>' | c++ -std=c++17 -Wall -Wextra -pedantic -Werror -fsyntax-only -I"$root/include" -x c++ -; }
hpp_alone() {
  # wcpt.hpp needs nothing included before it, with or without exceptions.
  echo '#include <wcpt.hpp>' | c++ -std=c++17 -Wall -Wextra -pedantic -Werror -fsyntax-only -I"$root/include" -x c++ - &&
  echo '#include <wcpt.hpp>' | c++ -std=c++17 -fno-exceptions -fno-rtti -Wall -Wextra -pedantic -Werror -fsyntax-only -I"$root/include" -x c++ -
}
pc_shared() {
  cc -std=c11 -Wall -Wextra -pedantic -Werror "$here/consumer.c" -o "$out/shared" $(pkg-config --cflags --libs wcpt) &&
  readelf -d "$out/shared" | grep -q "NEEDED.*\[libwcpt.so.$SOVER\]" &&
  LD_LIBRARY_PATH="$libd" "$out/shared"
}
pc_static() {
  # wcpt-static names the archive by path: under --no-as-needed (and with
  # ASan, which implies it) the program must still not need the .so.
  local libs
  libs=$(pkg-config --libs wcpt-static)
  echo "$libs" | grep -q -- '-lpthread' || { echo "no system libraries in: $libs"; return 1; }
  cc -std=c11 "$here/consumer.c" -o "$out/static" $(pkg-config --cflags wcpt-static) -Wl,--no-as-needed $libs &&
  ! readelf -d "$out/static" | grep -q 'NEEDED.*libwcpt' &&
  "$out/static" &&
  cc -std=c11 -fsanitize=address "$here/consumer.c" -o "$out/static-asan" $(pkg-config --cflags --libs wcpt-static) &&
  ! readelf -d "$out/static-asan" | grep -q 'NEEDED.*libwcpt' &&
  ASAN_OPTIONS=detect_leaks=0 "$out/static-asan"
}
static_libs_match_rustc() {
  # The Makefile's STATIC_LIBS (used by the tests) is what rustc reports.
  local pc
  pc=$(sed -n 's/^Libs.private: //p' "$libd/pkgconfig/wcpt.pc")
  [ "$pc" = "$STATIC_LIBS" ] || { echo "wcpt.pc Libs.private: '$pc' vs Makefile STATIC_LIBS: '$STATIC_LIBS'"; return 1; }
}
cxx17() {
  c++ -std=c++17 -Wall -Wextra -pedantic -Werror "$here/consumer.cpp" -o "$out/cxx" $(pkg-config --cflags --libs wcpt) &&
  LD_LIBRARY_PATH="$libd" "$out/cxx"
}
cmake_static_no_as_needed() {
  # wcpt::wcpt_static imports the archive by path: no NEEDED libwcpt even
  # under --no-as-needed.
  cmake -S "$here/cmake" -B "$out/cmake-nan" -DCMAKE_PREFIX_PATH="$root" -DCMAKE_EXE_LINKER_FLAGS=-Wl,--no-as-needed &&
  cmake --build "$out/cmake-nan" --target consumer_static &&
  ! readelf -d "$out/cmake-nan/consumer_static" | grep -q 'NEEDED.*libwcpt' &&
  "$out/cmake-nan/consumer_static"
}
src=$(cd "$here/../.." && pwd)
cmake_build_tree() {
  # find_package(wcpt) with CMAKE_PREFIX_PATH at a clone after make, no install.
  cmake -S "$here/cmake" -B "$out/cmake-tree" -DCMAKE_PREFIX_PATH="$src" &&
  cmake --build "$out/cmake-tree" &&
  "$out/cmake-tree/consumer_shared" && "$out/cmake-tree/consumer_static" &&
  cmake_configure "${VERSION%.*}" "$src"
}
cmake_subproject() { # $1: add_subdirectory or FetchContent (a local SOURCE_DIR)
  cmake -S "$here/cmake-subdir" -B "$out/cmake-$1" -DWCPT_SOURCE="$src" -DWCPT_HOW="$1" &&
  cmake --build "$out/cmake-$1" -j2 &&
  "$out/cmake-$1/consumer_shared" && "$out/cmake-$1/consumer_static" &&
  ! readelf -d "$out/cmake-$1/consumer_static" | grep -q 'NEEDED.*libwcpt'
}
cmake_add_subdirectory() { cmake_subproject add_subdirectory; }
cmake_fetchcontent() { cmake_subproject FetchContent; }
cmake_find_package() {
  # CMake finds lib/ and lib/<multiarch>/ under a prefix by itself; lib64
  # only where the platform uses it (not Debian), so there by wcpt_DIR.
  local dir=()
  [ "$lib" = lib64 ] && dir=(-Dwcpt_DIR="$libd/cmake/wcpt")
  cmake -S "$here/cmake" -B "$out/cmake" -DCMAKE_PREFIX_PATH="$root" "${dir[@]}" -DCMAKE_BUILD_TYPE=Release &&
  cmake --build "$out/cmake" &&
  LD_LIBRARY_PATH="$libd" "$out/cmake/consumer_shared" &&
  "$out/cmake/consumer_static"
}

libraries_whole_and_stripped() {
  # Not the 0-byte files a LIBDIR mix-up once installed; no debug info.
  [ -s "$libd/libwcpt.so.$VERSION" ] && [ -s "$libd/libwcpt.a" ] &&
  cmp -s "$libd/libwcpt.so.$VERSION" "$so" && { echo "the .so was not stripped"; return 1; }
  for f in "$libd/libwcpt.so.$VERSION" "$libd/libwcpt.a"; do
    [ -s "$f" ] || { echo "$f is empty"; return 1; }
    if readelf -S "$f" 2>/dev/null | grep -q '\.debug_info'; then echo "$f has debug info"; return 1; fi
  done
  echo "sizes: $(du -k "$libd/libwcpt.so.$VERSION" "$libd/libwcpt.a" | awk '{printf "%s KiB %s; ", $1, $2}')"
}
cmake_configure() { # a project(x NONE) asking for $1
  rm -rf "$out/cm"
  cmake -S "$here/cmake-none" -B "$out/cm" -DCMAKE_PREFIX_PATH="$2" -DWCPT_FIND="$1"
}
cmake_no_languages() { cmake_configure "${VERSION%.*}" "$root"; }
cmake_version_range() {
  local minor=${VERSION#*.}
  minor=${minor%%.*}
  cmake_configure "0.0.9...<0.$((minor + 1))" "$root" && cmake_configure "0.0.9...<1" "$root" &&
  ! cmake_configure "0.0.1...<0.0.5" "$root"
}
cmake_missing_library() {
  # A copy of the install without its shared library must not be found.
  rm -rf "$out/partial" && cp -a "$root" "$out/partial" &&
  rm "$out/partial/$lib/libwcpt.so.$VERSION" &&
  ! cmake_configure "${VERSION%.*}" "$out/partial" > "$out/missing.log" 2>&1 &&
  tr -s ' \n' ' ' < "$out/missing.log" | grep -q "libwcpt.so.$VERSION is missing" # CMake wraps lines
}

try "libraries installed whole and stripped" libraries_whole_and_stripped
if [ "$lib" != lib ]; then
  try "pkg-config consumer, shared ($lib)" pc_shared
  try "CMake find_package(wcpt) ($lib)" cmake_find_package
  rm -rf "$out"
  echo "test_install: $passed passed, $failed failed, 0 skipped"
  [ "$failed" -eq 0 ]
  exit
fi
try "exports only wcpt_* symbols" exports_only_wcpt
try "SONAME libwcpt.so.$SOVER and its symlinks" soname_is_sover
try "every export carries the symbol version WCPT_$SOVER" exports_versioned
try "header: every item documented" header_documented
try "header: C11 -Wall -Wextra -pedantic" header_c11
try "header: C++17 -Wall -Wextra -pedantic" header_cxx17
try "wcpt.hpp alone, C++17, with and without exceptions and RTTI" hpp_alone
try "header: every constant has its type (printf formats, #if on versions)" header_constant_types
try "pkg-config consumer, shared" pc_shared
try "pkg-config wcpt-static consumer under --no-as-needed and ASan: no NEEDED libwcpt" pc_static
try "Makefile STATIC_LIBS matches rustc's native-static-libs" static_libs_match_rustc
try "C++17 consumer" cxx17
if command -v cmake >/dev/null; then
  try "CMake find_package(wcpt) with wcpt::wcpt and wcpt::wcpt_static" cmake_find_package
  try "CMake wcpt::wcpt_static under --no-as-needed: no NEEDED libwcpt" cmake_static_no_as_needed
  try "CMake find_package from a project with no languages" cmake_no_languages
  try "CMake version ranges" cmake_version_range
  try "CMake: a missing library fails at configure time" cmake_missing_library
  try "CMake find_package from a build tree (CMAKE_PREFIX_PATH at a clone after make)" cmake_build_tree
  try "CMake add_subdirectory(wcpt)" cmake_add_subdirectory
  try "CMake FetchContent (local SOURCE_DIR)" cmake_fetchcontent
else
  bad "CMake consumer: cmake is not installed (.ci/run installs it)"
fi
rm -rf "$out"
echo "test_install: $passed passed, $failed failed, 0 skipped"
[ "$failed" -eq 0 ]
