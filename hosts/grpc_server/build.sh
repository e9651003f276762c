#!/bin/sh
# Configures and builds the hosts (Release) into <repo>/build/grpc_server --
# pygrpc_ffi_server, pygrpc_ffi_grpcpp_server where grpc++ is found, and the
# bench's builds of both (bench/host/) -- and prints the product binary's
# path.  Needs libpygrpc_ffi.so: make -C csrc first.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out="$repo/build/grpc_server"
cmake -S "$here" -B "$out" -DCMAKE_BUILD_TYPE=Release >&2
cmake --build "$out" -j "$(nproc)" >&2
echo "$out/pygrpc_ffi_server"
