#include "main.h"

#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "host.h"
#include "python.h"

namespace pgf_host {
namespace {

// The address as a client reaches it: the real port when ADDR asked for 0.
std::string BoundAddress(const std::string& addr, int port) {
  if (addr.rfind("unix:", 0) == 0 || addr.rfind("unix-abstract:", 0) == 0) return addr;
  size_t colon = addr.rfind(':');
  if (colon == std::string::npos || addr.back() == ']') return addr;
  return addr.substr(0, colon + 1) + std::to_string(port);
}

// Exits the process if shutdown hangs (a handler that never finishes keeps
// the transport's Shutdown waiting forever) or if a second signal asks to
// stop now.
void Watchdog(const sigset_t* sigs, double limit_seconds, const std::atomic<bool>* done) {
  auto until = std::chrono::steady_clock::now() +
               std::chrono::milliseconds(static_cast<int64_t>(limit_seconds * 1000));
  while (!done->load()) {
    timespec slice{0, 100 * 1000 * 1000};
    siginfo_t info;
    if (sigtimedwait(sigs, &info, &slice) > 0) {
      std::fprintf(stderr, "error: second signal during shutdown; exiting now\n");
      _exit(1);
    }
    if (std::chrono::steady_clock::now() > until) {
      std::fprintf(stderr,
                   "error: calls still running %.0f s after shutdown began; exiting\n",
                   limit_seconds);
      _exit(1);
    }
  }
}

int Fail(bool python_started, const std::string& message) {
  std::fprintf(stderr, "error: %s\n", message.c_str());
  if (python_started) StopPython();
  return 2;
}

}  // namespace

int Serve(const Options& opts, Transport* transport, const RegisterHandlers& register_handlers) {
  // Block the stop signals before any thread exists (the transport's,
  // Python's, ours) so they all inherit the mask and only sigwait below
  // ever sees them.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  if (opts.parent_pid != 0) {
    // The supervisor's death (even SIGKILL) sends us SIGTERM: a graceful
    // stop, so the port is free for its successor.  If it died before the
    // prctl, we were already reparented: stop now.
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 ||
        getppid() != static_cast<pid_t>(opts.parent_pid)) {
      std::fprintf(stderr, "error: the parent process %ld is gone\n", opts.parent_pid);
      return 2;
    }
  }

  if (pgf_abi_version() < PGF_ABI_VERSION) {
    return Fail(false, "libpygrpc_ffi implements ABI " + std::to_string(pgf_abi_version()) +
                           ", this server needs " + std::to_string(PGF_ABI_VERSION));
  }
  if (register_handlers) {
    std::string error = register_handlers(pgf_default_registry());
    if (!error.empty()) return Fail(false, error);
  }

  // --venv, --sys-path, --module (python.h; the gRPC C++ library's
  // pgf::grpc::StartPython is the same code).
  bool python = !opts.modules.empty();
  if (python) {
    std::string error = StartPython(opts.venv, opts.sys_path, opts.modules,
                                    static_cast<size_t>(opts.max_queued_calls));
    if (!error.empty()) return Fail(false, error);
  } else {
    // Async handlers registered by C code get the same queue bound.
    setenv("PYGRPC_FFI_MAX_QUEUED_CALLS", std::to_string(opts.max_queued_calls).c_str(), 1);
  }

  // The limits, the memory budget and the pools (host.h; the gRPC C++
  // library's PythonService starts them the same way).
  HostConfig config;
  config.workers = opts.workers;
  config.max_workers = opts.max_workers;
  config.batch_workers = opts.batch_workers;
  config.max_metadata_bytes = static_cast<size_t>(opts.max_metadata_bytes);
  config.max_queued_calls = static_cast<size_t>(opts.max_queued_calls);
  config.max_memory_bytes = static_cast<size_t>(opts.max_memory_bytes);
  StartHost(config);

  int port = 0;
  std::string error;
  if (!transport->Start(opts, &port, &error)) {
    StopHost();
    return Fail(python, error);
  }

  std::printf("listening on %s\n", BoundAddress(opts.listen, port).c_str());
  std::fflush(stdout);

  int sig = 0;
  sigwait(&sigs, &sig);

  if (python && !opts.stop_module.empty()) {
    std::string error = ImportPythonModule(opts.stop_module);
    if (!error.empty()) std::fprintf(stderr, "error: %s\n", error.c_str());
  }
  if (opts.drain_seconds > 0) {
    // Still serving while load balancers take the endpoint out; a second
    // signal ends the drain.
    auto ms = static_cast<int64_t>(opts.drain_seconds * 1000);
    timespec drain{static_cast<time_t>(ms / 1000), static_cast<long>(ms % 1000) * 1000000};
    siginfo_t info;
    sigtimedwait(&sigs, &info, &drain);
  }

  std::atomic<bool> stopped{false};
  std::thread watchdog(Watchdog, &sigs, opts.grace_seconds + 10.0, &stopped);

  // In-flight calls get the grace period; then they are cancelled, and
  // Shutdown returns once every call is done.
  transport->Shutdown(opts.grace_seconds);
  // Nothing dispatches any more: the pools finish what is queued and stop.
  StopHost();
  if (python) StopPython();
  stopped.store(true);
  watchdog.join();
  return 0;
}

int HostMain(int argc, char** argv, Transport* transport) {
  Options opts;
  std::string message;
  int code = 0;
  if (!ParseOptions(argc, argv, &opts, &message, &code)) {
    std::fputs(message.c_str(), code == 0 ? stdout : stderr);
    return code;
  }
  return Serve(opts, transport);
}

}  // namespace pgf_host
