// The main routine of every host: start-up and shutdown, the same for all
// of them (the stop signals, the parent watch, the ABI check, the
// process-wide state of host.h, Python, the worker pools, the "listening on"
// line and the graceful stop).  A host binary brings its transport (the
// network side) and a main() that calls HostMain (h2/main.cc,
// grpcpp/main.cc).
#pragma once

#include <functional>
#include <string>

#include "options.h"
#include "pygrpc_ffi.h"

namespace pgf_host {

// The network side of a host: nghttp2's (h2/) or gRPC C++'s (grpcpp/).
class Transport {
 public:
  virtual ~Transport() = default;
  // Binds opts.listen and serves; *port is the port bound.  False with
  // *error set when it cannot.
  virtual bool Start(const Options& opts, int* port, std::string* error) = 0;
  // Takes no new calls; those in flight get grace_seconds, then are
  // cancelled.  Returns once every call ended.
  virtual void Shutdown(double grace_seconds) = 0;
};

// Registers handlers that need no Python, before Python starts.  Returns ""
// or what went wrong (the host then exits 2 with it).
using RegisterHandlers = std::function<std::string(pgf_registry* registry)>;

// Serves until SIGINT or SIGTERM; returns the process's exit code.
int Serve(const Options& opts, Transport* transport,
          const RegisterHandlers& register_handlers = nullptr);

// main() of a host: parses argv (printing the usage on --help or an error)
// and serves.
int HostMain(int argc, char** argv, Transport* transport);

}  // namespace pgf_host
