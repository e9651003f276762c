#include "native_echo.h"

namespace pgf_host {

void NativeEchoRelease(void*) {}

namespace {

void EchoHandler(void*, pgf_call* call) {
  const uint8_t* data;
  size_t len;
  pgf_call_request(call, &data, &len);
  if (len > 0) pgf_call_set_response(call, data, len, NativeEchoRelease, nullptr);
  pgf_call_finish(call, PGF_STATUS_OK, "", 0);
}

}  // namespace

int RegisterNativeEcho(pgf_registry* reg, const std::string& service) {
  return pgf_registry_register_service(reg, service.data(), service.size(),
                                       EchoHandler, nullptr, nullptr);
}

}  // namespace pgf_host
