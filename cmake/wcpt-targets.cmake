# Imported targets SHARED and STATIC (names given by the caller) for a source
# tree ROOT built by `make lib`
# (target/release, include/). Shared by cmake/wcptConfig.cmake (a build tree
# found with CMAKE_PREFIX_PATH) and the top-level CMakeLists.txt
# (add_subdirectory, FetchContent). The archive's system libraries are the
# ones rustc reported for it (build/native-static-libs.txt, written by make).
function(wcpt_define_targets root version shared static)
  string(REGEX MATCH "^([0-9]+)\\.([0-9]+)" _mm "${version}")
  if(CMAKE_MATCH_1 EQUAL 0)
    set(sover "0.${CMAKE_MATCH_2}")
  else()
    set(sover "${CMAKE_MATCH_1}")
  endif()
  set(libs "pthread;dl;m;rt;util;gcc_s;c")
  if(EXISTS "${root}/build/native-static-libs.txt")
    file(READ "${root}/build/native-static-libs.txt" libs)
    string(STRIP "${libs}" libs)
    string(REPLACE "-l" "" libs "${libs}")
    string(REPLACE " " ";" libs "${libs}")
  endif()
  if(NOT TARGET ${shared})
    add_library(${shared} SHARED IMPORTED GLOBAL)
    set_target_properties(${shared} PROPERTIES
      IMPORTED_LOCATION "${root}/target/release/libwcpt.so"
      IMPORTED_SONAME "libwcpt.so.${sover}"
      INTERFACE_INCLUDE_DIRECTORIES "${root}/include")
  endif()
  if(NOT TARGET ${static})
    add_library(${static} STATIC IMPORTED GLOBAL)
    set_target_properties(${static} PROPERTIES
      IMPORTED_LOCATION "${root}/target/release/libwcpt.a"
      INTERFACE_INCLUDE_DIRECTORIES "${root}/include"
      INTERFACE_LINK_LIBRARIES "${libs}")
  endif()
endfunction()
