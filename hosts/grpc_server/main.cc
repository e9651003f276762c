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
#include "memory_budget.h"
#include "worker_pool.h"

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
  if (python_started) pgf_python_stop();
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
  Host& host = GetHost();
  host.registry = pgf_default_registry();
  host.max_metadata_bytes = static_cast<size_t>(opts.max_metadata_bytes);
  host.max_queued_calls = static_cast<size_t>(opts.max_queued_calls);
  // What calls hold (their state, Python tasks included, and their messages)
  // is counted against --max-memory-bytes; beyond it new calls are refused
  // and writes wait (memory_budget.h).
  HostBudget().SetLimit(static_cast<size_t>(opts.max_memory_bytes));
  // The same bound for async handlers' calls waiting for the event loop,
  // which never wait for a worker (pygrpc_ffi/_runtime/loop_calls.py reads it).
  setenv("PYGRPC_FFI_MAX_QUEUED_CALLS", std::to_string(opts.max_queued_calls).c_str(), 1);

  if (register_handlers) {
    std::string error = register_handlers(host.registry);
    if (!error.empty()) return Fail(false, error);
  }

  bool python = !opts.modules.empty();
  if (python) {
    if (pgf_python_start(opts.venv.empty() ? nullptr : opts.venv.c_str(),
                         opts.sys_path.empty() ? nullptr : opts.sys_path.c_str()) != PGF_OK) {
      return Fail(false, pgf_python_error());
    }
    for (const std::string& m : opts.modules) {
      if (pgf_python_import(m.c_str()) != PGF_OK) return Fail(true, pgf_python_error());
    }
  }

  // Never deleted: a late transport event during exit may still Post to a
  // stopped pool (which refuses), so the objects must outlive everything.
  // Each publishes its queue and thread counts in the shim's metrics table.
  WorkerPool& workers =
      *new WorkerPool(opts.workers, opts.max_workers, "pgf-worker", PGF_POOL_HANDLERS,
                      opts.batch_workers);
  WorkerPool& service = *new WorkerPool(1, 1, "pgf-service", PGF_POOL_SERVICE);
  WorkerPool& streams =
      *new WorkerPool(2, 16, "pgf-stream", PGF_POOL_STREAMS, opts.batch_workers);
  host.workers = &workers;
  host.service = &service;
  host.streams = &streams;

  int port = 0;
  std::string error;
  if (!transport->Start(opts, &port, &error)) {
    workers.Stop();
    streams.Stop();
    service.Stop();
    return Fail(python, error);
  }

  std::printf("listening on %s\n", BoundAddress(opts.listen, port).c_str());
  std::fflush(stdout);

  int sig = 0;
  sigwait(&sigs, &sig);

  if (python && !opts.stop_module.empty() &&
      pgf_python_import(opts.stop_module.c_str()) != PGF_OK) {
    std::fprintf(stderr, "error: %s\n", pgf_python_error());
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
  // Nothing dispatches any more; finish what is queued.
  workers.Stop();
  streams.Stop();
  // gRPC C++ may drop its last slice references (and so release payloads)
  // shortly after its server is gone; the nghttp2 transport holds none.
  auto buffers_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (host.outstanding_buffers.load(std::memory_order_acquire) > 0 &&
         std::chrono::steady_clock::now() < buffers_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  service.Stop();

  if (python) {
    // A late release (gRPC may drop a slice at any time) must not take the
    // GIL while, or after, Py_FinalizeEx runs.
    StopPythonUsers();
    pgf_python_stop();
  }
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
