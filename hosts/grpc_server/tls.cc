#include "tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>

namespace pgf_host {

namespace {

// TLS 1.2 suites HTTP/2 allows (RFC 7540 9.2.2: ephemeral keys, AEAD);
// TLS 1.3's are all allowed and keep OpenSSL's defaults.
const char kTls12Ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// OpenSSL's reason for the last failure, and an empty error queue after.
std::string OpenSslReason() {
  unsigned long e = ERR_peek_last_error();
  const char* reason = e != 0 ? ERR_reason_error_string(e) : nullptr;
  std::string out = reason != nullptr ? reason : "unknown OpenSSL error";
  ERR_clear_error();
  return out;
}

// A gRPC connection is HTTP/2: a client that does not offer "h2" gets
// OpenSSL's no_application_protocol alert.
int SelectH2(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
             unsigned int inlen, void*) {
  for (unsigned int i = 0; i < inlen;) {
    unsigned int n = in[i];
    if (i + 1 + n > inlen) break;
    if (n == 2 && in[i + 1] == 'h' && in[i + 2] == '2') {
      *out = in + i + 1;
      *outlen = 2;
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + n;
  }
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

// Never prompts on a terminal for an encrypted key's passphrase.
int NoPassphrase(char*, int, int, void*) { return 0; }

// Whether path can be opened, with errno's words if not (clearer than
// OpenSSL's "system lib").
bool Readable(const std::string& flag, const std::string& path, std::string* error) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) {
    *error = "cannot read " + flag + " " + path + ": " + std::strerror(errno);
    return false;
  }
  std::fclose(f);
  return true;
}

EVP_PKEY* ReadKey(const std::string& path, std::string* error) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) {
    *error = "cannot read --tls-key " + path + ": " + std::strerror(errno);
    return nullptr;
  }
  EVP_PKEY* key = PEM_read_PrivateKey(f, nullptr, NoPassphrase, nullptr);
  std::fclose(f);
  if (key == nullptr) {
    *error = "cannot load --tls-key " + path + ": " + OpenSslReason() +
             " (a PEM private key without a passphrase is expected)";
  }
  return key;
}

SSL_CTX* BuildCtx(const std::string& cert, const std::string& key, const std::string& ca,
                  std::string* error) {
  if (!Readable("--tls-cert", cert, error)) return nullptr;
  EVP_PKEY* pkey = ReadKey(key, error);
  if (pkey == nullptr) return nullptr;
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  auto fail = [&](const std::string& message) -> SSL_CTX* {
    *error = message;
    ERR_clear_error();
    EVP_PKEY_free(pkey);
    SSL_CTX_free(ctx);
    return nullptr;
  };
  if (ctx == nullptr) return fail("cannot create a TLS context: " + OpenSslReason());
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // No tickets and no session cache: each connection is a full handshake,
  // so client certificates are checked against the current CA every time
  // and a reload needs no ticket keys carried over.
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_TICKET);
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  // Partial writes: the connection's buffer advances record by record; the
  // buffer may move between retries (it is a std::string that grows);
  // idle connections give their record buffers back.
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
  if (SSL_CTX_set_cipher_list(ctx, kTls12Ciphers) != 1) {
    return fail("cannot set the TLS 1.2 ciphers: " + OpenSslReason());
  }
  SSL_CTX_set_alpn_select_cb(ctx, SelectH2, nullptr);
  SSL_CTX_set_default_passwd_cb(ctx, NoPassphrase);
  if (SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()) != 1) {
    return fail("cannot load --tls-cert " + cert + ": " + OpenSslReason());
  }
  if (X509_check_private_key(SSL_CTX_get0_certificate(ctx), pkey) != 1) {
    return fail("--tls-key " + key + " does not match the certificate of --tls-cert " + cert);
  }
  if (SSL_CTX_use_PrivateKey(ctx, pkey) != 1) {
    return fail("cannot use --tls-key " + key + ": " + OpenSslReason());
  }
  EVP_PKEY_free(pkey);
  pkey = nullptr;
  if (!ca.empty()) {
    if (!Readable("--tls-client-ca", ca, error)) return fail(*error);
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(ca.c_str());
    if (names == nullptr || SSL_CTX_load_verify_locations(ctx, ca.c_str(), nullptr) != 1) {
      if (names != nullptr) sk_X509_NAME_pop_free(names, X509_NAME_free);
      return fail("cannot load --tls-client-ca " + ca + ": " + OpenSslReason());
    }
    SSL_CTX_set_client_CA_list(ctx, names);  // takes names
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  ERR_clear_error();  // what loading the files noted on its way
  return ctx;
}

