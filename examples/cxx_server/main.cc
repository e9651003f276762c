// A gRPC C++ server with a compiled service (helloworld.Greeter, answered
// here in C++) and Python handlers (chat_handlers.py) in one ServerBuilder,
// through pygrpc_ffi's C++ library (docs/cxx_library.md).  Methods that
// neither serves go to the server's own generic service (LegacyService),
// which echoes legacy.Echo and answers UNIMPLEMENTED to the rest.
//
//   cxx_server --listen 127.0.0.1:0 --sys-path DIR --module chat_handlers
//
// Prints "listening on ADDR"; SIGINT/SIGTERM: graceful stop, exit 0.
// Start-up errors: "error: ..." on stderr, exit 2.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "greeter.grpc.pb.h"
#include "pygrpc_ffi/grpc.hpp"

namespace {

// The compiled service: typed methods win over the generic services.
class Greeter final : public helloworld::Greeter::CallbackService {
  grpc::ServerUnaryReactor* SayHello(grpc::CallbackServerContext* ctx,
                                     const helloworld::HelloRequest* request,
                                     helloworld::HelloReply* reply) override {
    ctx->AddInitialMetadata("x-served-by", "c++");
    reply->set_message("Hello from C++, " + request->name() + "!");
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

// The server's own generic service, which PythonService falls back to for
// methods that have no Python handler.
class LegacyService final : public grpc::CallbackGenericService {
  class Echo final : public grpc::ServerGenericBidiReactor {
   public:
    Echo() { StartRead(&buf_); }
    void OnReadDone(bool ok) override {
      if (ok) StartWriteAndFinish(&buf_, grpc::WriteOptions(), grpc::Status::OK);
      else Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no request"));
    }
    void OnDone() override { delete this; }

   private:
    grpc::ByteBuffer buf_;
  };

 public:
  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* ctx) override {
    if (ctx->method().rfind("/legacy.Echo/", 0) == 0) return new Echo();
    return grpc::CallbackGenericService::CreateReactor(ctx);  // UNIMPLEMENTED
  }
};

}  // namespace

int main(int argc, char** argv) {
  // The stop signals are taken by sigwait below, in every thread: blocked
  // before Python or gRPC start theirs.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  std::string listen = "127.0.0.1:50051";
  pgf::grpc::PythonOptions python;  // venv "": the one pygrpc_ffi is installed in
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--listen")) listen = argv[i + 1];
    else if (!std::strcmp(argv[i], "--venv")) python.venv = argv[i + 1];
    else if (!std::strcmp(argv[i], "--sys-path")) python.sys_path = argv[i + 1];
    else if (!std::strcmp(argv[i], "--module")) python.modules.push_back(argv[i + 1]);
  }
  try {
    pgf::grpc::StartPython(python);  // the modules register their handlers
  } catch (const pgf::grpc::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  {
    Greeter greeter;
    LegacyService legacy;
    pgf::grpc::PythonService python_service(pgf::grpc::ServiceOptions{}, &legacy);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&greeter);
    builder.RegisterCallbackGenericService(&python_service);
    pgf::grpc::ConfigureServerBuilder(builder, python_service.options());
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    if (server == nullptr || port == 0) {
      std::fprintf(stderr, "error: cannot listen on %s\n", listen.c_str());
      python_service.Shutdown();
      pgf::grpc::StopPython();
      return 2;
    }
    std::printf("listening on %s:%d\n", listen.substr(0, listen.rfind(':')).c_str(), port);
    std::fflush(stdout);

    int sig = 0;
    sigwait(&stop, &sig);
    // Calls in flight get 5 s, then are cancelled; Shutdown returns once
    // every call ended.  Then the service's threads stop.
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    python_service.Shutdown();
  }
  pgf::grpc::StopPython();  // on the thread that started it
  return 0;
}
