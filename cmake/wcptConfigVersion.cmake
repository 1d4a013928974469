# Version check for find_package(wcpt) from a build tree (a clone after
# `make`): the version is Cargo.toml's, the rules are the installed
# package's (packaging/wcptConfigVersion.cmake.in, included as it is).
file(STRINGS "${CMAKE_CURRENT_LIST_DIR}/../Cargo.toml" _wcpt_line REGEX "^version = \"[0-9.]+\"" LIMIT_COUNT 1)
string(REGEX REPLACE "^version = \"([0-9.]+)\".*" "\\1" WCPT_TREE_VERSION "${_wcpt_line}")
include("${CMAKE_CURRENT_LIST_DIR}/../packaging/wcptConfigVersion.cmake.in")
unset(WCPT_TREE_VERSION)
unset(_wcpt_line)
