// pygrpc_ffi_bench_server (the product host, on nghttp2) and, built with
// PGF_BENCH_GRPCPP, pygrpc_ffi_grpcpp_bench_server (the gRPC C++ host): the
// host with the C handlers of native_handlers.h on the services its
// --native-* flags name, for benchmarks and the host's stream tests.  Every
// other flag is the host's own.
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "native_handlers.h"
#include "pygrpc_ffi.h"
#include "main.h"
#ifdef PGF_BENCH_GRPCPP
#include "grpcpp/grpcpp_transport.h"
using BenchTransport = pgf_host::GrpcppTransport;
#else
#include "h2/h2_transport.h"
using BenchTransport = pgf_host::H2Transport;
#endif

namespace {

const char kBenchUsage[] =
    "C handlers (benchmarks and tests only):\n"
    "  --native-echo SERVICE    serve every method of SERVICE with a C echo\n"
    "                           handler (repeatable)\n"
    "  --native-unary-echo SERVICE\n"
    "                           serve every method of SERVICE with a C unary echo\n"
    "                           (one request message; repeatable)\n"
    "  --native-server-stream SERVICE\n"
    "                           serve every method of SERVICE with a C server\n"
    "                           stream: a request holding the decimal N gets N\n"
    "                           16-byte messages (repeatable)\n";

struct NativeFlag {
  const char* flag;
  int (*register_fn)(pgf_registry*, const std::string&);
};

// In the order they are registered.
const NativeFlag kNativeFlags[] = {
    {"--native-echo", pgf_bench::RegisterNativeEcho},
    {"--native-unary-echo", pgf_bench::RegisterNativeUnaryEcho},
    {"--native-server-stream", pgf_bench::RegisterNativeServerStream},
};

// The --native-* flag that arg is ("--flag" or "--flag=value"), or nullptr.
const NativeFlag* Match(const std::string& arg) {
  for (const NativeFlag& f : kNativeFlags) {
    std::string flag = f.flag;
    if (arg == flag || arg.rfind(flag + "=", 0) == 0) return &f;
  }
  return nullptr;
}

int Usage(const std::string& message, int code) {
  std::fputs(message.c_str(), code == 0 ? stdout : stderr);
  if (code == 0) std::fputs(kBenchUsage, stdout);
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  // The --native-* flags are taken out; the rest is the host's.
  std::vector<std::pair<const NativeFlag*, std::string>> natives;
  std::vector<char*> rest{argv[0]};
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    const NativeFlag* f = Match(arg);
    if (f == nullptr) {
      rest.push_back(argv[i]);
      continue;
    }
    std::string service;
    if (arg.size() > std::char_traits<char>::length(f->flag)) {
      service = arg.substr(arg.find('=') + 1);
    } else if (i + 1 < argc) {
      service = argv[++i];
    } else {
      return Usage(std::string("error: ") + f->flag + " needs a value\n" + kBenchUsage, 2);
    }
    if (service.empty()) {
      return Usage(std::string("error: ") + f->flag + " needs a service name\n", 2);
    }
    natives.emplace_back(f, service);
  }
  rest.push_back(nullptr);

  pgf_host::Options opts;
  std::string message;
  int code = 0;
  if (!pgf_host::ParseOptions(static_cast<int>(rest.size()) - 1, rest.data(), &opts, &message,
                              &code)) {
    return Usage(message, code);
  }
  BenchTransport transport;
  return pgf_host::Serve(opts, &transport, [&natives](pgf_registry* registry) {
    for (const NativeFlag& f : kNativeFlags) {
      for (const auto& [flag, service] : natives) {
        if (flag != &f) continue;
        int rc = f.register_fn(registry, service);
        if (rc != PGF_OK) return std::string(f.flag) + " " + service + ": " + pgf_strerror(rc);
      }
    }
    return std::string();
  });
}