// The bytes a memory BIO holds, as a string; the BIO is freed.
std::string BioString(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string out = len > 0 ? std::string(data, static_cast<size_t>(len)) : std::string();
  BIO_free(bio);
  return out;
}

// One SAN as grpc prints it, with the peer_* property it also goes to;
// false for kinds grpc ignores.
bool SanValue(const GENERAL_NAME* name, std::string* value, const char** kind) {
  switch (name->type) {
    case GEN_DNS:
    case GEN_URI:
    case GEN_EMAIL: {
      const ASN1_IA5STRING* s = name->d.ia5;
      value->assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                    static_cast<size_t>(ASN1_STRING_length(s)));
      *kind = name->type == GEN_DNS ? "peer_dns" : name->type == GEN_URI ? "peer_uri" : "peer_email";
      return true;
    }
    case GEN_IPADD: {
      const ASN1_OCTET_STRING* ip = name->d.iPAddress;
      int len = ASN1_STRING_length(ip);
      char text[INET6_ADDRSTRLEN];
      if ((len != 4 && len != 16) ||
          inet_ntop(len == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(ip), text,
                    sizeof text) == nullptr)
        return false;
      *value = text;
      *kind = "peer_ip";
      return true;
    }
    default:
      return false;
  }
}

// The client certificate's properties, in grpc's order.
void AddCertificate(X509* cert, PeerAuth* auth) {
  auto add = [auth](const char* name, std::string value) {
    auth->properties.emplace_back(name, std::move(value));
  };
  X509_NAME* subject = X509_get_subject_name(cert);
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio != nullptr) {
    X509_NAME_print_ex(bio, subject, 0, XN_FLAG_RFC2253);
    add("x509_subject", BioString(bio));
  }
  bool has_cn = false;
  int cn = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (cn >= 0) {
    const ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, cn));
    unsigned char* utf8 = nullptr;
    int len = ASN1_STRING_to_UTF8(&utf8, data);
    if (len >= 0) {
      add("x509_common_name", std::string(reinterpret_cast<char*>(utf8), static_cast<size_t>(len)));
      has_cn = true;
    }
    OPENSSL_free(utf8);
  }
  bio = BIO_new(BIO_s_mem());
  if (bio != nullptr) {
    PEM_write_bio_X509(bio, cert);
    add("x509_pem_cert", BioString(bio));
  }
  std::vector<std::pair<const char*, std::string>> by_kind;
  auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; sans != nullptr && i < sk_GENERAL_NAME_num(sans); ++i) {
    std::string value;
    const char* kind = nullptr;
    if (!SanValue(sk_GENERAL_NAME_value(sans, i), &value, &kind)) continue;
    add("x509_subject_alternative_name", value);
    by_kind.emplace_back(kind, std::move(value));
  }
  GENERAL_NAMES_free(sans);
  for (const char* kind : {"peer_dns", "peer_uri", "peer_email", "peer_ip"}) {
    for (const auto& [k, value] : by_kind)
      if (std::strcmp(k, kind) == 0) add(kind, value);
  }
  if (!by_kind.empty())
    auth->identity_key = "x509_subject_alternative_name";
  else if (has_cn)
    auth->identity_key = "x509_common_name";
}

}  // namespace

PeerAuth TlsPeerAuth(SSL* ssl) {
  PeerAuth auth;
  auth.properties.emplace_back("transport_security_type", "ssl");
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert != nullptr) AddCertificate(cert, &auth);
  auto add = [&auth](const char* name, std::string value) {
    auth.properties.emplace_back(name, std::move(value));
  };
  add("security_level", "TSI_PRIVACY_AND_INTEGRITY");
  add("ssl_session_reused", SSL_session_reused(ssl) ? "true" : "false");
  if (const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name)) add("ssl_requested_server_name", sni);
  add("ssl_tls_version", SSL_get_version(ssl));
  int group = SSL_get_negotiated_group(ssl);
  const char* group_name = group > 0 ? OBJ_nid2sn(group) : nullptr;
  if (group_name != nullptr && *group_name != '\0') add("ssl_negotiated_key_exchange_group", group_name);
  // grpc names a SPIFFE ID when the certificate has exactly one URI SAN.
  const std::string* uri = nullptr;
  int uris = 0;
  for (const auto& [name, value] : auth.properties) {
    if (name == "peer_uri") {
      uri = &value;
      ++uris;
    }
  }
  if (uris == 1 && uri->rfind("spiffe://", 0) == 0) add("peer_spiffe_id", *uri);
  return auth;
}

