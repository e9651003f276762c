# CMake package config of the installed pygrpc_ffi package:
#   find_package(pygrpc_ffi CONFIG REQUIRED)
#   target_link_libraries(my_host PRIVATE pygrpc_ffi::pygrpc_ffi)
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
unset(_pgf_pkg)
