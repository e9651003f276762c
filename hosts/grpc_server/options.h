// Command-line options of pygrpc_ffi_server.
#pragma once

#include <string>
#include <vector>

namespace pgf_host {

struct Options {
  std::string listen = "127.0.0.1:50051";
  int workers = 4;
  int max_workers = 64;  // the pool grows past `workers` only when stalled
  int max_message_size = 64 * 1024 * 1024;
  int max_concurrent_streams = 1000;  // per HTTP/2 connection
  // Request metadata per call, counted as HPACK does (key + value + 32 per
  // entry): gRPC's GRPC_ARG_MAX_METADATA_SIZE, and the host's own bound.
  int max_metadata_bytes = 16 * 1024;
  int max_queued_calls = 1000;  // waiting for a worker; beyond: RESOURCE_EXHAUSTED
  std::vector<std::string> modules;
  std::string venv;
  std::string sys_path;
  std::vector<std::string> native_echo;
  double grace_seconds = 10.0;
  bool reuse_port = false;  // let several processes share the port
  long parent_pid = 0;  // --die-with-parent: stop when this process is gone
};

// Parses argv into opts.  On a bad or missing value, or --help, returns false
// with the text to print in *message (usage for --help, an error otherwise)
// and *exit_code set (0 for --help, 2 otherwise).
bool ParseOptions(int argc, char** argv, Options* opts, std::string* message,
                  int* exit_code);

}  // namespace pgf_host