PeerAuth InsecurePeerAuth() {
  PeerAuth auth;
  auth.properties = {{"transport_security_type", "insecure"},
                     {"security_level", "TSI_SECURITY_NONE"}};
  return auth;
}

std::unique_ptr<TlsCredentials> TlsCredentials::Load(const Options& opts, std::string* error) {
  SSL_CTX* ctx = BuildCtx(opts.tls_cert, opts.tls_key, opts.tls_client_ca, error);
  if (ctx == nullptr) return nullptr;
  return std::unique_ptr<TlsCredentials>(new TlsCredentials(opts, ctx));
}

TlsCredentials::TlsCredentials(const Options& opts, SSL_CTX* ctx)
    : cert_(opts.tls_cert),
      key_(opts.tls_key),
      client_ca_(opts.tls_client_ca),
      reload_seconds_(opts.tls_reload_seconds),
      ctx_(ctx) {
  // Stamped after loading: a file replaced while it was read is read again
  // at the first check.
  stamps_ = Stamps();
}

TlsCredentials::~TlsCredentials() {
  StopReloads();
  SSL_CTX_free(ctx_);
}

SSL* TlsCredentials::NewSsl() {
  std::lock_guard<std::mutex> lock(ctx_mu_);
  return SSL_new(ctx_);  // holds its own reference to ctx_
}

std::vector<TlsCredentials::FileStamp> TlsCredentials::Stamps() const {
  std::vector<FileStamp> out;
  for (const std::string* path : {&cert_, &key_, &client_ca_}) {
    FileStamp s;
    struct stat st;
    if (path->empty()) {
      // no file
    } else if (stat(path->c_str(), &st) != 0) {
      s.error = errno;
    } else {
      s.dev = st.st_dev;
      s.ino = st.st_ino;
      s.size = st.st_size;
      s.mtime_ns = static_cast<long long>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
    }
    out.push_back(s);
  }
  return out;
}

void TlsCredentials::ReloadIfChanged() {
  std::vector<FileStamp> now = Stamps();
  if (now == stamps_) return;
  // Whatever the outcome, these files are not tried again until they
  // change: one log line per replacement, not one per check.
  stamps_ = now;
  std::string error;
  SSL_CTX* ctx = BuildCtx(cert_, key_, client_ca_, &error);
  if (ctx == nullptr) {
    std::fprintf(stderr, "warning: TLS reload failed, new connections keep the previous "
                         "credentials: %s\n", error.c_str());
    return;
  }
  SSL_CTX* old;
  {
    std::lock_guard<std::mutex> lock(ctx_mu_);
    old = ctx_;
    ctx_ = ctx;
  }
  SSL_CTX_free(old);  // connections that use it hold their own references
  std::fprintf(stderr, "TLS credentials reloaded from %s for new connections\n", cert_.c_str());
}

void TlsCredentials::ReloadLoop() {
  pthread_setname_np(pthread_self(), "pgf-tls-reload");
  std::unique_lock<std::mutex> lock(stop_mu_);
  while (!stop_cv_.wait_for(lock, std::chrono::seconds(reload_seconds_),
                            [this] { return stopping_; })) {
    lock.unlock();
    ReloadIfChanged();
    lock.lock();
  }
}

void TlsCredentials::StartReloads() {
  if (reload_seconds_ > 0 && !reloader_.joinable()) {
    reloader_ = std::thread([this] { ReloadLoop(); });
  }
}

void TlsCredentials::StopReloads() {
  {
    std::lock_guard<std::mutex> lock(stop_mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (reloader_.joinable()) reloader_.join();
}

}  // namespace pgf_host
