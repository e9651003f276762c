#include "h2_bridge.h"

#include <time.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "../memory_budget.h"
#include "grpc_wire.h"

namespace pgf_host {
namespace h2 {

namespace {

nghttp2_nv Nv(const std::string& k, const std::string& v) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(k.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), k.size(), v.size(),
                    NGHTTP2_NV_FLAG_NONE};
}

// The buffer's capacity sits in a header before the bytes.
constexpr size_t kBufHeader = 16;

void FreeBuffer(void* base) {
  size_t cap;
  std::memcpy(&cap, base, sizeof cap);
  HostBudget().Release(cap);
  std::free(base);
}

struct ChargedString {
  std::string bytes;
};

void DeleteString(void* p) {
  auto* s = static_cast<ChargedString*>(p);
  HostBudget().Release(s->bytes.size());
  delete s;
}

}  // namespace

bool BinaryKey(const char* key, size_t len) {
  return len >= 4 && std::memcmp(key + len - 4, "-bin", 4) == 0;
}

void AppendMetadata(const pgf_metadata* md, Headers* out) {
  ForEachMetadata(md, [out](std::string key, std::string value) {
    if (BinaryKey(key.data(), key.size())) {
      value = Base64Encode(reinterpret_cast<const uint8_t*>(value.data()), value.size());
    }
    out->emplace_back(std::move(key), std::move(value));
  });
}

std::vector<nghttp2_nv> Nvs(const Headers& hs) {
  std::vector<nghttp2_nv> nv;
  nv.reserve(hs.size());
  for (const auto& h : hs) nv.push_back(Nv(h.first, h.second));
  return nv;
}

int64_t RealtimeNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

void MessageAssembler::Free() {
  if (msg_ == nullptr) return;
  HostBudget().Release(msg_cap_);
  std::free(msg_ - kBufHeader);
  msg_ = nullptr;
  msg_cap_ = 0;
}

MessageAssembler::Result MessageAssembler::Next(const uint8_t** data, size_t* len,
                                                const std::string& encoding,
                                                size_t max_message_size, size_t keep_free,
                                                pgf_message** msg, CallStatus* error) {
  if (hdr_len_ < 5) {
    size_t n = std::min(*len, 5 - hdr_len_);
    std::memcpy(hdr_ + hdr_len_, *data, n);
    hdr_len_ += n;
    *data += n;
    *len -= n;
    if (hdr_len_ < 5) return Result::kMore;
    uint8_t flag = hdr_[0];
    msg_len_ = (size_t{hdr_[1]} << 24) | (size_t{hdr_[2]} << 16) | (size_t{hdr_[3]} << 8) |
               hdr_[4];
    if (flag > 1) {
      *error = CallStatus{PGF_STATUS_INTERNAL, "invalid message flag " + std::to_string(flag)};
      return Result::kError;
    }
    if (flag == 1 && (encoding.empty() || encoding == "identity")) {
      *error = CallStatus{PGF_STATUS_INTERNAL,
                          "compressed message received without grpc-encoding"};
      return Result::kError;
    }
    if (msg_len_ > max_message_size) {
      *error = CallStatus{PGF_STATUS_RESOURCE_EXHAUSTED,
                          "Received message larger than max (" + std::to_string(msg_len_) +
                              " vs. " + std::to_string(max_message_size) + ")"};
      return Result::kError;
    }
    msg_compressed_ = flag == 1;
    msg_fill_ = 0;
    if (msg_len_ == 0) return Finish(encoding, max_message_size, msg, error);
    if (*len == 0) return Result::kMore;
  }
  size_t n = std::min(*len, msg_len_ - msg_fill_);
  if (msg_fill_ + n > msg_cap_) {
    // Grown as bytes arrive: a client announcing 64 MiB and sending nothing
    // costs nothing.
    size_t cap = std::max({msg_cap_ * 2, msg_fill_ + n, size_t{256}});
    cap = std::min(cap, msg_len_);
    // Many streams each announcing a large message cannot together hold
    // more than the budget (each alone: --max-message-size).
    size_t grow = cap - msg_cap_;
    if (!HostBudget().TryCharge(grow, keep_free)) {
      *error = CallStatus{PGF_STATUS_RESOURCE_EXHAUSTED, MemoryBudget::kRefusedText};
      return Result::kError;
    }
    auto* base = static_cast<uint8_t*>(
        std::realloc(msg_ == nullptr ? nullptr : msg_ - kBufHeader, cap + kBufHeader));
    if (base == nullptr) {
      HostBudget().Release(grow);
      *error = CallStatus{PGF_STATUS_RESOURCE_EXHAUSTED, "out of memory"};
      return Result::kError;
    }
    msg_ = base + kBufHeader;
    msg_cap_ = cap;
  }
  std::memcpy(msg_ + msg_fill_, *data, n);
  msg_fill_ += n;
  *data += n;
  *len -= n;
  if (msg_fill_ < msg_len_) return Result::kMore;
  return Finish(encoding, max_message_size, msg, error);
}

// The message just assembled becomes a pgf_message over the buffer.
MessageAssembler::Result MessageAssembler::Finish(const std::string& encoding,
                                                  size_t max_message_size, pgf_message** msg,
                                                  CallStatus* error) {
  pgf_message* m;
  if (msg_compressed_) {
    auto* out = new ChargedString;
    if (!Decompress(encoding, msg_, msg_len_, max_message_size, &out->bytes)) {
      delete out;
      *error = CallStatus{PGF_STATUS_INTERNAL, "cannot decompress the request message"};
      return Result::kError;
    }
    HostBudget().Charge(out->bytes.size());  // the bytes exist: rule 4
    m = pgf_message_new(reinterpret_cast<const uint8_t*>(out->bytes.data()),
                        out->bytes.size(), DeleteString, out);
  } else if (msg_len_ == 0) {
    m = pgf_message_new(nullptr, 0, nullptr, nullptr);
  } else {
    // The charge goes with the message, released with its last reference.
    uint8_t* base = msg_ - kBufHeader;
    std::memcpy(base, &msg_cap_, sizeof msg_cap_);
    m = pgf_message_new(msg_, msg_len_, FreeBuffer, base);
    msg_ = nullptr;
    msg_cap_ = 0;
  }
  hdr_len_ = 0;
  msg_len_ = msg_fill_ = 0;
  if (m == nullptr) {
    *error = CallStatus{PGF_STATUS_RESOURCE_EXHAUSTED, "out of memory"};
    return Result::kError;
  }
  *msg = m;
  return Result::kMessage;
}

}  // namespace h2
}  // namespace pgf_host
