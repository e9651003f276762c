#include "grpcpp_transport.h"

#ifdef PGF_HAVE_ABSL_SYNC
#include <absl/synchronization/mutex.h>
#endif

#include <chrono>

namespace pgf_host {

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
  if (!opts.tls_cert.empty()) {
    // Refused rather than served in plaintext.
    *error = "--tls-cert: TLS is served by pygrpc_ffi_server, not by this host";
    return false;
  }
  grpc::ServerBuilder& builder = builder_;
  builder.AddListeningPort(opts.listen, grpc::InsecureServerCredentials(), port);
  builder.RegisterCallbackGenericService(&generic_);
  builder.SetMaxReceiveMessageSize(opts.max_message_size);
  builder.SetMaxSendMessageSize(opts.max_message_size);
  builder.SetCompressionAlgorithmSupportStatus(GRPC_COMPRESS_DEFLATE, true);
  builder.SetCompressionAlgorithmSupportStatus(GRPC_COMPRESS_GZIP, true);
  // Without --reuse-port a second server on the same port fails to bind
  // instead of silently sharing it.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, opts.reuse_port ? 1 : 0);
  // Per connection; beyond it the client's new streams wait (or are refused).
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, opts.max_concurrent_streams);
  // gRPC 1.51 enforces this only once the client has ACKed our SETTINGS;
  // the reactor enforces it again for every call (reactor.cc).
  builder.AddChannelArgument(GRPC_ARG_MAX_METADATA_SIZE, opts.max_metadata_bytes);
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
  // No BDP probing: with it gRPC grows a stream's receive window to several
  // MiB (measured: 4-5.5 MiB accepted per stream whose handler never
  // reads); without it a stream takes one HTTP/2 window (64 KiB) ahead of
  // its handler's reads.  grpcio_server.py does the same for grpcio.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
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
