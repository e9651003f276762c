# The C++ library pygrpc_ffi::grpc (include/pygrpc_ffi/grpc.hpp): the gRPC
# C++ glue of pygrpc_ffi_grpcpp_server (the reactor, the worker pools, the
# limits and the memory budget, Python start-up) as a static library that
# embedders link into their own gRPC C++ server.  Compiled from these
# sources against the gRPC C++ that pkg-config finds (grpc++), with the
# including project's compiler and flags.  Included by
# hosts/grpc_server/CMakeLists.txt (the source tree) and by the installed
# package's pygrpc_ffiConfig.cmake (the wheel's host_src): one list of
# sources for the host and the library.
#
#   pgf_add_grpc_library(TARGET HOST_DIR INCLUDE_DIR SHIM)
#     HOST_DIR     the folder of these sources (hosts/grpc_server, host_src)
#     INCLUDE_DIR  where pygrpc_ffi.h and pygrpc_ffi/grpc.hpp are
#     SHIM         what links libpygrpc_ffi.so (a target or a path)
function(pgf_add_grpc_library target host_dir include_dir shim)
  find_package(PkgConfig REQUIRED)
  find_package(Threads REQUIRED)
  pkg_check_modules(PGF_GRPCPP REQUIRED IMPORTED_TARGET grpc++)
  set(sources)
  foreach(src admission.cc host.cc memory_budget.cc worker_pool.cc python.cc
              grpcpp/reactor.cc grpcpp/bridge.cc grpcpp/python_service.cc)
    list(APPEND sources "${host_dir}/${src}")
  endforeach()
  add_library(${target} STATIC ${sources})
  target_compile_features(${target} PUBLIC cxx_std_17)
  set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE ON)
  target_include_directories(${target} PUBLIC "${include_dir}" PRIVATE "${host_dir}")
  target_compile_options(${target} PRIVATE -Wall -Wextra)
  target_link_libraries(${target} PUBLIC "${shim}" PkgConfig::PGF_GRPCPP Threads::Threads)
endfunction()
