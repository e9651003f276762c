// Process-wide state shared by the reactors: the registry they dispatch into
// and the threads that run everything that may enter Python.
#pragma once

#include <atomic>
#include <cstdint>

#include "pygrpc_ffi.h"
#include "worker_pool.h"

namespace pgf_host {

struct Host {
  pgf_registry* registry = nullptr;
  // Runs pgf_dispatch_async: the handlers, sync ones included, so a handler
  // that blocks holds one of these threads and nothing else.
  WorkerPool* workers = nullptr;
  // Runs cancellations and response buffer releases.  Kept apart from
  // `workers` so that cancellation still reaches a handler while every
  // worker is busy in (possibly blocked) handlers.
  WorkerPool* service = nullptr;
  // Response payloads handed to gRPC and not yet released.
  std::atomic<int64_t> outstanding_buffers{0};
  // Set before Python stops: releases and cancellations arriving later are
  // leaked rather than run into a finalizing or finalized interpreter.
  std::atomic<bool> python_stopped{false};
  // Releases and cancellations that passed the python_stopped check and may
  // be in Python now.  Shutdown sets python_stopped, then waits for this to
  // reach 0 before it finalizes Python (both sequentially consistent: either
  // the late event sees the flag, or shutdown sees it running).
  std::atomic<int64_t> python_users{0};
};

// Runs fn(a, b) unless Python is stopping; returns false if it did not run.
bool RunUnlessPythonStopped(void (*fn)(void*, void*), void* a, void* b);

// Marks Python as stopping and waits until no release or cancellation can
// still be running in it.  Call before pgf_python_stop.
void StopPythonUsers();

Host& GetHost();

// release(ctx), run on the service pool (inline if it has stopped).  Safe
// from any thread, including gRPC's.
void ReleaseLater(pgf_release_fn release, void* ctx);

// pgf_call_cancel(call) on the service pool; takes its own reference.
void CancelLater(pgf_call* call);

}  // namespace pgf_host
