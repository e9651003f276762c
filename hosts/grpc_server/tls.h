// TLS credentials (--tls-cert, --tls-key, --tls-client-ca) as an OpenSSL
// SSL_CTX, rebuilt off the event loops when their files change
// (--tls-reload-seconds), and handed to each new connection of the nghttp2
// host.  A connection keeps the SSL_CTX it started with (OpenSSL counts its
// references), so a reload never touches connections already up.  The gRPC
// C++ host loads them once, to refuse at start what would not serve.
#pragma once

#include <openssl/ssl.h>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "options.h"

namespace pgf_host {

// Who is on the other end of a connection, as gRPC's AuthContext says it:
// properties (name, value) in gRPC's order, and the name of the one that
// holds the peer's identity ("" for none).
struct PeerAuth {
  std::vector<std::pair<std::string, std::string>> properties;
  std::string identity_key;
};
// A TLS connection after its handshake: the client certificate's subject,
// common name, PEM and SANs (DNS, URI, email, IP) as grpc prints them.
PeerAuth TlsPeerAuth(SSL* ssl);
// A plaintext connection ("insecure", as grpc's insecure credentials).
PeerAuth InsecurePeerAuth();

class TlsCredentials {
 public:
  // Loads the files named by opts; nullptr with a one-line *error if they
  // cannot serve (unreadable, unparseable, key not matching the certificate).
  static std::unique_ptr<TlsCredentials> Load(const Options& opts, std::string* error);
  ~TlsCredentials();
  TlsCredentials(const TlsCredentials&) = delete;
  TlsCredentials& operator=(const TlsCredentials&) = delete;

  // Any thread: a server-side SSL on the current credentials (nullptr if
  // OpenSSL is out of memory).
  SSL* NewSsl();
  // The thread that looks at the files every --tls-reload-seconds (none for 0).
  void StartReloads();
  void StopReloads();

 private:
  // What tells a replaced file (cert-manager and Kubernetes swap a symlink:
  // the inode changes; an edit in place changes the size or mtime).
  struct FileStamp {
    int error = 0;
    unsigned long dev = 0, ino = 0;
    long long size = 0, mtime_ns = 0;
    bool operator==(const FileStamp& o) const {
      return error == o.error && dev == o.dev && ino == o.ino && size == o.size &&
             mtime_ns == o.mtime_ns;
    }
  };

  TlsCredentials(const Options& opts, SSL_CTX* ctx);
  std::vector<FileStamp> Stamps() const;
  void ReloadLoop();
  void ReloadIfChanged();

  const std::string cert_, key_, client_ca_;
  const int reload_seconds_;
  std::vector<FileStamp> stamps_;  // of the files last loaded (or tried)

  std::mutex ctx_mu_;
  SSL_CTX* ctx_;  // guarded by ctx_mu_

  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::thread reloader_;
};

}  // namespace pgf_host
