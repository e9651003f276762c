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

// Runs on the service pool, or inline once it has stopped (late events
// during shutdown, when no worker holds the GIL any more).
void Submit(WorkerPool::Fn fn, void* a, void* b) {
  Host& h = GetHost();
  if (h.service == nullptr || !h.service->Post(fn, a, b)) fn(a, b);
}

}  // namespace

void ReleaseLater(pgf_release_fn release, void* ctx) {
  // A function pointer through void*: fine on every platform gRPC supports.
  Submit(RunRelease, reinterpret_cast<void*>(release), ctx);
}

void CancelLater(pgf_call* call) { Submit(RunCancel, pgf_call_ref(call), nullptr); }

}  // namespace pgf_host
