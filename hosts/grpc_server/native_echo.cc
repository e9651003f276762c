#include "native_echo.h"

namespace pgf_host {

namespace {

thread_local bool answering = false;

void NoRelease(void*) {}

void EchoHandler(void*, pgf_call* call) {
  const uint8_t* data;
  size_t len;
  pgf_call_request(call, &data, &len);
  // Valid until the call finishes; the host keeps it longer, see the header.
  if (len > 0) pgf_call_set_response(call, data, len, NoRelease, nullptr);
  answering = true;
  pgf_call_finish(call, PGF_STATUS_OK, "", 0);
  answering = false;
}

}  // namespace

bool NativeEchoAnswering() { return answering; }

int RegisterNativeEcho(pgf_registry* reg, const std::string& service) {
  return pgf_registry_register_service(reg, service.data(), service.size(),
                                       EchoHandler, nullptr, nullptr);
}

}  // namespace pgf_host
