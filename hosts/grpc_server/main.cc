// pygrpc_ffi_server: a gRPC C++ server that routes every method to the
// pygrpc_ffi default registry.  Options, startup and shutdown live here.
#include <grpcpp/grpcpp.h>
#ifdef PGF_HAVE_ABSL_SYNC
#include <absl/synchronization/mutex.h>
#endif
#include <grpcpp/resource_quota.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include "host.h"
#include "memory_budget.h"
#include "native_echo.h"
#include "options.h"
#include "pygrpc_ffi.h"
#include "reactor.h"
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
// Server::Shutdown waiting forever) or if a second signal asks to stop now.
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

int Run(const Options& opts) {
  // Block the stop signals before any thread exists (gRPC's, Python's, ours)
  // so they all inherit the mask and only sigwait below ever sees them.
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
#ifdef PGF_HAVE_ABSL_SYNC
  // absl builds without NDEBUG (Debian's) check every absl::Mutex, which
  // gRPC uses throughout, for lock-order cycles: bookkeeping on each lock,
  // unlock and destruction (~2-5 % of the host's CPU under load).  Release
  // builds of absl do not; neither does the host.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
  Host& host = GetHost();
  host.registry = pgf_default_registry();
  host.max_metadata_bytes = static_cast<size_t>(opts.max_metadata_bytes);
  host.max_queued_calls = static_cast<size_t>(opts.max_queued_calls);
  // What calls hold (their state, Python tasks included, and their messages)
  // is counted against --max-memory-bytes; beyond it new calls are refused
  // and writes wait (memory_budget.h).
  HostBudget().SetLimit(static_cast<size_t>(opts.max_memory_bytes));
  // The same bound for async handlers' calls waiting for the event loop,
  // which never wait for a worker (pygrpc_ffi/_loop_calls.py reads it).
  setenv("PYGRPC_FFI_MAX_QUEUED_CALLS", std::to_string(opts.max_queued_calls).c_str(), 1);

  for (const std::string& svc : opts.native_echo) {
    int rc = RegisterNativeEcho(host.registry, svc);
    if (rc != PGF_OK) {
      return Fail(false, "--native-echo " + svc + ": " + pgf_strerror(rc));
    }
  }
  for (const std::string& svc : opts.native_unary_echo) {
    int rc = RegisterNativeUnaryEcho(host.registry, svc);
    if (rc != PGF_OK) {
      return Fail(false, "--native-unary-echo " + svc + ": " + pgf_strerror(rc));
    }
  }
  for (const std::string& svc : opts.native_server_stream) {
    int rc = RegisterNativeServerStream(host.registry, svc);
    if (rc != PGF_OK) {
      return Fail(false, "--native-server-stream " + svc + ": " + pgf_strerror(rc));
    }
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

  // Never deleted: a late gRPC event during exit may still Post to a
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

  GenericService generic;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(opts.listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterCallbackGenericService(&generic);
  builder.SetMaxReceiveMessageSize(opts.max_message_size);
  builder.SetMaxSendMessageSize(opts.max_message_size);
  builder.SetCompressionAlgorithmSupportStatus(GRPC_COMPRESS_DEFLATE, true);
  builder.SetCompressionAlgorithmSupportStatus(GRPC_COMPRESS_GZIP, true);
  // Without --reuse-port a second server on the same port fails to bind
  // instead of silently sharing it.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, opts.reuse_port ? 1 : 0);
  // Per connection; beyond it the client's new streams wait (or are refused).
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, opts.max_concurrent_streams);
  // gRPC 1.51 enforces this only once the client has ACKed our SETTINGS;
  // the reactor enforces it again for every call (reactor.cc).
  builder.AddChannelArgument(GRPC_ARG_MAX_METADATA_SIZE, opts.max_metadata_bytes);
  // Connections: keepalive finds dead peers; pings are policed; idle and old
  // connections are closed, so nothing a client opens (half-open streams
  // included) is held forever.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, opts.keepalive_time_ms);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, opts.keepalive_timeout_ms);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS,
                             opts.keepalive_permit_without_calls ? 1 : 0);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             opts.min_ping_interval_ms);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, opts.max_ping_strikes);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS, opts.max_connection_idle_ms);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, opts.max_connection_age_ms);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                             opts.max_connection_age_grace_ms);
  // No BDP probing: with it gRPC grows a stream's receive window to several
  // MiB (measured: 4-5.5 MiB accepted per stream whose handler never
  // reads); without it a stream takes one HTTP/2 window (64 KiB) ahead of
  // its handler's reads.  grpcio_server.py does the same for grpcio.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  // What gRPC may allocate for connections and calls (buffers, streams).
  grpc::ResourceQuota quota("pygrpc_ffi_server");
  quota.Resize(static_cast<size_t>(opts.max_memory_bytes));
  builder.SetResourceQuota(quota);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    server.reset();
    workers.Stop();
    streams.Stop();
    service.Stop();
    return Fail(python, "cannot listen on " + opts.listen);
  }

  std::printf("listening on %s\n", BoundAddress(opts.listen, port).c_str());
  std::fflush(stdout);

  int sig = 0;
  sigwait(&sigs, &sig);

  std::atomic<bool> stopped{false};
  std::thread watchdog(Watchdog, &sigs, opts.grace_seconds + 10.0, &stopped);

  // In-flight calls get the grace period; then gRPC cancels them, and
  // Shutdown returns once every reactor is done.
  auto deadline = std::chrono::system_clock::now() +
                  std::chrono::milliseconds(static_cast<int64_t>(opts.grace_seconds * 1000));
  server->Shutdown(deadline);
  server.reset();
  // Nothing dispatches any more; finish what is queued.
  workers.Stop();
  streams.Stop();
  // gRPC may drop its last slice references (and so release payloads)
  // shortly after the server is gone.
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

}  // namespace
}  // namespace pgf_host

int main(int argc, char** argv) {
  pgf_host::Options opts;
  std::string message;
  int code = 0;
  if (!pgf_host::ParseOptions(argc, argv, &opts, &message, &code)) {
    std::fputs(message.c_str(), code == 0 ? stdout : stderr);
    return code;
  }
  return pgf_host::Run(opts);
}
