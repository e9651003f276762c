// The host's memory budget (--max-memory-bytes): one count of what the
// calls in flight hold, whatever transport serves them.  Transport-
// independent (no gRPC, no HTTP/2): the gRPC C++ reactor
// (grpcpp/reactor.cc) and any other transport of this host charge the same
// budget by the same rules, which are:
//
//  1. A call is admitted with TryCharge(CallCost(request_stream),
//     keep_free) before anything of it is read or dispatched, and the same
//     is Release()d when it is over (the transport dropped it).  kCallCost
//     is what a dispatched stream was measured to hold, transport and
//     handler together (see below); a call whose request is a stream is
//     charged kReadAhead more, the request bytes a client may send ahead of
//     its handler's reads (rule 4).  Streams (every kind but unary: a client holds a request
//     stream open by never half-closing it, a response stream by never
//     reading it) pass keep_free = KeepFree() here and in the TryCharges of
//     rules 2 and 3: they leave a reserve of the budget to unary calls, so
//     that a flood of streams does not lock out unary clients.  Unary calls
//     pass 0.  Refused: RESOURCE_EXHAUSTED (kRefusedText), with no handler
//     run.
//
//  2. A response message the transport holds by reference (not copied into
//     its frames) is charged its size as the host takes it from the call,
//     and released when the transport drops it (the buffer's destroy
//     callback), not when the write completes.  The first such message of a
//     call goes through TryCharge: beyond the budget the call ends
//     RESOURCE_EXHAUSTED instead (its message is dropped: a new stream is
//     refused as its first bytes would pass the budget).  Later messages are
//     charged with Charge (they exist already; refusing them would break a
//     stream that was admitted).
//
//  3. Back-pressure: a write completes for the handler as it is handed to
//     the transport (so the handler makes its next message meanwhile) only
//     if TryCharge(size) of a reservation for that next message succeeds
//     (a copied message: only while used() + keep_free <= limit()); the
//     reservation is released when the next message is charged (or the
//     call ends).  Otherwise the write completes only once the transport
//     has sent it: beyond the budget, each stream holds at most one
//     response message and its producer waits.
//
//  4. Request messages are Charge()d as they arrive (they exist) and
//     Release()d when their last reference goes (a handler may keep them).
//     Reads are pulled: a request stream holds at most one HTTP/2 window
//     (64 KiB; BDP probing off) of request bytes its handler has not asked
//     for: kReadAhead, charged with the call.  (A message a handler asked
//     for may take up to the message size limit while it arrives: that is
//     the transport's buffer, which gRPC's ResourceQuota bounds.)
//
// What a stream holds is then at most CallCost() + its response message
// (+ one reserved) + the request messages its handler still references,
// all counted here.  Messages of up to kUncountedMessage bytes that the
// transport copies are part of kCallCost.  The total stays within the
// budget but for the last message of each stream already admitted (rule
// 2's Charge) and the difference of a message from its reservation.
//
// Measured with the flag at 64 MiB (release host): 6,000 half-open async
// bidi streams grew the host by +21-23 MiB (597 admitted at 96 KiB, the
// rest refused), 2,100 bidi streams each filling its window ahead of a
// handler that never reads by +59-73 MiB (597 admitted), 150 async server
// streams of 1 MiB messages to a client with a
// zero window by +62-67 MiB (28-30 admitted, two messages each; +61-93 MiB
// over 19 runs once async writes ended faster, +56-58 MiB since a refused
// message's bytes are released on the handler's thread at once); without
// the budget +141, +125 and +306 MiB (tests/e2e/test_stream_memory_budget.py).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace pgf_host {

class MemoryBudget {
 public:
  // What one dispatched stream holds beyond its messages, charged while the
  // call exists.  Measured (10:05 UTC, 2026-12-06, release host, gRPC 1.51,
  // jemalloc): half-open async bidi streams (headers only, a running task
  // waiting in its read), 4,000 on 4 connections: RSS +24.2 KiB per stream
  // (gRPC's stream and call state ~18.9 KiB, measured on the C echo, plus
  // the Python task, call and iterator ~5.3 KiB); 32 KiB leaves room for
  // the copied messages of up to kUncountedMessage bytes a stream may hold
  // (two in the gRPC C++ host; in the product host up to H2Call::kEarlyBytes,
  // 4 KiB with 32 bytes counted per copy) and for allocator slack.
  static constexpr size_t kCallCost = 32 * 1024;
  // One HTTP/2 stream window: the request bytes a client may send ahead of
  // a handler that does not read (measured: 63 KiB accepted per stream).
  static constexpr size_t kReadAhead = 64 * 1024;
  // What rule 1 charges a call: kCallCost, plus kReadAhead if its request
  // is a stream (client-streaming or bidi).
  static constexpr size_t CallCost(bool request_stream) {
    return kCallCost + (request_stream ? kReadAhead : 0);
  }
  // Messages up to this size that the transport copies are not charged one
  // by one (they are in kCallCost).
  static constexpr size_t kUncountedMessage = 1024;
  // The status text of a refusal (with RESOURCE_EXHAUSTED).
  static constexpr const char* kRefusedText =
      "server memory budget (--max-memory-bytes) exhausted";

  // limit: --max-memory-bytes.
  explicit MemoryBudget(size_t limit = size_t{1} << 30) : limit_(limit) {}

  // Set once at start-up, before any call.
  void SetLimit(size_t limit) { limit_ = limit; }
  size_t limit() const { return limit_; }
  // Bytes charged now (may exceed limit(): rule 2's Charge).
  size_t used() const { return used_.load(std::memory_order_relaxed); }

  // Charges n if used + n <= limit - keep_free after it; otherwise charges
  // nothing and returns false.  Lock-free; safe from any thread.
  bool TryCharge(size_t n, size_t keep_free = 0);
  // Charges n whatever the total: bytes that exist already.
  void Charge(size_t n) { used_.fetch_add(n, std::memory_order_relaxed); }
  // Gives back n charged bytes (exactly once per charge).
  void Release(size_t n) { used_.fetch_sub(n, std::memory_order_relaxed); }

  // The reserve calls with a request stream leave to the others (rule 1):
  // an eighth of the budget.
  size_t KeepFree() const { return limit_ / 8; }

 private:
  size_t limit_;
  std::atomic<size_t> used_{0};
};

// The host's one budget (a process has one --max-memory-bytes).
MemoryBudget& HostBudget();

}  // namespace pgf_host
