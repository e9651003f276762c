#include "host.h"

#include <cstdio>

namespace pgf_host {

Host& GetHost() {
  static Host host;
  return host;
}

namespace {

void RunRelease(void* fn, void* ctx) {
  Host& h = GetHost();
  if (!h.python_stopped.load(std::memory_order_acquire)) {
    reinterpret_cast<pgf_release_fn>(fn)(ctx);
  } else {
    static std::atomic<bool> warned{false};
    if (!warned.exchange(true)) {
      std::fprintf(stderr,
                   "warning: a response buffer was released after Python "
                   "stopped; leaked\n");
    }
  }
}

void RunCancel(void* call, void*) {
  pgf_call_cancel(static_cast<pgf_call*>(call));
  pgf_call_unref(static_cast<pgf_call*>(call));
}

void RunPush(void* call, void* msg) {
  pgf_call_push_request(static_cast<pgf_call*>(call), static_cast<pgf_message*>(msg));
  pgf_call_unref(static_cast<pgf_call*>(call));
}

void RunWriteDone(void* call, void* ok) {
  pgf_call_write_done(static_cast<pgf_call*>(call), ok != nullptr);
  pgf_call_unref(static_cast<pgf_call*>(call));
}

// Runs on the pool, or inline once it has stopped (late events during
// shutdown, when no worker holds the GIL any more).
void SubmitTo(WorkerPool* pool, WorkerPool::Fn fn, void* a, void* b) {
  if (pool == nullptr || !pool->Post(fn, a, b)) fn(a, b);
}

void Submit(WorkerPool::Fn fn, void* a, void* b) { SubmitTo(GetHost().service, fn, a, b); }

}  // namespace

void ReleaseLater(pgf_release_fn release, void* ctx) {
  // A function pointer through void*: fine on every platform gRPC supports.
  Submit(RunRelease, reinterpret_cast<void*>(release), ctx);
}

void CancelLater(pgf_call* call) {
  if (pgf_call_nonblocking(call)) {
    pgf_call_cancel(call);
    return;
  }
  Submit(RunCancel, pgf_call_ref(call), nullptr);
}

void PushLater(pgf_call* call, pgf_message* msg) {
  if (pgf_call_nonblocking(call)) {
    pgf_call_push_request(call, msg);
    return;
  }
  SubmitTo(GetHost().streams, RunPush, pgf_call_ref(call), msg);
}

void WriteDoneLater(pgf_call* call, bool ok, bool may_inline) {
  if (may_inline && pgf_call_nonblocking(call)) {
    pgf_call_write_done(call, ok);
    return;
  }
  // ok travels as a non-null pointer: a task is two pointers.
  SubmitTo(GetHost().streams, RunWriteDone, pgf_call_ref(call),
           ok ? reinterpret_cast<void*>(1) : nullptr);
}

}  // namespace pgf_host
