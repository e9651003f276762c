// A C handler that answers every method of a service with the request bytes:
// the ceiling the host reaches without Python, for benchmarks.
#pragma once

#include <string>

#include "pygrpc_ffi.h"

namespace pgf_host {

// Registers the echo for every method of service.  Returns a PGF_* code.
int RegisterNativeEcho(pgf_registry* reg, const std::string& service);

// The release function of an echo response.  The response points into the
// request bytes, which the reactor owns but which may die before gRPC has
// sent the answer; the reactor recognises this function and sends a new
// reference to the request's own grpc::Slice instead (no copy, and the
// bytes live exactly as long as gRPC needs them).  Does nothing itself.
void NativeEchoRelease(void* ctx);

}  // namespace pgf_host
