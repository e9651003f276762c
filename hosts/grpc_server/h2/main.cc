// pygrpc_ffi_server: the product host on the nghttp2 transport
// (h2_server.*), routing every method to the pygrpc_ffi default registry.
// Start-up, options, output and exit codes are those of every host
// (../main.h); only the transport differs from pygrpc_ffi_grpcpp_server.
#include "../main.h"
#include "h2_transport.h"

int main(int argc, char** argv) {
  pgf_host::H2Transport transport;
  return pgf_host::HostMain(argc, argv, &transport);
}
