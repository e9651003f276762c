// A C handler that answers every method of a service with the request bytes:
// the ceiling the host reaches without Python, for benchmarks.
#pragma once

#include <string>

#include "pygrpc_ffi.h"

namespace pgf_host {

// Registers the echo for every method of service.  Returns a PGF_* code.
int RegisterNativeEcho(pgf_registry* reg, const std::string& service);

// True while the echo handler finishes a call on this thread, that is inside
// the done callback it triggers (pgf_call_finish runs it synchronously).
// The echo's response points into the request bytes with a no-op release:
// the reactor sends a new reference to the request's slice instead (no copy;
// the reactor's own request buffer may die before gRPC has written the
// answer, the slice reference does not) and, seeing this flag, runs the
// no-op release inline rather than queueing it.
bool NativeEchoAnswering();

}  // namespace pgf_host
