// Metadata between a transport and the shim, the same for both hosts:
// request metadata into the call in one block, response metadata out of it
// entry by entry, and what an entry counts against --max-metadata-bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "pygrpc_ffi.h"

namespace pgf_host {

// What one request metadata entry counts against --max-metadata-bytes: as
// HPACK counts a header list (RFC 7541 4.1: key + value + 32) and as gRPC's
// GRPC_ARG_MAX_METADATA_SIZE does.
inline size_t MetadataEntryCost(size_t key_len, size_t value_len) {
  return key_len + value_len + 32;
}

// Whether the entries of md (key/value pairs with data() and size()) fit
// `limit` bytes; stops at the first entry past it.
template <typename Entries>
bool MetadataWithin(const Entries& md, size_t limit) {
  size_t total = 0;
  for (const auto& kv : md) {
    total += MetadataEntryCost(kv.first.size(), kv.second.size());  // each < 2^31: no wrap
    if (total > limit) return false;
  }
  return true;
}

// The request metadata (key/value pairs with data() and size()) into the
// call in one block: one allocation, not one per entry.  False on
// allocation failure.
template <typename Entries>
bool SetRequestMetadata(pgf_call* call, const Entries& md) {
  std::vector<pgf_metadata_entry> entries;
  entries.reserve(md.size());
  for (const auto& kv : md) {
    entries.push_back(pgf_metadata_entry{
        kv.first.data(), kv.first.size(),
        reinterpret_cast<const uint8_t*>(kv.second.data()), kv.second.size()});
  }
  return pgf_call_add_request_metadata_list(call, entries.data(), entries.size()) == PGF_OK;
}

// add(key, value) for every entry of md, in order.
template <typename AddFn>
void ForEachMetadata(const pgf_metadata* md, AddFn add) {
  size_t n = pgf_metadata_count(md);
  for (size_t i = 0; i < n; ++i) {
    const char* key;
    size_t key_len;
    const uint8_t* value;
    size_t value_len;
    if (pgf_metadata_get(md, i, &key, &key_len, &value, &value_len) != PGF_OK) continue;
    add(std::string(key, key_len),
        std::string(reinterpret_cast<const char*>(value), value_len));
  }
}

}  // namespace pgf_host
