#include "h2_bridge.h"

#include <time.h>

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

uint8_t* ResizeMessageBuffer(uint8_t* msg, size_t cap) {
  auto* base = static_cast<uint8_t*>(
      std::realloc(msg == nullptr ? nullptr : msg - kBufHeader, cap + kBufHeader));
  return base == nullptr ? nullptr : base + kBufHeader;
}

void FreeMessageBuffer(uint8_t* msg, size_t cap) {
  HostBudget().Release(cap);
  std::free(msg - kBufHeader);
}

pgf_message* MessageOverBuffer(uint8_t* msg, size_t cap, size_t len) {
  uint8_t* base = msg - kBufHeader;
  std::memcpy(base, &cap, sizeof cap);
  return pgf_message_new(msg, len, FreeBuffer, base);
}

pgf_message* MessageOverString(std::string bytes) {
  auto* s = new ChargedString{std::move(bytes)};
  HostBudget().Charge(s->bytes.size());  // the bytes exist: rule 4
  return pgf_message_new(reinterpret_cast<const uint8_t*>(s->bytes.data()), s->bytes.size(),
                         DeleteString, s);
}

}  // namespace h2
}  // namespace pgf_host
