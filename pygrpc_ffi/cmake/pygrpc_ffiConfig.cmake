# CMake package config of the installed pygrpc_ffi package:
#   find_package(pygrpc_ffi CONFIG REQUIRED)
#   target_link_libraries(my_host PRIVATE pygrpc_ffi::pygrpc_ffi)
# and, for a gRPC C++ server (docs/cxx_library.md):
#   find_package(pygrpc_ffi CONFIG REQUIRED COMPONENTS grpc)
#   target_link_libraries(my_server PRIVATE pygrpc_ffi::grpc)   # <pygrpc_ffi/grpc.hpp>
# Point CMake here with -Dpygrpc_ffi_DIR="$(python -m pygrpc_ffi config --cmakedir)"
# or CMAKE_PREFIX_PATH="$(python -m pygrpc_ffi config --prefix)".
# Paths are relative to this file, so the config follows the package wherever
# pip installed it.  Sets pygrpc_ffi_INCLUDE_DIR and pygrpc_ffi_LIBRARY_DIR too;
# the imported target carries an rpath to the package directory (the shim is
# loaded from there at run time, as the cffi module loads it).
get_filename_component(_pgf_pkg "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
set(pygrpc_ffi_INCLUDE_DIR "${_pgf_pkg}/include")
set(pygrpc_ffi_LIBRARY_DIR "${_pgf_pkg}")
set(pygrpc_ffi_LIBRARY "${_pgf_pkg}/libpygrpc_ffi.so")
if(NOT EXISTS "${pygrpc_ffi_LIBRARY}" OR NOT EXISTS "${pygrpc_ffi_INCLUDE_DIR}/pygrpc_ffi.h")
  set(pygrpc_ffi_FOUND FALSE)
  set(pygrpc_ffi_NOT_FOUND_MESSAGE
      "pygrpc_ffi: ${pygrpc_ffi_LIBRARY} or its header is missing (a broken install?)")
  return()
endif()
if(NOT TARGET pygrpc_ffi::pygrpc_ffi)
  add_library(pygrpc_ffi::pygrpc_ffi SHARED IMPORTED)
  set_target_properties(pygrpc_ffi::pygrpc_ffi PROPERTIES
    IMPORTED_LOCATION "${pygrpc_ffi_LIBRARY}"
    IMPORTED_SONAME "libpygrpc_ffi.so"
    INTERFACE_INCLUDE_DIRECTORIES "${pygrpc_ffi_INCLUDE_DIR}"
    INTERFACE_LINK_OPTIONS "LINKER:-rpath,${pygrpc_ffi_LIBRARY_DIR}")
endif()
# The component grpc: the C++ library pygrpc_ffi::grpc, compiled in the
# including project (its compiler and flags) from the sources the package
# ships (host_src), against the gRPC C++ pkg-config finds (grpc++).  No
# network, nothing prebuilt.
if("grpc" IN_LIST pygrpc_ffi_FIND_COMPONENTS AND NOT TARGET pygrpc_ffi::grpc)
  find_package(PkgConfig QUIET)
  if(PKG_CONFIG_FOUND)
    pkg_check_modules(_PGF_GRPCPP_PROBE QUIET grpc++)
  endif()
  set(_pgf_grpc_cmake "${_pgf_pkg}/host_src/grpcpp/pygrpc_ffi_grpc.cmake")
  if(NOT EXISTS "${_pgf_grpc_cmake}")
    set(pygrpc_ffi_grpc_FOUND FALSE)
    set(_pgf_grpc_why "${_pgf_grpc_cmake} is missing (a broken install?)")
  elseif(NOT _PGF_GRPCPP_PROBE_FOUND)
    set(pygrpc_ffi_grpc_FOUND FALSE)
    set(_pgf_grpc_why "it needs gRPC C++ found by pkg-config (grpc++; Debian: apt-get install pkg-config libgrpc++-dev libprotobuf-dev)")
  else()
    include("${_pgf_grpc_cmake}")
    pgf_add_grpc_library(pygrpc_ffi_grpc "${_pgf_pkg}/host_src" "${pygrpc_ffi_INCLUDE_DIR}"
                         pygrpc_ffi::pygrpc_ffi)
    add_library(pygrpc_ffi::grpc ALIAS pygrpc_ffi_grpc)
    set(pygrpc_ffi_grpc_FOUND TRUE)
  endif()
  if(NOT pygrpc_ffi_grpc_FOUND AND pygrpc_ffi_FIND_REQUIRED_grpc)
    set(pygrpc_ffi_FOUND FALSE)
    set(pygrpc_ffi_NOT_FOUND_MESSAGE
        "pygrpc_ffi: the component grpc (pygrpc_ffi::grpc): ${_pgf_grpc_why}")
  endif()
  unset(_pgf_grpc_cmake)
  unset(_pgf_grpc_why)
elseif(TARGET pygrpc_ffi::grpc)
  set(pygrpc_ffi_grpc_FOUND TRUE)
endif()
unset(_pgf_pkg)
