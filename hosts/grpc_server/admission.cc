#include "admission.h"

#include "host.h"
#include "memory_budget.h"

namespace pgf_host {

namespace {

int LookUpKind(pgf_call* call) {
  const pgf_name* svc = pgf_call_service(call);
  const pgf_name* method = pgf_call_method(call);
  return pgf_registry_method_kind(GetHost().registry, pgf_name_str(svc), pgf_name_len(svc),
                                  pgf_name_str(method), pgf_name_len(method));
}

}  // namespace

CallStatus HandlerStatus(pgf_call* call) {
  int code = pgf_call_status(call);
  if (code < 0 || code > 16) code = PGF_STATUS_UNKNOWN;
  size_t len = 0;
  const char* message = pgf_call_status_message(call, &len);
  return CallStatus{code, std::string(message, len)};
}

bool UnaryRequest(int kind) {
  return kind == PGF_KIND_UNARY || kind == PGF_KIND_SERVER_STREAMING;
}

bool UnaryResponse(int kind) {
  return kind == PGF_KIND_UNARY || kind == PGF_KIND_CLIENT_STREAMING;
}

CallStatus MetadataTooLarge() {
  return CallStatus{PGF_STATUS_RESOURCE_EXHAUSTED,
                    "request metadata exceeds " +
                        std::to_string(GetHost().max_metadata_bytes) + " bytes"};
}

CallStatus MalformedPath(const std::string& path) {
  return CallStatus{PGF_STATUS_UNIMPLEMENTED, "malformed method path: " + path};
}

CallStatus NotOneRequest(const std::string& path) {
  return CallStatus{PGF_STATUS_UNIMPLEMENTED,
                    "\"" + path + "\" requires exactly one request message."};
}

int KindFirst(pgf_call* call, pgf_done_fn done, void* self, bool* answered) {
  *answered = false;
  int kind = LookUpKind(call);
  if (kind >= 0) return kind;
  if (pgf_dispatch_nonblocking(GetHost().registry, call, done, self) == PGF_OK) {
    *answered = true;
    return kind;
  }
  // Registered meanwhile (PGF_EWOULDBLOCK).
  return LookUpKind(call);
}

bool Admit(int kind, size_t* charged, size_t* keep_free) {
  MemoryBudget& budget = HostBudget();
  *keep_free = kind == PGF_KIND_UNARY ? 0 : budget.KeepFree();
  // A request stream is charged its one window of read-ahead too.
  const size_t cost = MemoryBudget::CallCost(!UnaryRequest(kind));
  if (!budget.TryCharge(cost, *keep_free)) return false;
  *charged = cost;
  return true;
}

bool StartHandler(pgf_call* call, pgf_done_fn done, void* self, WorkerPool::Fn on_worker,
                  CallStatus* refused) {
  Host& host = GetHost();
  int rc = pgf_dispatch_nonblocking(host.registry, call, done, self);
  if (rc == PGF_OK) return true;
  *refused = CallStatus{PGF_STATUS_INTERNAL, "dispatch failed"};
  if (rc != PGF_EWOULDBLOCK) return false;
  // Bounded: when every worker is busy (handlers that block) and the queue
  // is full, the call is answered at once instead of waiting without limit.
  switch (host.workers->PostBounded(on_worker, self, nullptr, host.max_queued_calls)) {
    case WorkerPool::PostResult::kQueued:
      return true;
    case WorkerPool::PostResult::kFull:
      *refused = CallStatus{PGF_STATUS_RESOURCE_EXHAUSTED,
                            "server overloaded: " + std::to_string(host.max_queued_calls) +
                                " calls already wait for a handler thread"};
      return false;
    case WorkerPool::PostResult::kStopped:
      *refused = CallStatus{PGF_STATUS_UNAVAILABLE, "server is shutting down"};
      return false;
  }
  return false;
}

void CountRefused(const std::string& path, int kind, int code) {
  pgf_metrics_count_refused(path.data(), path.size(), kind, code);
}

}  // namespace pgf_host
