#include "options.h"

#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

namespace pgf_host {

namespace {

const char kUsage[] =
    "usage: pygrpc_ffi_server [options]\n"
    "  --listen ADDR            address to serve on (default 127.0.0.1:50051;\n"
    "                           port 0 picks a free port)\n"
    "  --workers N              handler threads (default 4)\n"
    "  --max-workers N          threads added while handlers block or hang\n"
    "                           (default 64; at least --workers)\n"
    "  --worker-scheduling P    batch (default): handler threads run under\n"
    "                           SCHED_BATCH and never preempt gRPC's network\n"
    "                           threads when woken; normal: SCHED_OTHER\n"
    "  --max-queued-calls N     calls that may wait for a handler thread, and\n"
    "                           async handlers' calls that may wait for the\n"
    "                           event loop; more are answered\n"
    "                           RESOURCE_EXHAUSTED (default 1000)\n"
    "  --max-message-size B     receive and send limit in bytes (default 64 MiB)\n"
    "  --max-concurrent-streams N\n"
    "                           streams a client may open on one connection\n"
    "                           (default 1000)\n"
    "  --max-metadata-bytes B   request metadata a call may carry, counted as\n"
    "                           HPACK does (key + value + 32 per entry); beyond\n"
    "                           it RESOURCE_EXHAUSTED (default 16384)\n"
"  --keepalive-time-ms MS   ping a connection idle this long (default 7200000)\n"
    "  --keepalive-timeout-ms MS\n"
    "                           close it if the ping is not answered in time\n"
    "                           (default 20000)\n"
    "  --keepalive-permit-without-calls\n"
    "                           let clients ping while they have no call\n"
    "                           (default: such pings count as strikes)\n"
    "  --min-ping-interval-ms MS\n"
    "                           client pings closer than this without data are\n"
    "                           strikes (default 300000)\n"
    "  --max-ping-strikes N     strikes before GOAWAY (default 2; 0: no limit)\n"
    "  --max-connection-idle-ms MS\n"
    "                           GOAWAY to a connection without calls for this\n"
    "                           long (default 1800000)\n"
    "  --max-connection-age-ms MS\n"
    "                           GOAWAY to a connection this old (default 7200000)\n"
    "  --max-connection-age-grace-ms MS\n"
    "                           then its calls get this long before the\n"
    "                           connection is closed (default 600000)\n"
    "                           (2147483647 for any of these: no limit)\n"
    "  --max-memory-bytes B     memory gRPC may use for connections and calls\n"
    "                           (grpc::ResourceQuota; default 1073741824)\n"
    "  --module NAME            Python module to import; it registers handlers\n"
    "                           (repeatable)\n"
    "  --venv DIR               virtualenv whose site-packages Python uses\n"
    "  --sys-path P1:P2         extra sys.path entries\n"
    "  --grace-seconds S        shutdown grace for in-flight calls (default 10)\n"
    "  --drain-seconds S        on SIGINT/SIGTERM keep serving this long before\n"
    "                           the shutdown begins (default 0)\n"
    "  --stop-module NAME       Python module to import when SIGINT/SIGTERM\n"
    "                           arrives, before the drain\n"
    "  --reuse-port             share the port with other processes (SO_REUSEPORT)\n"
    "  --die-with-parent PID    stop (as on SIGTERM) when the parent process, which\n"
    "                           must be PID, dies (for supervisors)\n"
    "  --tls-cert FILE          serve TLS only (1.2 or later, ALPN h2) with this\n"
    "                           PEM certificate chain; needs --tls-key\n"
    "  --tls-key FILE           the certificate's PEM private key (no passphrase)\n"
    "  --tls-client-ca FILE     require client certificates signed by these PEM\n"
    "                           CA certificates (mTLS)\n"
    "  --tls-reload-seconds N   look at the three files this often and load them\n"
    "                           for new connections when they changed; a bad\n"
    "                           replacement keeps the previous ones (default 60;\n"
    "                           0: never)\n"
    "Prints 'listening on ADDR' once serving; SIGINT/SIGTERM stop it.\n";

bool ParseLong(const char* s, long min, long max, long* out) {
  errno = 0;
  char* end = nullptr;
  long v = std::strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < min || v > max) return false;
  *out = v;
  return true;
}

// The integer connection options, by flag; nullptr for any other flag.
int* IntOption(Options* opts, const std::string& arg) {
  if (arg == "--keepalive-time-ms") return &opts->keepalive_time_ms;
  if (arg == "--keepalive-timeout-ms") return &opts->keepalive_timeout_ms;
  if (arg == "--min-ping-interval-ms") return &opts->min_ping_interval_ms;
  if (arg == "--max-ping-strikes") return &opts->max_ping_strikes;
  if (arg == "--max-connection-idle-ms") return &opts->max_connection_idle_ms;
  if (arg == "--max-connection-age-ms") return &opts->max_connection_age_ms;
  if (arg == "--max-connection-age-grace-ms") return &opts->max_connection_age_grace_ms;
  return nullptr;
}

}  // namespace

