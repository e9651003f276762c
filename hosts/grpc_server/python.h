// Embedded Python for every host and for the gRPC C++ library
// (include/pygrpc_ffi/grpc.hpp): what --venv, --sys-path and --module do,
// and the stop that keeps late buffer releases out of a finalizing
// interpreter.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace pgf_host {

// Starts the interpreter (venv "" : the shim's own venv; sys_path "" : none)
// and imports modules in order.  Async handlers' calls waiting for the
// event loop are bounded by max_queued_calls (read by Python at import,
// pygrpc_ffi/_runtime/loop_calls.py).  Returns "" or what went wrong; on a
// failed import Python is stopped again.  Once per process: after a stop it
// refuses.
std::string StartPython(const std::string& venv, const std::string& sys_path,
                        const std::vector<std::string>& modules, size_t max_queued_calls);

// Imports one more module: "" or Python's error.
std::string ImportPythonModule(const std::string& module);

// Whether StartPython succeeded and StopPython has not run.
bool PythonRunning();

// Marks Python as stopping (StopPythonUsers), then finalizes it.  On the
// thread that started it, after the pools stopped.  No-op if not running.
void StopPython();

}  // namespace pgf_host
