#include "python.h"

#include <atomic>
#include <cstdlib>

#include "host.h"
#include "pygrpc_ffi.h"

namespace pgf_host {

namespace {
std::atomic<bool> running{false};
std::atomic<bool> stopped{false};  // an interpreter is not started twice
}  // namespace

std::string StartPython(const std::string& venv, const std::string& sys_path,
                        const std::vector<std::string>& modules, size_t max_queued_calls) {
  if (running.load()) return "Python is already running in this process";
  if (stopped.load()) return "Python was stopped in this process; it is not started again";
  // The same bound for async handlers' calls waiting for the event loop,
  // which never wait for a worker (pygrpc_ffi/_runtime/loop_calls.py reads it).
  setenv("PYGRPC_FFI_MAX_QUEUED_CALLS", std::to_string(max_queued_calls).c_str(), 1);
  if (pgf_python_start(venv.empty() ? nullptr : venv.c_str(),
                       sys_path.empty() ? nullptr : sys_path.c_str()) != PGF_OK) {
    return pgf_python_error();
  }
  running.store(true);
  for (const std::string& m : modules) {
    std::string error = ImportPythonModule(m);
    if (!error.empty()) {
      running.store(false);
      stopped.store(true);
      pgf_python_stop();
      return error;
    }
  }
  return "";
}

std::string ImportPythonModule(const std::string& module) {
  if (!running.load()) return "Python is not running";
  if (pgf_python_import(module.c_str()) != PGF_OK) return pgf_python_error();
  return "";
}

bool PythonRunning() { return running.load(); }

void StopPython() {
  if (!running.exchange(false)) return;
  stopped.store(true);
  // A late release (gRPC may drop a slice at any time) must not take the
  // GIL while, or after, Py_FinalizeEx runs.
  StopPythonUsers();
  pgf_python_stop();
}

}  // namespace pgf_host
