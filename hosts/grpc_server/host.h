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
  // --max-metadata-bytes: beyond it a call ends RESOURCE_EXHAUSTED before
  // anything is copied or dispatched.
  size_t max_metadata_bytes = 16 * 1024;
  // --max-queued-calls: calls waiting for a worker; beyond it new calls are
  // answered RESOURCE_EXHAUSTED at once, on the gRPC thread.
  size_t max_queued_calls = 1000;
  // Runs pgf_dispatch_async: the handlers, sync ones included, so a handler
  // that blocks holds one of these threads and nothing else.
  WorkerPool* workers = nullptr;
  // Runs cancellations and response buffer releases.  Kept apart from
  // `workers` so that cancellation still reaches a handler while every
  // worker is busy in (possibly blocked) handlers.
  WorkerPool* service = nullptr;
  // Completes stream operations (pgf_call_push_request, pgf_call_write_done):
  // their callbacks may take the GIL, so never on gRPC's threads, and apart
  // from `workers` so that a stream is never starved by blocked handlers.
  WorkerPool* streams = nullptr;
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

// The limits and pools a transport serves with: the hosts' options, and
// pgf::grpc::ServiceOptions (include/pygrpc_ffi/grpc.hpp).
struct HostConfig {
  int workers = 4;
  int max_workers = 64;
  bool batch_workers = true;
  size_t max_metadata_bytes = 16 * 1024;
  size_t max_queued_calls = 1000;
  size_t max_memory_bytes = size_t{1} << 30;
};

// Sets the registry (pgf_default_registry), the limits and the memory
// budget, and starts the pools (handlers, streams, service).  False, with
// nothing changed, while pools started before are still running.
bool StartHost(const HostConfig& config);

// Whether StartHost ran and StopHost has not.
bool HostRunning();

// After the transport stopped (no call runs or starts): the pools finish
// what they have queued and stop, after waiting (up to 2 s) for the
// transport to drop the response buffers it still holds.  Idempotent.
void StopHost();

// release(ctx), run on the service pool (inline if it has stopped, or if it
// only frees memory: pgf_release_never_blocks).  Safe from any thread,
// including gRPC's.
void ReleaseLater(pgf_release_fn release, void* ctx);

// The completions below may run the handler's callbacks, which may take the
// GIL: they go to a pool, with their own reference to call.  Where the shim
// says the callback never blocks (the _nonblocking forms: a PGF_FLAG_NONBLOCKING
// C handler, or a handler waiting in pgf_call_read_wait/write_wait) they run
// inline on this thread instead, when the caller allows it: from a gRPC
// reaction, not from a slice's destroy callback.

// pgf_call_cancel(call), on the service pool.
void CancelLater(pgf_call* call);

// pgf_call_push_request(call, msg), on the stream pool; owns msg (NULL: the
// end of the request stream).
void PushLater(pgf_call* call, pgf_message* msg);

// pgf_call_write_done(call, ok), on the stream pool.
void WriteDoneLater(pgf_call* call, bool ok, bool may_inline);

}  // namespace pgf_host
