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
