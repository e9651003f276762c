// The gRPC C++ transport: a grpc::Server whose generic callback service
// hands every call to a CallReactor (reactor.h).
#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/resource_quota.h>

#include <memory>
#include <string>

#include "../main.h"
#include "reactor.h"

namespace pgf_host {

class GrpcppTransport final : public Transport {
 public:
  GrpcppTransport();
  bool Start(const Options& opts, int* port, std::string* error) override;
  void Shutdown(double grace_seconds) override;

 private:
  // Destroyed in reverse: the server before what it uses.
  GenericService generic_;
  grpc::ServerBuilder builder_;
  std::unique_ptr<grpc::ResourceQuota> quota_;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace pgf_host
