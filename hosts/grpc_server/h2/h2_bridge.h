// The byte and metadata bridge between HTTP/2 (nghttp2) and the shim:
// response metadata as HTTP/2 headers (-bin values in base64), and request
// messages in buffers charged to the memory budget (../memory_budget.h,
// rule 4) until the last reference to the message goes.  The gRPC wire
// format itself (prefixes, base64, timeouts, compression) is grpc_wire.h's.
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

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

// A request message's buffer, grown as its bytes arrive: msg (nullptr at
// first) resized to hold cap bytes; nullptr on allocation failure (msg is
// then unchanged).  The caller charges the growth to the memory budget.
uint8_t* ResizeMessageBuffer(uint8_t* msg, size_t cap);

// Frees a buffer that did not become a message; its cap bytes go back to
// the memory budget.
void FreeMessageBuffer(uint8_t* msg, size_t cap);

// A message over the first len bytes of the buffer, which it owns from now
// on: freed, and its cap bytes given back to the budget, with the message's
// last reference.
pgf_message* MessageOverBuffer(uint8_t* msg, size_t cap, size_t len);

// A message over bytes (a decompressed message), charged to the budget
// until the message's last reference goes.
pgf_message* MessageOverString(std::string bytes);

}  // namespace h2
}  // namespace pgf_host
