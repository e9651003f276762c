// pygrpc_ffi_grpcpp_server: the host on gRPC C++'s callback API
// (grpcpp_transport.*), routing every method to the pygrpc_ffi default
// registry; start-up and shutdown are the product host's (../main.h).
#include "../main.h"
#include "grpcpp_transport.h"

int main(int argc, char** argv) {
  pgf_host::GrpcppTransport transport;
  return pgf_host::HostMain(argc, argv, &transport);
}
