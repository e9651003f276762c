// Command-line options of the hosts (pygrpc_ffi_server and
// pygrpc_ffi_grpcpp_server).
#pragma once

#include <string>
#include <vector>

namespace pgf_host {

struct Options {
  std::string listen = "127.0.0.1:50051";
  int workers = 4;
  int max_workers = 64;  // the pool grows past `workers` only when stalled
  // Handler threads under SCHED_BATCH ("batch"): woken for a call, they do
  // not preempt gRPC's network threads.  "normal": SCHED_OTHER.
  bool batch_workers = true;
  int max_message_size = 64 * 1024 * 1024;
  int max_concurrent_streams = 1000;  // per HTTP/2 connection
  // Request metadata per call, counted as HPACK does (key + value + 32 per
  // entry): gRPC's GRPC_ARG_MAX_METADATA_SIZE, and the host's own bound.
  int max_metadata_bytes = 16 * 1024;
  // Connections (gRPC channel arguments; milliseconds, INT_MAX for none).
  int keepalive_time_ms = 2 * 3600 * 1000;        // ping an idle transport
  int keepalive_timeout_ms = 20 * 1000;           // close if unanswered
  bool keepalive_permit_without_calls = false;    // client pings with no call
  int min_ping_interval_ms = 5 * 60 * 1000;       // client pings closer: strike
  int max_ping_strikes = 2;                       // then GOAWAY
  int max_connection_idle_ms = 30 * 60 * 1000;    // no call for this long: GOAWAY
  int max_connection_age_ms = 2 * 3600 * 1000;    // GOAWAY after this long
  int max_connection_age_grace_ms = 10 * 60 * 1000;  // then calls are cut
  long max_memory_bytes = 1L << 30;             // grpc::ResourceQuota
  int max_queued_calls = 1000;  // waiting for a worker; beyond: RESOURCE_EXHAUSTED
  std::vector<std::string> modules;
  std::string venv;
  std::string sys_path;
  double grace_seconds = 10.0;
  // On SIGINT/SIGTERM: stop_module is imported (it tells the handlers), then
  // the host keeps serving drain_seconds before it shuts down.
  std::string stop_module;
  double drain_seconds = 0.0;
  bool reuse_port = false;  // let several processes share the port
  long parent_pid = 0;  // --die-with-parent: stop when this process is gone
  // TLS (the nghttp2 host): certificate chain and key, PEM; with a client CA,
  // client certificates are required and verified (mTLS).  Files changed on
  // disk are loaded for new connections every tls_reload_seconds (0: never).
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
  int tls_reload_seconds = 60;
};

// Parses argv into opts.  On a bad or missing value, or --help, returns false
// with the text to print in *message (usage for --help, an error otherwise)
// and *exit_code set (0 for --help, 2 otherwise).
bool ParseOptions(int argc, char** argv, Options* opts, std::string* message,
                  int* exit_code);

}  // namespace pgf_host
