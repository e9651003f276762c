// Admission: whether a call is taken, and where its handler starts.  The
// same rules in both hosts, applied before any request message is read:
// the request metadata limit, kind-first lookup (a method without a handler
// is answered at once), the memory budget (memory_budget.h, rule 1), and the
// bounded queue of calls waiting for a worker.
#pragma once

#include <cstddef>
#include <string>

#include "pygrpc_ffi.h"
#include "worker_pool.h"

namespace pgf_host {

// A gRPC status: one the host answers with, or the handler's.
struct CallStatus {
  int code = PGF_STATUS_OK;
  std::string message;
};

// The handler's status as the shim holds it (an unknown code: UNKNOWN).
CallStatus HandlerStatus(pgf_call* call);

// Kinds with one request message, and with one response message.
bool UnaryRequest(int kind);
bool UnaryResponse(int kind);

// The answer to request metadata beyond --max-metadata-bytes.
CallStatus MetadataTooLarge();

// The answer to a call whose path names no service and method.
CallStatus MalformedPath(const std::string& path);

// grpcio's answer to a unary request without exactly one message, so that
// both engines say the same.
CallStatus NotOneRequest(const std::string& path);

// Kind first: the kind of the method the call names (-1: no handler).  For
// a method without a handler the shim answers UNIMPLEMENTED at once,
// through done(call, self) on this thread, without a worker and without
// reading the request: *answered is then true.  A handler registered
// meanwhile is served as any other.
int KindFirst(pgf_call* call, pgf_done_fn done, void* self, bool* answered);

// The memory budget's admission (memory_budget.h, rule 1): charges the
// call's cost, or returns false (answer RESOURCE_EXHAUSTED,
// MemoryBudget::kRefusedText).  Streams, which a client can hold open
// without end, leave a reserve to unary calls: *keep_free is what the
// call's later TryCharges leave.  *charged goes back when the call is over.
bool Admit(int kind, size_t* charged, size_t* keep_free);

// Starts the handler: a PGF_FLAG_NONBLOCKING C handler here, on this
// thread; any other is queued for a worker, which runs on_worker(self,
// nullptr) (where the host calls pgf_dispatch_async).  The queue is bounded
// (--max-queued-calls).  True if started or queued; false with *refused
// what to answer instead (overload, shutdown, a failed dispatch).
bool StartHandler(pgf_call* call, pgf_done_fn done, void* self, WorkerPool::Fn on_worker,
                  CallStatus* refused);

// A call answered without its handler still counts in the shim's metrics,
// as every call does.
void CountRefused(const std::string& path, int kind, int code);

}  // namespace pgf_host
