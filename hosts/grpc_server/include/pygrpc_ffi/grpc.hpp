// pygrpc_ffi/grpc.hpp -- Python request handlers inside your own gRPC C++
// server (the C++ library pygrpc_ffi::grpc, pkg-config pygrpc_ffi_grpc).
//
// A C++ server with its own grpc::ServerBuilder and compiled services adds
// one generic service, PythonService: gRPC C++ routes a method to a typed
// (compiled) service when one is registered for it, and every other method
// to the generic service, which serves it through the pygrpc_ffi registry
// (handlers that imported Python modules registered, or C handlers
// registered through pygrpc_ffi.h).  Every RPC kind is served (unary,
// client, server and bidi streaming), with the flow control, limits, worker
// pool and memory budget of the gRPC C++ host pygrpc_ffi_grpcpp_server,
// which is built on this same library.
//
//   pgf::grpc::StartPython({/*venv=*/"", /*sys_path=*/"/srv/handlers",
//                           /*modules=*/{"my_handlers"}});   // throws pgf::grpc::Error
//   {
//     MyTypedService typed;                      // compiled: answered in C++
//     pgf::grpc::PythonService python;           // everything else: Python
//     grpc::ServerBuilder builder;
//     builder.AddListeningPort(addr, grpc::InsecureServerCredentials());
//     builder.RegisterService(&typed);
//     builder.RegisterCallbackGenericService(&python);
//     pgf::grpc::ConfigureServerBuilder(builder, python.options());  // optional
//     auto server = builder.BuildAndStart();
//     ...
//     server->Shutdown(deadline);   // 1. no call is running any more
//     python.Shutdown();            // 2. the pools stop (the destructor does it too)
//   }                               //    server, then service, destroyed
//   pgf::grpc::StopPython();        // 3. on the thread that started Python
//
// Ownership
//   - PythonService is owned by the caller and must outlive the grpc::Server
//     it is registered with up to the end of Server::Shutdown (gRPC's rule for
//     every registered service).  A fallback service passed to it is BORROWED
//     for the same time.
//   - Request and response bytes are never copied by the library beyond what
//     pygrpc_ffi.h's rules say (zero copy both ways: gRPC slices over the
//     handler's bytes, released when gRPC drops them).
//   - Process-wide state: the registry is pgf_default_registry(), one per
//     process (the one Python registers into); the pools, limits and memory
//     budget are the process's too, so at most one PythonService is alive
//     at a time (a second one throws Error).
//
// Threads
//   - Nothing that may enter Python runs on a gRPC thread: handlers start on
//     the service's worker pool (options: workers, max_workers, scheduling);
//     stream completions run on a stream pool and cancellations and buffer
//     releases on a service thread, all owned by the PythonService.  gRPC's
//     callback threads never block on Python.
//   - StartPython and StopPython must run on the same thread; StopPython
//     only after every PythonService was shut down (the pools' threads run
//     Python code until then).  Between them, servers and services may be
//     created and destroyed on any thread.  A call that reaches a service
//     already shut down gets UNAVAILABLE ("server is shutting down").
//   - Every function here is thread-safe unless it says otherwise.
//
// Errors: Start-up failures (Python cannot start, a module does not import,
// a library older than this header's ABI, a second PythonService) throw
// pgf::grpc::Error, or return false with the message from the Try* forms;
// nothing here aborts the process.  A call's failure is its gRPC status
// (pygrpc_ffi's mapping of Python exceptions), never the server's.
//
// C++17.  Needs gRPC C++ (tested against Debian 12's 1.51) and the
// pygrpc_ffi shim (libpygrpc_ffi.so, pygrpc_ffi.h) of the same package.
#pragma once

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/server_builder.h>

