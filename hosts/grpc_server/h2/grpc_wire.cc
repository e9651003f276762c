#include "grpc_wire.h"

#include <zlib.h>

#include <cstring>

namespace pgf_host {
namespace h2 {

namespace {
const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int Sextet(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;  // url-safe too, as gRPC's decoder
  if (c == '/' || c == '_') return 63;
  return -1;
}
}  // namespace

std::string Base64Encode(const uint8_t* data, size_t len) {
  std::string out;
  out.reserve((len + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= len; i += 3) {
    uint32_t v = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (len - i == 1) {
    uint32_t v = data[i] << 16;
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
  } else if (len - i == 2) {
    uint32_t v = (data[i] << 16) | (data[i + 1] << 8);
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
  }
  return out;
}

bool Base64Decode(const std::string& in, std::string* out) {
  size_t n = in.size();
  while (n > 0 && in[n - 1] == '=') --n;
  if (in.size() - n > 2 || n % 4 == 1) return false;
  out->clear();
  out->reserve(n * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; ++i) {
    int s = Sextet(static_cast<unsigned char>(in[i]));
    if (s < 0) return false;
    acc = (acc << 6) | static_cast<uint32_t>(s);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return true;
}

std::string PercentEncode(const char* data, size_t len) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(len);
  for (size_t i = 0; i < len; ++i) {
    unsigned char c = static_cast<unsigned char>(data[i]);
    if (c < 0x20 || c > 0x7e || c == '%') {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

bool ParseTimeout(const std::string& value, int64_t* ns) {
  if (value.size() < 2 || value.size() > 9) return false;
  int64_t n = 0;
  for (size_t i = 0; i + 1 < value.size(); ++i) {
    if (value[i] < '0' || value[i] > '9') return false;
    n = n * 10 + (value[i] - '0');  // at most 8 digits: no overflow
  }
  int64_t unit;
  switch (value.back()) {
    case 'H': unit = 3600LL * 1000000000LL; break;
    case 'M': unit = 60LL * 1000000000LL; break;
    case 'S': unit = 1000000000LL; break;
    case 'm': unit = 1000000LL; break;
    case 'u': unit = 1000LL; break;
    case 'n': unit = 1; break;
    default: return false;
  }
  *ns = n > INT64_MAX / unit ? INT64_MAX : n * unit;
  return true;
}

bool Decompress(const std::string& encoding, const uint8_t* data, size_t len, size_t limit,
                std::string* out) {
  z_stream zs;
  std::memset(&zs, 0, sizeof zs);
  // gzip: 16 + MAX_WBITS; deflate (gRPC's "deflate" is zlib-wrapped): MAX_WBITS.
  if (inflateInit2(&zs, encoding == "gzip" ? 16 + MAX_WBITS : MAX_WBITS) != Z_OK) return false;
  out->clear();
  zs.next_in = const_cast<uint8_t*>(data);
  zs.avail_in = static_cast<uInt>(len);
  char chunk[16384];
  int rc;
  do {
    zs.next_out = reinterpret_cast<Bytef*>(chunk);
    zs.avail_out = sizeof chunk;
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) break;
    size_t got = sizeof chunk - zs.avail_out;
    if (out->size() + got > limit) {
      rc = Z_MEM_ERROR;
      break;
    }
    out->append(chunk, got);
  } while (rc != Z_STREAM_END && (zs.avail_in > 0 || zs.avail_out == 0));
  inflateEnd(&zs);
  return rc == Z_STREAM_END;
}

bool Gzip(const uint8_t* data, size_t len, std::string* out) {
  z_stream zs;
  std::memset(&zs, 0, sizeof zs);
  if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8,
                   Z_DEFAULT_STRATEGY) != Z_OK) {
    return false;
  }
  out->resize(deflateBound(&zs, static_cast<uLong>(len)));
  zs.next_in = const_cast<uint8_t*>(data);
  zs.avail_in = static_cast<uInt>(len);
  zs.next_out = reinterpret_cast<Bytef*>(&(*out)[0]);
  zs.avail_out = static_cast<uInt>(out->size());
  int rc = deflate(&zs, Z_FINISH);
  out->resize(zs.total_out);
  deflateEnd(&zs);
  return rc == Z_STREAM_END;
}

bool ListHas(const std::string& list, const char* token) {
  size_t tlen = std::strlen(token);
  size_t i = 0;
  while (i <= list.size()) {
    size_t j = list.find(',', i);
    if (j == std::string::npos) j = list.size();
    size_t a = i, b = j;
    while (a < b && list[a] == ' ') ++a;
    while (b > a && list[b - 1] == ' ') --b;
    if (b - a == tlen && list.compare(a, tlen, token) == 0) return true;
    i = j + 1;
  }
  return false;
}

}  // namespace h2
}  // namespace pgf_host
