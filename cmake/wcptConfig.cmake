# find_package(wcpt) from a build tree: CMAKE_PREFIX_PATH=<a clone after
# `make`> (CMake looks in <prefix>/cmake/). The installed package is
# packaging/wcptConfig.cmake.in.
get_filename_component(_wcpt_root "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
foreach(_wcpt_file "${_wcpt_root}/target/release/libwcpt.so" "${_wcpt_root}/target/release/libwcpt.a")
  if(NOT EXISTS "${_wcpt_file}")
    set(wcpt_FOUND FALSE)
    set(wcpt_NOT_FOUND_MESSAGE "the wcpt build tree ${_wcpt_root} is not built: run make there")
    unset(_wcpt_file)
    unset(_wcpt_root)
    return()
  endif()
endforeach()
unset(_wcpt_file)
include("${CMAKE_CURRENT_LIST_DIR}/wcpt-targets.cmake")
wcpt_define_targets("${_wcpt_root}" "${PACKAGE_VERSION}" wcpt::wcpt wcpt::wcpt_static)
set(wcpt_VERSION "${PACKAGE_VERSION}")
unset(_wcpt_root)
