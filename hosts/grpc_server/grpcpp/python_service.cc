// The gRPC C++ library (include/pygrpc_ffi/grpc.hpp): Python start-up, the
// builder's settings and PythonService, on the same code as the gRPC C++
// host (../python.*, ../host.*, reactor.*).
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <climits>
#include <string>

#include "../host.h"
#include "../python.h"
#include "pygrpc_ffi.h"
#include "pygrpc_ffi/grpc.hpp"
#include "reactor.h"

namespace pgf {
namespace grpc {

bool TryStartPython(const PythonOptions& options, std::string* error) noexcept {
  std::string message;
  try {
    if (pgf_abi_version() < PGF_ABI_VERSION) {
      message = "libpygrpc_ffi implements ABI " + std::to_string(pgf_abi_version()) +
                ", this library needs " + std::to_string(PGF_ABI_VERSION);
    } else {
      message = pgf_host::StartPython(options.venv, options.sys_path, options.modules,
                                      options.max_queued_calls);
    }
  } catch (const std::exception& e) {  // std::bad_alloc
    message = e.what();
  }
  if (message.empty()) return true;
  if (error != nullptr) *error = message;
  return false;
}

void StartPython(const PythonOptions& options) {
  std::string error;
  if (!TryStartPython(options, &error)) throw Error("cannot start Python: " + error);
}

void ImportModule(const std::string& module) {
  std::string error = pgf_host::ImportPythonModule(module);
  if (!error.empty()) throw Error("cannot import " + module + ": " + error);
}

void StopPython() noexcept { pgf_host::StopPython(); }

void ConfigureServerBuilder(::grpc::ServerBuilder& builder, const ServiceOptions& options) {
  builder.SetMaxReceiveMessageSize(options.max_message_size);
  builder.SetMaxSendMessageSize(options.max_message_size);
  builder.SetCompressionAlgorithmSupportStatus(GRPC_COMPRESS_DEFLATE, true);
  builder.SetCompressionAlgorithmSupportStatus(GRPC_COMPRESS_GZIP, true);
  // gRPC 1.51 enforces this only once the client has ACKed our SETTINGS;
  // the reactor enforces it again for every call (reactor.cc).
  builder.AddChannelArgument(
      GRPC_ARG_MAX_METADATA_SIZE,
      static_cast<int>(std::min<size_t>(options.max_metadata_bytes, INT_MAX)));
  // No BDP probing: with it gRPC grows a stream's receive window to several
  // MiB (measured: 4-5.5 MiB accepted per stream whose handler never
  // reads); without it a stream takes one HTTP/2 window (64 KiB) ahead of
  // its handler's reads.  grpcio_server.py does the same for grpcio.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
}

namespace {

pgf_host::HostConfig Config(const ServiceOptions& options) {
  pgf_host::HostConfig config;
  config.workers = options.workers;
  config.max_workers = options.max_workers;
  config.batch_workers = options.scheduling == Scheduling::kBatch;
  config.max_metadata_bytes = options.max_metadata_bytes;
  config.max_queued_calls = options.max_queued_calls;
  config.max_memory_bytes = options.max_memory_bytes;
  return config;
}

}  // namespace

PythonService::PythonService(const ServiceOptions& options,
                             ::grpc::CallbackGenericService* fallback)
    : options_(options), fallback_(fallback), owns_host_(true) {
  if (pgf_abi_version() < PGF_ABI_VERSION) {
    throw Error("libpygrpc_ffi implements ABI " + std::to_string(pgf_abi_version()) +
                ", this library needs " + std::to_string(PGF_ABI_VERSION));
  }
  if (options.workers < 1 || options.max_workers < options.workers) {
    throw Error("PythonService: workers must be at least 1 and at most max_workers");
  }
  if (!pgf_host::StartHost(Config(options))) {
    throw Error("PythonService: another PythonService is alive in this process");
  }
}

PythonService::PythonService(UseRunningHost, ::grpc::CallbackGenericService* fallback)
    : fallback_(fallback), owns_host_(false) {}

PythonService::~PythonService() { Shutdown(); }

void PythonService::Shutdown() {
  if (shut_down_.exchange(true)) return;
  if (owns_host_) pgf_host::StopHost();
}

bool PythonService::HasHandler(const std::string& path) {
  // "/package.Service/Method"; anything else has no handler.
  if (path.size() < 4 || path[0] != '/') return false;
  size_t slash = path.find('/', 1);
  if (slash == std::string::npos || slash == 1 || slash + 1 == path.size()) return false;
  return pgf_registry_method_kind(pgf_default_registry(), path.data() + 1, slash - 1,
                                  path.data() + slash + 1, path.size() - slash - 1) >= 0;
}

::grpc::ServerGenericBidiReactor* PythonService::CreateReactor(
    ::grpc::GenericCallbackServerContext* ctx) {
  // Chaining: a method no handler takes goes to the server's own generic
  // service, when it has one; else the reactor answers UNIMPLEMENTED.
  if (fallback_ != nullptr && !HasHandler(ctx->method())) return fallback_->CreateReactor(ctx);
  return new pgf_host::CallReactor(ctx);
}

}  // namespace grpc
}  // namespace pgf
