// The byte and metadata bridge between HTTP/2 (nghttp2) and the shim:
// response metadata as HTTP/2 headers (-bin values in base64), and request
// messages assembled from DATA bytes into buffers charged to the memory
// budget (../memory_budget.h).  The gRPC wire
// format itself (prefixes, base64, timeouts, compression) is grpc_wire.h's.
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "../admission.h"
#include "../metadata.h"
#include "pygrpc_ffi.h"

namespace pgf_host {
namespace h2 {

using Headers = std::vector<std::pair<std::string, std::string>>;

// On the wire gRPC base64-encodes every key ending in -bin, the key "-bin"
// included (which its metadata rules otherwise treat as text).
bool BinaryKey(const char* key, size_t len);

// The call's response metadata as HTTP/2 headers: -bin values in base64.
void AppendMetadata(const pgf_metadata* md, Headers* out);

// hs as nghttp2's name/value pairs, which point into hs.
std::vector<nghttp2_nv> Nvs(const Headers& hs);

// Now, in ns since the Unix epoch.
int64_t RealtimeNs();

// Request messages out of one stream's DATA bytes, in gRPC's framing: each
// 5-byte prefix is checked as it arrives (flag 0, or 1 with a
// grpc-encoding; a length within --max-message-size), and the buffer grows
// as the bytes arrive, not to the length the prefix announces, charged to
// the memory budget (rule 4) until the last reference to the message goes.
// A complete message becomes a pgf_message over the buffer without a copy
// (or over its decompressed bytes).
class MessageAssembler {
 public:
  enum class Result { kMore, kMessage, kError };

  MessageAssembler() = default;
  MessageAssembler(const MessageAssembler&) = delete;
  MessageAssembler& operator=(const MessageAssembler&) = delete;
  ~MessageAssembler() { Free(); }

  // Takes bytes from *data (advancing it and *len) up to the end of the
  // next message.  kMore: all taken, no message complete; kMessage: *msg is
  // complete (the caller owns it); kError: the stream is broken, *error
  // says how.  keep_free: what the growth of the buffer leaves in the
  // budget.
  Result Next(const uint8_t** data, size_t* len, const std::string& encoding,
              size_t max_message_size, size_t keep_free, pgf_message** msg,
              CallStatus* error);
  // Whether a message has begun (part of its prefix came).
  bool started() const { return hdr_len_ != 0; }
  // Frees the buffer of a message not complete; its charge goes back.
  void Free();

 private:
  Result Finish(const std::string& encoding, size_t max_message_size, pgf_message** msg,
                CallStatus* error);

  uint8_t hdr_[5];
  size_t hdr_len_ = 0;
  uint8_t* msg_ = nullptr;  // the message being assembled
  size_t msg_len_ = 0, msg_fill_ = 0, msg_cap_ = 0;
  bool msg_compressed_ = false;
};

}  // namespace h2
}  // namespace pgf_host