#include <atomic>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace pgf {
namespace grpc {

// Every start-up error of the library.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// What the hosts' --venv, --sys-path and --module do.
struct PythonOptions {
  // The virtual environment whose interpreter and site-packages to use; ""
  // for the venv the pygrpc_ffi package is installed in (docs/embedding.md,
  // "How the shim finds libpython").
  std::string venv;
  // Directories prepended to sys.path, separated by ':' ("" for none).
  std::string sys_path;
  // Modules imported in order once Python runs: they register handlers.
  std::vector<std::string> modules;
  // Calls of async handlers waiting for the package's event loop; beyond it
  // RESOURCE_EXHAUSTED at once (the hosts pass --max-queued-calls).  Read by
  // Python when it starts.
  size_t max_queued_calls = 1000;
};

// Starts the embedded interpreter and imports options.modules.  Throws
// Error with Python's message (a traceback's last line, the venv not found)
// when Python cannot start or a module fails to import; Python is then
// stopped again.  Once per process: an interpreter stopped by StopPython
// is not started again.
void StartPython(const PythonOptions& options);

// The same, returning false with *error set instead of throwing.
bool TryStartPython(const PythonOptions& options, std::string* error) noexcept;

// Imports one more module into the running interpreter.  Throws Error.
void ImportModule(const std::string& module);

// Stops the interpreter started by StartPython: on the thread that started
// it, after every PythonService was shut down.  Buffer releases that gRPC
// may still deliver later are leaked rather than run into a finalized
// interpreter.  Does nothing if Python was not started.
void StopPython() noexcept;

// Scheduling of the handler threads.
enum class Scheduling {
  // SCHED_BATCH (Linux): a worker woken for a call does not preempt gRPC's
  // network threads (the host's default; hosts/grpc_server/README.md).
  kBatch,
  kNormal,  // SCHED_OTHER
};

// The options of the gRPC C++ host (hosts/grpc_server/README.md, "Limits"),
// with its defaults.
struct ServiceOptions {
  int workers = 4;       // handler threads at start
  int max_workers = 64;  // the pool grows past `workers` only when stalled
  Scheduling scheduling = Scheduling::kBatch;
  // Request metadata per call, counted as HPACK does (key + value + 32 per
  // entry); beyond it RESOURCE_EXHAUSTED before anything is dispatched.
  size_t max_metadata_bytes = 16 * 1024;
  // Calls waiting for a worker; beyond it RESOURCE_EXHAUSTED at once.
  size_t max_queued_calls = 1000;
  // What calls may hold (their state and messages); beyond it new calls
  // get RESOURCE_EXHAUSTED and writes wait (the host's --max-memory-bytes).
  size_t max_memory_bytes = size_t{1} << 30;
  // Used by ConfigureServerBuilder only (receive and send).
  int max_message_size = 64 * 1024 * 1024;
};

// Applies to a builder what the host applies to its own: message size
// limits, the metadata size limit, no BDP probing (a stream takes one
// HTTP/2 window ahead of its handler's reads), gzip and deflate.  Optional:
// the server is the caller's; without it gRPC's defaults hold.
void ConfigureServerBuilder(::grpc::ServerBuilder& builder, const ServiceOptions& options);

// A generic callback service serving every method the pygrpc_ffi registry
// has a handler for.  Register it with
// builder.RegisterCallbackGenericService(&service); typed services
// registered on the same builder keep their methods.
class PythonService final : public ::grpc::CallbackGenericService {
 public:
  // Starts the pools.  fallback (BORROWED, may be null): methods without a
  // handler in the registry go to fallback->CreateReactor, so that a server
  // which already has a generic service keeps it; with none they get
  // UNIMPLEMENTED ("unknown service S" / "unknown method M for service S")
  // without a worker.  Throws Error if another PythonService is alive or the
  // shim's ABI is older than this header's.
  explicit PythonService(const ServiceOptions& options = ServiceOptions(),
                         ::grpc::CallbackGenericService* fallback = nullptr);
  // Shutdown(), if not done yet.
  ~PythonService() override;
  PythonService(const PythonService&) = delete;
  PythonService& operator=(const PythonService&) = delete;

  // Called by gRPC, on its threads, for each RPC that no typed service
  // took; never blocks (nothing of Python runs here).
  ::grpc::ServerGenericBidiReactor* CreateReactor(
      ::grpc::GenericCallbackServerContext* ctx) override;

  // Whether the registry has a handler for "/package.Service/Method".
  static bool HasHandler(const std::string& path);

  // Stops the pools: finishes what they have queued, waits (up to 2 s) for
  // gRPC to drop the response buffers it still holds, joins the threads.
  // Call it after the server's Shutdown returned (no call is running) and
  // before StopPython.  Idempotent; not from a handler's thread.
  void Shutdown();

  const ServiceOptions& options() const { return options_; }

  // Internal: the gRPC C++ host, whose start-up code has already started
  // the pools (hosts/grpc_server/main.cc), serves through this.
  struct UseRunningHost {};
  PythonService(UseRunningHost, ::grpc::CallbackGenericService* fallback = nullptr);

 private:
  ServiceOptions options_;
  ::grpc::CallbackGenericService* fallback_;
  bool owns_host_;
  std::atomic<bool> shut_down_{false};
};

}  // namespace grpc
}  // namespace pgf
