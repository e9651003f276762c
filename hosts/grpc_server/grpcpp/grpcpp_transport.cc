#include "grpcpp_transport.h"

#ifdef PGF_HAVE_ABSL_SYNC
#include <absl/synchronization/mutex.h>
#endif

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>

#include <chrono>
#include <fstream>
#include <sstream>

#include "../tls.h"

namespace pgf_host {

namespace {

std::string ReadFile(const std::string& path) {
  if (path.empty()) return "";
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// --tls-*: gRPC's TLS credentials on a certificate provider that watches
// the files (--tls-reload-seconds), or holds them (0).  The files are loaded
// once with OpenSSL first, so what would not serve is refused at start.
std::shared_ptr<grpc::ServerCredentials> ServerCredentials(const Options& opts,
                                                           std::string* error) {
  if (opts.tls_cert.empty()) return grpc::InsecureServerCredentials();
  if (TlsCredentials::Load(opts, error) == nullptr) return nullptr;
  namespace gx = grpc::experimental;
  std::shared_ptr<gx::CertificateProviderInterface> provider;
  if (opts.tls_reload_seconds > 0) {
    provider = std::make_shared<gx::FileWatcherCertificateProvider>(
        opts.tls_key, opts.tls_cert, opts.tls_client_ca,
        static_cast<unsigned int>(opts.tls_reload_seconds));
  } else {
    provider = std::make_shared<gx::StaticDataCertificateProvider>(
        ReadFile(opts.tls_client_ca),
        std::vector<gx::IdentityKeyCertPair>{{ReadFile(opts.tls_key), ReadFile(opts.tls_cert)}});
  }
  gx::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  if (opts.tls_client_ca.empty()) {
    options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  } else {
    options.watch_root_certs();
    options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  }
  return gx::TlsServerCredentials(options);
}

}  // namespace

GrpcppTransport::GrpcppTransport() {
#ifdef PGF_HAVE_ABSL_SYNC
  // absl builds without NDEBUG (Debian's) check every absl::Mutex, which
  // gRPC uses throughout, for lock-order cycles: bookkeeping on each lock,
  // unlock and destruction (~2-5 % of the host's CPU under load).  Release
  // builds of absl do not; neither does the host.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
}

bool GrpcppTransport::Start(const Options& opts, int* port, std::string* error) {
  std::shared_ptr<grpc::ServerCredentials> credentials = ServerCredentials(opts, error);
  if (credentials == nullptr) return false;
  grpc::ServerBuilder& builder = builder_;
  builder.AddListeningPort(opts.listen, credentials, port);
  if (!opts.tls_cert.empty()) {
    // A client that connects and never finishes its handshake: dropped
    // after the keepalive timeout, as the nghttp2 host does.
    builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS, opts.keepalive_timeout_ms);
  }
  builder.RegisterCallbackGenericService(&generic_);
  // The message and metadata limits, BDP probing off, gzip and deflate: what
  // the library offers embedders for their own builder.
  pgf::grpc::ServiceOptions limits;
  limits.max_message_size = opts.max_message_size;
  limits.max_metadata_bytes = static_cast<size_t>(opts.max_metadata_bytes);
  pgf::grpc::ConfigureServerBuilder(builder, limits);
  // Without --reuse-port a second server on the same port fails to bind
  // instead of silently sharing it.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, opts.reuse_port ? 1 : 0);
  // Per connection; beyond it the client's new streams wait (or are refused).
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, opts.max_concurrent_streams);
  // Connections: keepalive finds dead peers; pings are policed; idle and old
  // connections are closed, so nothing a client opens (half-open streams
  // included) is held forever.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, opts.keepalive_time_ms);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, opts.keepalive_timeout_ms);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS,
                             opts.keepalive_permit_without_calls ? 1 : 0);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             opts.min_ping_interval_ms);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, opts.max_ping_strikes);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS, opts.max_connection_idle_ms);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, opts.max_connection_age_ms);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                             opts.max_connection_age_grace_ms);
  // What gRPC may allocate for connections and calls (buffers, streams).
  quota_ = std::make_unique<grpc::ResourceQuota>("pygrpc_ffi_server");
  quota_->Resize(static_cast<size_t>(opts.max_memory_bytes));
  builder.SetResourceQuota(*quota_);
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || *port == 0) {
    server_.reset();
    *error = "cannot listen on " + opts.listen;
    return false;
  }
  return true;
}

void GrpcppTransport::Shutdown(double grace_seconds) {
  // Shutdown returns once every reactor is done.
  auto deadline = std::chrono::system_clock::now() +
                  std::chrono::milliseconds(static_cast<int64_t>(grace_seconds * 1000));
  server_->Shutdown(deadline);
  server_.reset();
}

}  // namespace pgf_host
