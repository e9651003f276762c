// C handlers for benchmarks and the host's stream tests: the ceilings the
// host reaches without Python.  Only pygrpc_ffi_bench_server (main.cc)
// registers them, through the public C ABI; the product host has none.
#pragma once

#include <string>

#include "pygrpc_ffi.h"

namespace pgf_bench {

// A C bidi echo for every method of service: every request message is
// written back as it arrives, and the status follows the client's
// half-close.  Registered as PGF_KIND_BIDI_STREAMING; a client may call its
// methods with any kind (unary, client or server stream, bidi: the wire
// format is the same).  Returns a PGF_* code, as the two below.
int RegisterNativeEcho(pgf_registry* reg, const std::string& service);

// A C unary echo for every method of service (PGF_KIND_UNARY): the answer is
// the request message's own bytes.  Through the host's unary path (one read,
// the answer and the status in one batch), the ceiling for unary calls.
int RegisterNativeUnaryEcho(pgf_registry* reg, const std::string& service);

// A C server stream for every method of service (PGF_KIND_SERVER_STREAMING):
// a request holding the decimal N (at most 2^40) is answered with N 16-byte
// messages, then OK; anything else with INVALID_ARGUMENT.  The ceiling of
// server streams, for benchmarks.
int RegisterNativeServerStream(pgf_registry* reg, const std::string& service);

}  // namespace pgf_bench
