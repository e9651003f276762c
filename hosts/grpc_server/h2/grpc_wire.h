// gRPC-over-HTTP/2 encodings (gRPC's doc/PROTOCOL-HTTP2.md): binary
// metadata, grpc-message, grpc-timeout, message compression.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace pgf_host {
namespace h2 {

// Base64 as gRPC sends -bin values: standard alphabet, no padding.
std::string Base64Encode(const uint8_t* data, size_t len);
// Accepts padded and unpadded input, as gRPC does; false if malformed.
bool Base64Decode(const std::string& in, std::string* out);

// grpc-message: bytes outside 0x20..0x7e, and '%', as %XX.
std::string PercentEncode(const char* data, size_t len);

// grpc-timeout ("1S", "250m", up to 8 digits and a unit) in nanoseconds;
// false if malformed.  Values past what int64 holds saturate.
bool ParseTimeout(const std::string& value, int64_t* ns);

// gzip / deflate, bounded: false if the result would exceed limit bytes or
// the input is corrupt.
bool Decompress(const std::string& encoding, const uint8_t* data, size_t len, size_t limit,
                std::string* out);
bool Gzip(const uint8_t* data, size_t len, std::string* out);

// Whether a comma-separated header (grpc-accept-encoding) lists token.
bool ListHas(const std::string& list, const char* token);

}  // namespace h2
}  // namespace pgf_host
