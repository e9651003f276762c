#include "native_handlers.h"

#include <cstdlib>
#include <cstring>
#include <string>

namespace pgf_bench {

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

// ------------------------------------------------------- server stream

// A request holding the decimal N gets N 16-byte messages, each written as
// the previous one completes.  The bytes are static, yet written as OWNED
// (with a release that does nothing), as a Python handler's are: the host
// treats them the same way, so this is the ceiling for server streams.
constexpr char kMessage[] = "0123456789abcdef";
constexpr size_t kMessageLen = sizeof(kMessage) - 1;
constexpr uint64_t kMaxMessages = uint64_t{1} << 40;

struct Countdown {
  uint64_t left;
};

void NoRelease(void*) {}

void EndCountdown(pgf_call* call, Countdown* c, int code, const char* text) {
  delete c;
  End(call, code, text);
}

void WriteNext(pgf_call* call, Countdown* c);

void OnCountdownWrite(pgf_call* call, int result, void* ud) {
  auto* c = static_cast<Countdown*>(ud);
  if (result != PGF_OK) {
    EndCountdown(call, c, PGF_STATUS_CANCELLED, "cancelled");
    return;
  }
  WriteNext(call, c);
}

void WriteNext(pgf_call* call, Countdown* c) {
  if (c->left == 0) {
    EndCountdown(call, c, PGF_STATUS_OK, "");
    return;
  }
  --c->left;
  // The callback may run inside this call (a host may complete a write as
  // it takes it); the write made from it then waits until the transport
  // has taken this one, so the recursion is at most one write deep.
  if (pgf_call_write(call, reinterpret_cast<const uint8_t*>(kMessage), kMessageLen, NoRelease,
                     nullptr, OnCountdownWrite, c) != PGF_OK) {
    EndCountdown(call, c, PGF_STATUS_CANCELLED, "cancelled");
  }
}

void OnCountRead(pgf_call* call, int result, pgf_message* msg, void*) {
  if (result != PGF_OK) {
    End(call, PGF_STATUS_CANCELLED, "cancelled");
    return;
  }
  size_t len = 0;
  const uint8_t* data = pgf_message_data(msg, &len);
  uint64_t n = 0;
  bool valid = len > 0 && len <= 13;
  for (size_t i = 0; valid && i < len; ++i) {
    valid = data[i] >= '0' && data[i] <= '9';
    n = n * 10 + static_cast<uint64_t>(data[i] - '0');
  }
  pgf_message_unref(msg);
  if (!valid || n > kMaxMessages) {
    End(call, PGF_STATUS_INVALID_ARGUMENT, "the request must be a decimal message count");
    return;
  }
  WriteNext(call, new Countdown{n});
}

void CountdownHandler(void*, pgf_call* call) {
  pgf_call_ref(call);  // finished later, from a callback
  // The one request was set before dispatch: the read completes at once.
  if (pgf_call_read(call, OnCountRead, nullptr) != PGF_OK) {
    End(call, PGF_STATUS_CANCELLED, "cancelled");
  }
}

// -------------------------------------------------------------- unary

// The request message's own bytes as the answer, the message reference
// moving into the response's release: no copy by the handler.
void UnaryEchoHandler(void*, pgf_call* call) {
  pgf_message* msg = pgf_call_request_message(call);
  if (msg != nullptr) {
    size_t len = 0;
    const uint8_t* data = pgf_message_data(msg, &len);
    if (pgf_call_set_response(call, data, len, UnrefMessage, msg) != PGF_OK) {
      pgf_call_finish(call, PGF_STATUS_RESOURCE_EXHAUSTED, "out of memory", 13);
      return;
    }
  } else {
    // Lent bytes (pgf_call_set_request, not what this host does): valid
    // only until the finish, so the answer is a copy.
    const uint8_t* data = nullptr;
    size_t len = 0;
    pgf_call_request(call, &data, &len);
    void* copy = len > 0 ? std::malloc(len) : nullptr;
    if (len > 0 && copy == nullptr) {
      pgf_call_finish(call, PGF_STATUS_RESOURCE_EXHAUSTED, "out of memory", 13);
      return;
    }
    if (len > 0) std::memcpy(copy, data, len);
    if (pgf_call_set_response(call, static_cast<const uint8_t*>(copy), len, std::free, copy) !=
        PGF_OK) {
      pgf_call_finish(call, PGF_STATUS_RESOURCE_EXHAUSTED, "out of memory", 13);
      return;
    }
  }
  pgf_call_finish(call, PGF_STATUS_OK, nullptr, 0);
}

}  // namespace

int RegisterNativeUnaryEcho(pgf_registry* reg, const std::string& service) {
  return pgf_registry_register(reg, service.data(), service.size(), nullptr, 0,
                               PGF_KIND_UNARY | PGF_FLAG_NONBLOCKING, UnaryEchoHandler, nullptr,
                               nullptr);
}

int RegisterNativeServerStream(pgf_registry* reg, const std::string& service) {
  return pgf_registry_register(reg, service.data(), service.size(), nullptr, 0,
                               PGF_KIND_SERVER_STREAMING | PGF_FLAG_NONBLOCKING,
                               CountdownHandler, nullptr, nullptr);
}

int RegisterNativeEcho(pgf_registry* reg, const std::string& service) {
  // Nonblocking: the host runs it, and completes its reads and writes, on
  // its gRPC threads, with no thread hop per message.
  return pgf_registry_register(reg, service.data(), service.size(), nullptr, 0,
                               PGF_KIND_BIDI_STREAMING | PGF_FLAG_NONBLOCKING, EchoHandler,
                               nullptr, nullptr);
}

}  // namespace pgf_bench
