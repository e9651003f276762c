// The gRPC C++ transport: a grpc::Server whose generic callback service is
// the library's pgf::grpc::PythonService (include/pygrpc_ffi/grpc.hpp), as
// an embedder's server would register it.
#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/resource_quota.h>

#include <memory>
#include <string>

#include "../main.h"
#include "pygrpc_ffi/grpc.hpp"

namespace pgf_host {

class GrpcppTransport final : public Transport {
 public:
  GrpcppTransport();
  bool Start(const Options& opts, int* port, std::string* error) override;
  void Shutdown(double grace_seconds) override;

 private:
  // Destroyed in reverse: the server before what it uses.
  // Serves with the pools main.cc started (Serve).
  pgf::grpc::PythonService generic_{pgf::grpc::PythonService::UseRunningHost{}};
  grpc::ServerBuilder builder_;
  std::unique_ptr<grpc::ResourceQuota> quota_;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace pgf_host