bool ParseOptions(int argc, char** argv, Options* opts, std::string* message,
                  int* exit_code) {
  *exit_code = 2;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      *message = kUsage;
      *exit_code = 0;
      return false;
    }
    if (arg == "--reuse-port") {
      opts->reuse_port = true;
      continue;
    }
    if (arg == "--keepalive-permit-without-calls") {
      opts->keepalive_permit_without_calls = true;
      continue;
    }
    // Both "--opt value" and "--opt=value".
    std::string value;
    bool has_value = false;
    size_t eq = arg.find('=');
    if (arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg.resize(eq);
      has_value = true;
    }
    auto need = [&](std::string* v) {
      if (has_value) {
        *v = value;
        return true;
      }
      if (i + 1 >= argc) return false;
      *v = argv[++i];
      return true;
    };
    std::string v;
    long n;
    if (arg == "--listen" || arg == "--workers" || arg == "--max-workers" ||
        arg == "--worker-scheduling" ||
        arg == "--max-message-size" || arg == "--max-concurrent-streams" ||
        arg == "--max-metadata-bytes" || arg == "--max-queued-calls" ||
        IntOption(opts, arg) != nullptr || arg == "--max-memory-bytes" ||
        arg == "--module" || arg == "--venv" || arg == "--sys-path" ||
        arg == "--grace-seconds" || arg == "--drain-seconds" || arg == "--stop-module" ||
        arg == "--die-with-parent" || arg == "--tls-cert" ||
        arg == "--tls-key" || arg == "--tls-client-ca" || arg == "--tls-reload-seconds") {
      if (!need(&v)) {
        *message = "error: " + arg + " needs a value\n" + kUsage;
        return false;
      }
    } else {
      *message = "error: unknown option " + arg + "\n" + kUsage;
      return false;
    }
    if (int* field = IntOption(opts, arg)) {
      long min = arg == "--max-ping-strikes" ? 0 : 1;
      if (!ParseLong(v.c_str(), min, INT_MAX, &n)) {
        *message = "error: " + arg + " must be an integer in " + std::to_string(min) +
                   "..2147483647\n";
        return false;
      }
      *field = static_cast<int>(n);
    } else if (arg == "--max-memory-bytes") {
      if (!ParseLong(v.c_str(), 16L << 20, LONG_MAX, &n)) {
        *message = "error: --max-memory-bytes must be at least 16777216\n";
        return false;
      }
      opts->max_memory_bytes = n;
    } else if (arg == "--listen") {
      if (v.empty()) {
        *message = "error: --listen needs an address\n";
        return false;
      }
      opts->listen = v;
    } else if (arg == "--worker-scheduling") {
      if (v != "batch" && v != "normal") {
        *message = "error: --worker-scheduling must be batch or normal\n";
        return false;
      }
      opts->batch_workers = v == "batch";
    } else if (arg == "--workers") {
      if (!ParseLong(v.c_str(), 1, 1024, &n)) {
        *message = "error: --workers must be an integer in 1..1024\n";
        return false;
      }
      opts->workers = static_cast<int>(n);
    } else if (arg == "--max-workers") {
      if (!ParseLong(v.c_str(), 1, 1024, &n)) {
        *message = "error: --max-workers must be an integer in 1..1024\n";
        return false;
      }
      opts->max_workers = static_cast<int>(n);
    } else if (arg == "--max-message-size") {
      if (!ParseLong(v.c_str(), 1, INT_MAX, &n)) {
        *message = "error: --max-message-size must be an integer in 1..2147483647\n";
        return false;
      }
      opts->max_message_size = static_cast<int>(n);
    } else if (arg == "--max-concurrent-streams") {
      if (!ParseLong(v.c_str(), 1, INT_MAX, &n)) {
        *message = "error: --max-concurrent-streams must be an integer in 1..2147483647\n";
        return false;
      }
      opts->max_concurrent_streams = static_cast<int>(n);
    } else if (arg == "--max-metadata-bytes") {
      // At least what any client sends unasked (:path, user-agent, te...).
      if (!ParseLong(v.c_str(), 1024, INT_MAX, &n)) {
        *message = "error: --max-metadata-bytes must be an integer in 1024..2147483647\n";
        return false;
      }
      opts->max_metadata_bytes = static_cast<int>(n);
    } else if (arg == "--max-queued-calls") {
      if (!ParseLong(v.c_str(), 0, INT_MAX, &n)) {
        *message = "error: --max-queued-calls must be an integer in 0..2147483647\n";
        return false;
      }
      opts->max_queued_calls = static_cast<int>(n);
    } else if (arg == "--module") {
      if (v.empty()) {
        *message = "error: --module needs a module name\n";
        return false;
      }
      opts->modules.push_back(v);
    } else if (arg == "--venv") {
      opts->venv = v;
    } else if (arg == "--sys-path") {
      opts->sys_path = v;
    } else if (arg == "--stop-module") {
      opts->stop_module = v;
    } else if (arg == "--grace-seconds" || arg == "--drain-seconds") {
      char* end = nullptr;
      errno = 0;
      double g = std::strtod(v.c_str(), &end);
      if (errno != 0 || end == v.c_str() || *end != '\0' || !std::isfinite(g) || g < 0 ||
          g > 86400) {
        *message = "error: " + arg + " must be a number in 0..86400\n";
        return false;
      }
      (arg == "--grace-seconds" ? opts->grace_seconds : opts->drain_seconds) = g;
    } else if (arg == "--die-with-parent") {
      if (!ParseLong(v.c_str(), 1, INT_MAX, &n)) {
        *message = "error: --die-with-parent needs a process id\n";
        return false;
      }
      opts->parent_pid = n;
    } else if (arg == "--tls-reload-seconds") {
      if (!ParseLong(v.c_str(), 0, 86400 * 365, &n)) {
        *message = "error: --tls-reload-seconds must be an integer in 0..31536000\n";
        return false;
      }
      opts->tls_reload_seconds = static_cast<int>(n);
    } else if (v.empty()) {  // --tls-cert, --tls-key, --tls-client-ca
      *message = "error: " + arg + " needs a file\n";
      return false;
    } else if (arg == "--tls-cert") {
      opts->tls_cert = v;
    } else if (arg == "--tls-key") {
      opts->tls_key = v;
    } else if (arg == "--tls-client-ca") {
      opts->tls_client_ca = v;
    }
  }
  if (opts->tls_cert.empty() != opts->tls_key.empty()) {
    *message = "error: --tls-cert and --tls-key go together\n";
    return false;
  }
  if (!opts->tls_client_ca.empty() && opts->tls_cert.empty()) {
    *message = "error: --tls-client-ca needs --tls-cert and --tls-key\n";
    return false;
  }
  return true;
}

}  // namespace pgf_host
