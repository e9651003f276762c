#include "native_echo.h"

#include <string>

namespace pgf_host {

namespace {

// Zero copy: the answer is the request message's own bytes, kept alive by a
// reference that the write's release drops.  Everything here is plain C that
// never blocks, so it runs on whatever thread completes the read or the
// write (registered PGF_FLAG_NONBLOCKING: gRPC's own).

void OnRead(pgf_call* call, int result, pgf_message* msg, void*);

void End(pgf_call* call, int code, const char* text) {
  pgf_call_finish(call, code, text, std::char_traits<char>::length(text));
  pgf_call_unref(call);  // the handler's reference
}

void UnrefMessage(void* msg) { pgf_message_unref(static_cast<pgf_message*>(msg)); }

void ReadNext(pgf_call* call) {
  int rc = pgf_call_read(call, OnRead, nullptr);
  if (rc != PGF_OK) End(call, PGF_STATUS_CANCELLED, "cancelled");
}

void OnWrite(pgf_call* call, int result, void*) {
  if (result != PGF_OK) {
    End(call, PGF_STATUS_CANCELLED, "cancelled");
    return;
  }
  ReadNext(call);
}

void OnRead(pgf_call* call, int result, pgf_message* msg, void*) {
  if (result == PGF_EOF) {
    End(call, PGF_STATUS_OK, "");
    return;
  }
  if (result != PGF_OK) {
    End(call, PGF_STATUS_CANCELLED, "cancelled");
    return;
  }
  size_t len = 0;
  const uint8_t* data = pgf_message_data(msg, &len);
  // The message reference moves into the write (released on error too).
  if (pgf_call_write(call, data, len, UnrefMessage, msg, OnWrite, nullptr) != PGF_OK) {
    End(call, PGF_STATUS_CANCELLED, "cancelled");
  }
}

void EchoHandler(void*, pgf_call* call) {
  pgf_call_ref(call);  // finished later, from a callback
  ReadNext(call);
}

}  // namespace

int RegisterNativeEcho(pgf_registry* reg, const std::string& service) {
  // Nonblocking: the host runs it, and completes its reads and writes, on
  // its gRPC threads, with no thread hop per message.
  return pgf_registry_register(reg, service.data(), service.size(), nullptr, 0,
                               PGF_KIND_BIDI_STREAMING | PGF_FLAG_NONBLOCKING, EchoHandler,
                               nullptr, nullptr);
}

}  // namespace pgf_host
