#include "host.h"

#include <chrono>
#include <cstdio>
#include <mutex>
#include <thread>

#include "memory_budget.h"

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

std::mutex host_mu;  // StartHost and StopHost
bool host_running = false;

}  // namespace

bool StartHost(const HostConfig& config) {
  std::lock_guard<std::mutex> lock(host_mu);
  if (host_running) return false;
  Host& host = GetHost();
  host.registry = pgf_default_registry();
  host.max_metadata_bytes = config.max_metadata_bytes;
  host.max_queued_calls = config.max_queued_calls;
  // What calls hold (their state, Python tasks included, and their messages)
  // is counted against the budget; beyond it new calls are refused and
  // writes wait (memory_budget.h).
  HostBudget().SetLimit(config.max_memory_bytes);
  // Never deleted: a late transport event during exit may still Post to a
  // stopped pool (which refuses), so the objects must outlive everything.
  // Each publishes its queue and thread counts in the shim's metrics table.
  host.workers = new WorkerPool(config.workers, config.max_workers, "pgf-worker",
                                PGF_POOL_HANDLERS, config.batch_workers);
  host.service = new WorkerPool(1, 1, "pgf-service", PGF_POOL_SERVICE);
  host.streams = new WorkerPool(2, 16, "pgf-stream", PGF_POOL_STREAMS, config.batch_workers);
  host_running = true;
  return true;
}

bool HostRunning() {
  std::lock_guard<std::mutex> lock(host_mu);
  return host_running;
}

void StopHost() {
  std::lock_guard<std::mutex> lock(host_mu);
  if (!host_running) return;
  Host& host = GetHost();
  // Nothing dispatches any more; finish what is queued.
  host.workers->Stop();
  host.streams->Stop();
  // gRPC C++ may drop its last slice references (and so release payloads)
  // shortly after its server is gone; the nghttp2 transport holds none.
  auto buffers_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (host.outstanding_buffers.load(std::memory_order_acquire) > 0 &&
         std::chrono::steady_clock::now() < buffers_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  host.service->Stop();
  host_running = false;
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
