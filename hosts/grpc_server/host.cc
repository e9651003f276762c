#include "host.h"

#include <chrono>
#include <cstdio>
#include <thread>

namespace pgf_host {

Host& GetHost() {
  static Host host;
  return host;
}

bool RunUnlessPythonStopped(void (*fn)(void*, void*), void* a, void* b) {
  Host& h = GetHost();
  h.python_users.fetch_add(1, std::memory_order_seq_cst);
  bool run = !h.python_stopped.load(std::memory_order_seq_cst);
  if (run) fn(a, b);
  h.python_users.fetch_sub(1, std::memory_order_seq_cst);
  return run;
}

void StopPythonUsers() {
  Host& h = GetHost();
  h.python_stopped.store(true, std::memory_order_seq_cst);
  while (h.python_users.load(std::memory_order_seq_cst) > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

namespace {

void CallRelease(void* fn, void* ctx) { reinterpret_cast<pgf_release_fn>(fn)(ctx); }

void RunRelease(void* fn, void* ctx) {
  if (!RunUnlessPythonStopped(CallRelease, fn, ctx)) {
    static std::atomic<bool> warned{false};
    if (!warned.exchange(true)) {
      std::fprintf(stderr,
                   "warning: a response buffer was released after Python "
                   "stopped; leaked\n");
    }
  }
}

void CallCancel(void* call, void*) { pgf_call_cancel(static_cast<pgf_call*>(call)); }

// A cancellation callback may be Python's: never once Python is stopping.
void RunCancel(void* call, void*) {
  RunUnlessPythonStopped(CallCancel, call, nullptr);
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
  // The call's own copy only frees memory: no hop to the service pool.
  if (pgf_release_never_blocks(release, ctx)) {
    release(ctx);
    return;
  }
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
  // Inline when the reader's callback never blocks: a nonblocking C
  // handler, or a handler waiting in pgf_call_read_wait (sync Python), which
  // is then woken from here, without a hop through the stream pool.
  if (pgf_call_push_request_nonblocking(call, msg) != PGF_EWOULDBLOCK) return;
  SubmitTo(GetHost().streams, RunPush, pgf_call_ref(call), msg);
}

void WriteDoneLater(pgf_call* call, bool ok, bool may_inline) {
  if (may_inline && pgf_call_write_done_nonblocking(call, ok) != PGF_EWOULDBLOCK) return;
  // ok travels as a non-null pointer: a task is two pointers.
  SubmitTo(GetHost().streams, RunWriteDone, pgf_call_ref(call),
           ok ? reinterpret_cast<void*>(1) : nullptr);
}

}  // namespace pgf_host
