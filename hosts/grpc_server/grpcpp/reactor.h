// One RPC of any kind, served through the generic callback API and driven by
// the pgf_call's stream (csrc/pygrpc_ffi.h, "streams").  Created by
// pgf::grpc::PythonService (python_service.cc, the library's generic
// service), which both the gRPC C++ host and embedders register.
#pragma once

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>

#include <mutex>
#include <optional>

#include "pygrpc_ffi.h"

namespace pgf_host {

struct BorrowedWrite;

// Lifetime: created by CreateReactor, deleted by OnDone.  OnDone comes only
// after Finish (or StartWriteAndFinish) completed, and those are issued only
// once the handler finished (its done callback ran) or the call was never
// dispatched; the shim calls the stream function never after that, so the
// reactor outlives every use the handler makes of it.  Reactions (OnReadDone,
// OnWriteDone, OnCancel) run before OnDone.  Code on other threads (workers,
// the handler's) issues Finish as the very last thing it does with `this`.
// The reactor holds one pgf_call reference, dropped in OnDone.
//
// At most one read and one write are in flight (gRPC's rule): the handler
// pulls each read (PGF_EVENT_READ) and has at most one write outstanding.
class CallReactor final : public grpc::ServerGenericBidiReactor {
 public:
  explicit CallReactor(grpc::GenericCallbackServerContext* ctx);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  // What the read in flight is for.
  enum class Reading { kNone, kRequest, kExtra, kStream };

  static void RunDispatch(void* self, void* unused);
  static void HandlerDone(pgf_call* call, void* self);
  static void StreamEvent(pgf_call* call, int event, void* self);

  bool FillCall();
  void Dispatch();
  void OnRequestRead(bool ok);
  void OnExtraRead(bool ok);
  void OnHandlerWrite();
  void OnHandlerInitialMetadata();
  void OnHandlerDone();
  void EndWithoutHandler(grpc::Status status);
  // When the handler's write completes, if its bytes are OWNED or copied:
  // as it goes to gRPC -- on this thread, the handler's, which may run any
  // callback (kNow), or from a gRPC reaction (kSoon: inline for a
  // nonblocking C handler, else on the stream pool) -- or when gRPC is done
  // with it (kOnDone: the handler already finished).  Borrowed bytes that
  // are not copied complete when gRPC is done with them.
  enum class Report { kNow, kSoon, kOnDone };
  // A response message taken from the call (pgf_call_take_write), and what
  // of it is charged to the memory budget (memory_budget.h).
  struct Taken {
    const uint8_t* data = nullptr;
    size_t len = 0;
    pgf_release_fn release = nullptr;
    void* ctx = nullptr;
    size_t charged = 0;  // released when gRPC drops the message's slice
  };
  // Whether the message is copied into gRPC's slice (then not charged).
  bool Copied(const Taken& w) const;
  // Charges w to the memory budget as it reaches the host, in place of the
  // reservation made for it (rule 2).  false: the call's first charged
  // message would pass the budget; nothing is charged.
  bool ChargeMessage(Taken* w);
  // A message ChargeMessage refused: its bytes go back, its write fails,
  // the call is cancelled and ends RESOURCE_EXHAUSTED.
  void RefuseWrite(const Taken& w, Report report);
  // Reserves room for the handler's next message (the size of w) before
  // its write completes early (rule 3); false beyond the budget.
  bool ReserveNext(const Taken& w);
  void ReleaseReservation();
  // Starts the write of a message taken from the call; write_in_flight_ is
  // already set.
  void StartMessageWrite(const Taken& w, Report report);
  // With send_mu_ held: the initial metadata (and the compression level)
  // goes into the context before anything is sent, once.
  void CopyInitialMetadataLocked();
  // Sends a write the handler queued just before finishing, else the status
  // (after the unary response, if any).  Runs when ReadyToEndLocked() was
  // true; may be the last thing that touches `this`.
  void End();
  // Whether release(ctx) may run on any thread: none owed (borrowed bytes),
  // a nonblocking C handler's, or the call's own copy.
  bool ReleaseNeverBlocks(pgf_release_fn release, void* ctx) const {
    return release == nullptr || pgf_call_nonblocking(call_) ||
           pgf_release_never_blocks(release, ctx);
  }
  bool ReadyToEndLocked() const {
    return handler_done_ && !write_in_flight_ && !extra_pending_ && !ended_;
  }

  grpc::GenericCallbackServerContext* const ctx_;
  pgf_call* call_ = nullptr;
  int kind_ = -1;
  grpc::ByteBuffer read_buf_;
  grpc::ByteBuffer write_buf_;
  // Touched only by whoever starts the one read in flight and its OnReadDone.
  Reading reading_ = Reading::kNone;
  // The in-flight write's completion when its bytes are borrowed.
  BorrowedWrite* borrowed_ = nullptr;
  // The in-flight write was already completed for the handler (OWNED
  // bytes): OnWriteDone does not complete it again.  Touched by whoever
  // starts the one write in flight and by its OnWriteDone.
  bool write_reported_ = false;

  std::mutex mu_;
  bool cancelled_ = false;
  bool handler_done_ = false;    // the done callback ran (or no handler will)
  bool write_in_flight_ = false;
  // The handler's next write, taken while one is in flight (the previous
  // one, completed early): OnWriteDone starts it.
  std::optional<Taken> queued_;
  // Memory budget (memory_budget.h): what the call itself is charged (its
  // CallCost, from the constructor to OnDone; 0 if not admitted); a message
  // was charged; bytes reserved for the handler's next message.
  size_t admitted_ = 0;
  bool charged_any_ = false;
  size_t keep_free_ = 0;  // what this call's TryCharges leave (rule 1)
  size_t reserved_ = 0;
  bool extra_pending_ = false;   // unary request: waiting for the half-close
  bool ended_ = false;           // End() is running or ran
  std::optional<grpc::Status> forced_;  // sent instead of the handler's

  // Orders StartSendInitialMetadata against writes issued from other
  // handler threads: held while the initial metadata is copied and sent.
  // Recursive: gRPC may run a reaction inline in StartSendInitialMetadata,
  // and a nonblocking handler completed there may write at once.
  std::recursive_mutex send_mu_;
  bool md_copied_ = false;
};

}  // namespace pgf_host
