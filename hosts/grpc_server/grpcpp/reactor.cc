#include "reactor.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/security/auth_context.h>

#include "../admission.h"
#include "../host.h"
#include "../memory_budget.h"
#include "bridge.h"

namespace pgf_host {

// Messages up to this size are copied into gRPC's slice when their bytes
// are borrowed (or their release is a nonblocking C handler's), see
// StartMessageWrite.  Such copies are not charged to the memory budget one
// by one: they are part of MemoryBudget::kCallCost.
constexpr size_t kCopyLimit = MemoryBudget::kUncountedMessage;

CallReactor::CallReactor(grpc::GenericCallbackServerContext* ctx) : ctx_(ctx) {
  if (!MetadataWithin(ctx_->client_metadata(), GetHost().max_metadata_bytes)) {
    // Before anything is copied, looked up or read: a client that never
    // ACKs SETTINGS gets past gRPC's own limit (see FillCall).
    ended_ = true;
    CallStatus refused = MetadataTooLarge();
    CountRefused(ctx_->method(), -1, refused.code);
    Finish(GrpcStatus(refused));
    return;
  }
  const std::string& path = ctx_->method();
  call_ = pgf_call_new(path.data(), path.size());
  if (call_ == nullptr) {
    ended_ = true;
    Finish(GrpcStatus(MalformedPath(path)));
    return;
  }
  bool answered = false;
  int kind = KindFirst(call_, HandlerDone, this, &answered);
  if (answered) return;  // no handler: the call may be over, `this` gone
  kind_ = kind;
  // The memory budget (--max-memory-bytes): the call's state is charged
  // before anything is read or dispatched, or the call is refused.
  size_t admitted = 0;
  if (!Admit(kind_, &admitted, &keep_free_)) {
    ended_ = true;
    CallStatus refused{PGF_STATUS_RESOURCE_EXHAUSTED, MemoryBudget::kRefusedText};
    CountRefused(path, kind_, refused.code);
    Finish(GrpcStatus(refused));
    return;
  }
  admitted_ = admitted;
  if (UnaryRequest(kind_)) {
    // The unary fast path: dispatch as soon as the one message is here.
    reading_ = Reading::kRequest;
    StartRead(&read_buf_);
    return;
  }
  // Request streams: the handler pulls every message itself.
  if (!FillCall() || pgf_call_set_stream(call_, StreamEvent, this) != PGF_OK) {
    ended_ = true;
    Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "out of memory"));
    return;
  }
  Dispatch();
}

// The request metadata goes into the call in one block (one allocation, not
// one per entry), and only after the constructor checked its total against
// --max-metadata-bytes: gRPC 1.51 applies its own limit only once the client
// ACKed SETTINGS, so a client that never does could send thousands of
// references to one HPACK-indexed 4 KiB header per stream, each of which
// used to become a 4 KiB copy here.
bool CallReactor::FillCall() {
  if (!SetRequestMetadata(call_, ctx_->client_metadata())) return false;
  std::string peer = ctx_->peer();
  pgf_call_set_peer(call_, peer.data(), peer.size());
  pgf_call_set_deadline(call_, DeadlineUnixNs(ctx_->raw_deadline()));
  // gRPC's own auth context, so handlers see what grpcio would show them.
  std::shared_ptr<const grpc::AuthContext> auth = ctx_->auth_context();
  if (auth == nullptr) return true;
  std::vector<pgf_metadata_entry> props;
  for (const grpc::AuthProperty& p : *auth) {
    props.push_back({p.first.data(), p.first.size(),
                     reinterpret_cast<const uint8_t*>(p.second.data()), p.second.size()});
  }
  std::string identity = auth->GetPeerIdentityPropertyName();
  return pgf_call_add_auth_properties(call_, props.data(), props.size()) == PGF_OK &&
         (identity.empty() ||
          pgf_call_set_peer_identity_key(call_, identity.data(), identity.size()) == PGF_OK);
}

// May be the last thing that touches `this` (the handler may finish at once).
void CallReactor::Dispatch() {
  // A PGF_FLAG_NONBLOCKING C handler starts here, on this gRPC thread; any
  // other on a worker (RunDispatch).
  CallStatus refused;
  if (StartHandler(call_, HandlerDone, this, RunDispatch, &refused)) return;
  EndWithoutHandler(GrpcStatus(refused));
}

void CallReactor::RunDispatch(void* self, void*) {
  auto* r = static_cast<CallReactor*>(self);
  bool skip;
  {
    std::lock_guard<std::mutex> lock(r->mu_);
    skip = r->cancelled_ || r->forced_.has_value();
  }
  if (skip) {
    // Expired or abandoned while queued (overload), or already answered:
    // spend no handler time.
    r->EndWithoutHandler(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
    return;
  }
  // After a successful pgf_dispatch_async the done callback may already have
  // ended the RPC and OnDone deleted r: touch r only on failure.
  if (pgf_dispatch_async(GetHost().registry, r->call_, HandlerDone, r) != PGF_OK) {
    r->EndWithoutHandler(grpc::Status(grpc::StatusCode::INTERNAL, "dispatch failed"));
  }
}

// ------------------------------------------------------------------ reads

void CallReactor::OnReadDone(bool ok) {
  switch (reading_) {
    case Reading::kRequest:
      OnRequestRead(ok);
      return;
    case Reading::kExtra:
      OnExtraRead(ok);
      return;
    case Reading::kStream: {
      // Half-close or a broken stream: the end of the request stream.
      pgf_message* msg = ok ? TakeMessage(&read_buf_) : nullptr;
      PushLater(call_, msg);
      return;
    }
    case Reading::kNone:
      return;
  }
}

void CallReactor::OnRequestRead(bool ok) {
  if (!ok) {
    // Half-close before any message (or the client is gone): never dispatched.
    ended_ = true;
    CallStatus refused = NotOneRequest(ctx_->method());
    CountRefused(ctx_->method(), kind_, refused.code);
    Finish(GrpcStatus(refused));
    return;
  }
  pgf_message* msg = TakeMessage(&read_buf_);
  bool filled = msg != nullptr && pgf_call_set_request_message(call_, msg) == PGF_OK &&
                FillCall() &&
                (kind_ != PGF_KIND_SERVER_STREAMING ||
                 pgf_call_set_stream(call_, StreamEvent, this) == PGF_OK);
  if (!filled) {
    ended_ = true;
    Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        "out of memory while reading the request"));
    return;
  }
  // Look for a second message (or the half-close) while the handler runs;
  // the RPC ends only once it is known.  Started before the dispatch, after
  // which `this` must not be touched.
  {
    std::lock_guard<std::mutex> lock(mu_);
    extra_pending_ = true;
  }
  reading_ = Reading::kExtra;
  StartRead(&read_buf_);
  Dispatch();
}

void CallReactor::OnExtraRead(bool ok) {
  // A reaction: `this` lives until it returns, whatever other threads do.
  bool end;
  {
    std::lock_guard<std::mutex> lock(mu_);
    extra_pending_ = false;
    if (ok) forced_ = GrpcStatus(NotOneRequest(ctx_->method()));
    end = ReadyToEndLocked();
    if (end) ended_ = true;
  }
  if (ok) {
    read_buf_.Clear();
    // The handler stops; its answer is replaced.
    if (!end) CancelLater(call_);
  }
  if (end) End();
}

// ---------------------------------------------------------- stream events

// Runs on the handler's thread, inside pgf_call_read / pgf_call_write /
// pgf_call_send_initial_metadata; never blocks.  The shim never calls it
// once the call is finished, and finishing waits for it to return.
void CallReactor::StreamEvent(pgf_call*, int event, void* self) {
  auto* r = static_cast<CallReactor*>(self);
  switch (event) {
    case PGF_EVENT_READ:
      // One read at a time: the handler asks for the next one only after
      // this one was pushed.
      r->reading_ = Reading::kStream;
      r->StartRead(&r->read_buf_);
      break;
    case PGF_EVENT_WRITE:
      r->OnHandlerWrite();
      break;
    case PGF_EVENT_INITIAL_METADATA:
      r->OnHandlerInitialMetadata();
      break;
    default:
      break;
  }
}

void CallReactor::OnHandlerWrite() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (ended_) return;  // End() takes it
  }
  // Taken at once, even while a write is in flight: its size is charged to
  // the memory budget as it reaches the host (memory_budget.h, rule 2).
  Taken w;
  if (pgf_call_take_write(call_, &w.data, &w.len, &w.release, &w.ctx, nullptr) != PGF_OK) {
    // Cancelled meanwhile: the shim completed it.  The handler is still
    // running (the shim waits for this function before finishing).
    return;
  }
  if (!ChargeMessage(&w)) {
    RefuseWrite(w, Report::kNow);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (write_in_flight_) {
      // The write before it was completed as it went to gRPC, which still
      // sends it: OnWriteDone starts this one.
      queued_ = w;
      return;
    }
    write_in_flight_ = true;
  }
  // On the handler's own thread: its write may complete here.
  StartMessageWrite(w, Report::kNow);
}

void CallReactor::CopyInitialMetadataLocked() {
  if (md_copied_) return;
  md_copied_ = true;
  ForEachMetadata(pgf_call_initial_metadata(call_),
                  [this](const std::string& k, const std::string& v) {
                    ctx_->AddInitialMetadata(k, v);
                  });
  if (pgf_call_compress_response(call_)) {
    // A level, not set_compression_algorithm(GZIP): gRPC then picks gzip
    // (else deflate, else none) among what the client accepts, whereas a
    // forced algorithm is sent even to a client that cannot decode it.
    ctx_->set_compression_level(GRPC_COMPRESS_LEVEL_LOW);
  }
}

void CallReactor::OnHandlerInitialMetadata() {
  std::lock_guard<std::recursive_mutex> lock(send_mu_);
  if (md_copied_) return;  // already on its way with a write
  CopyInitialMetadataLocked();
  StartSendInitialMetadata();
}

// ----------------------------------------------------------------- writes

bool CallReactor::Copied(const Taken& w) const {
  return w.len <= kCopyLimit && ReleaseNeverBlocks(w.release, w.ctx);
}

bool CallReactor::ChargeMessage(Taken* w) {
  size_t reserved;
  bool first;
  {
    std::lock_guard<std::mutex> lock(mu_);
    reserved = reserved_;
    reserved_ = 0;
    first = !charged_any_;
  }
  MemoryBudget& budget = HostBudget();
  budget.Release(reserved);  // this message takes the reservation's place
  w->charged = 0;
  if (w->len == 0 || Copied(*w)) return true;  // in kCallCost
  if (first) {
    // The call's first message held by reference: refused beyond the
    // budget, as a new stream would be.
    if (!budget.TryCharge(w->len, keep_free_)) return false;
  } else {
    budget.Charge(w->len);  // the stream was admitted: it waits instead
  }
  w->charged = w->len;
  std::lock_guard<std::mutex> lock(mu_);
  charged_any_ = true;
  return true;
}

void CallReactor::RefuseWrite(const Taken& w, Report report) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!forced_) {
      forced_ = grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, MemoryBudget::kRefusedText);
    }
  }
  if (w.release != nullptr) ReleaseLater(w.release, w.ctx);
  // The handler learns it (its write failed, then the call is cancelled),
  // stops, and its status is replaced.
  if (report == Report::kNow) {
    pgf_call_write_done(call_, 0);
  } else {
    WriteDoneLater(call_, false, report == Report::kSoon && pgf_call_nonblocking(call_) != 0);
  }
  CancelLater(call_);
}

void CallReactor::ReleaseReservation() {
  size_t reserved;
  {
    std::lock_guard<std::mutex> lock(mu_);
    reserved = reserved_;
    reserved_ = 0;
  }
  HostBudget().Release(reserved);
}

bool CallReactor::ReserveNext(const Taken& w) {
  MemoryBudget& budget = HostBudget();
  if (w.charged == 0) return budget.used() + keep_free_ <= budget.limit();
  if (!budget.TryCharge(w.charged, keep_free_)) return false;
  std::lock_guard<std::mutex> lock(mu_);
  reserved_ = w.charged;
  return true;
}

void CallReactor::StartMessageWrite(const Taken& w, Report report) {
  {
    std::lock_guard<std::recursive_mutex> lock(send_mu_);
    CopyInitialMetadataLocked();
  }
  grpc::Slice slice;
  // Small BORROWED messages, and small OWNED ones whose release never
  // blocks (a nonblocking C handler's, or the call's own copy), are copied:
  // gRPC copies messages this small into its frames anyway, and a copy of a
  // few bytes costs far less than the release (or the completion) that would
  // otherwise wait for gRPC to drop the slice, on another thread.
  bool copy = Copied(w);
  if (copy || w.release != nullptr) {
    if (copy) {
      if (w.len > 0) slice = grpc::Slice(w.data, w.len);
      if (w.release != nullptr) w.release(w.ctx);  // plain C that never blocks
    } else {
      slice = OwnedSlice(w.data, w.len, w.release, w.ctx, w.charged);
    }
    // The bytes now live in the slice until gRPC drops it: the write is
    // complete for the handler as it is handed to gRPC (pgf_call_write_done:
    // "handed to the transport"), so the handler makes its next message
    // while gRPC sends this one, and waits (queued_) only if it is faster:
    // at most two messages per stream are in the host.  Only within the
    // memory budget, though, which reserves room for that next message
    // (memory_budget.h, rule 3); beyond it the write completes in
    // OnWriteDone, once gRPC sent it, and the stream holds one message.
    bool early = report != Report::kOnDone && ReserveNext(w);
    write_reported_ = early;
    if (early && report == Report::kNow) {
      pgf_call_write_done(call_, 1);
    } else if (early) {
      // From a gRPC reaction: a nonblocking C handler's callback runs here;
      // any other on the stream pool, even one that never blocks: waking a
      // handler thread from here slowed Python server streams (the gRPC
      // thread is their bottleneck), the pool absorbs the wake-ups.
      WriteDoneLater(call_, true, pgf_call_nonblocking(call_) != 0);
    }
  } else {
    auto* bw = new BorrowedWrite{pgf_call_ref(call_), w.charged};
    borrowed_ = bw;
    if (w.len == 0) {
      bw->pending.store(1, std::memory_order_relaxed);  // no slice to wait for
    } else {
      slice = BorrowedSlice(w.data, w.len, bw);
    }
  }
  write_buf_ = grpc::ByteBuffer(&slice, 1);
  grpc::WriteOptions options;
  if (!pgf_call_compress_response(call_)) options.set_no_compression();
  StartWrite(&write_buf_, options);
}

void CallReactor::OnWriteDone(bool ok) {
  // A reaction: `this` lives until it returns.
  write_buf_.Clear();  // gRPC's own references may outlive this one
  BorrowedWrite* borrowed = borrowed_;
  borrowed_ = nullptr;
  bool reported = write_reported_;
  write_reported_ = false;
  bool end = false;
  std::optional<Taken> next;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (queued_) {
      // The handler's next write waits (its previous one was reported when
      // it went to gRPC): it goes now, still counted as in flight.
      next = queued_;
      queued_.reset();
    } else {
      write_in_flight_ = false;
      end = ReadyToEndLocked();
      if (end) ended_ = true;
    }
  }
  // Cleared first: the handler's next write may come at once.
  if (borrowed != nullptr) {
    borrowed->ok.store(ok, std::memory_order_release);
    ArriveBorrowed(borrowed, true);
  } else if (!reported) {
    WriteDoneLater(call_, ok, true);
  } else if (!ok) {
    // Completed for the handler already, yet not sent: the stream is broken.
    // gRPC cancels the RPC then (OnCancel); the handler learns it here too,
    // in case that comes late (pgf_call_cancel is idempotent).
    CancelLater(call_);
  }
  // On a gRPC thread: the completion runs here only if it never blocks.
  if (next) StartMessageWrite(*next, Report::kSoon);
  if (end) End();
}

// ------------------------------------------------------------- completion

void CallReactor::HandlerDone(pgf_call*, void* self) {
  static_cast<CallReactor*>(self)->OnHandlerDone();
}

// Runs on whatever thread finished the handler; must not block.
void CallReactor::OnHandlerDone() {
  bool end;
  {
    std::lock_guard<std::mutex> lock(mu_);
    handler_done_ = true;
    end = ReadyToEndLocked();
    if (end) ended_ = true;
  }
  if (end) End();
}

void CallReactor::EndWithoutHandler(grpc::Status status) {
  CountRefused(ctx_->method(), kind_, static_cast<int>(status.error_code()));
  bool end;
  {
    std::lock_guard<std::mutex> lock(mu_);
    handler_done_ = true;
    if (!forced_) forced_ = std::move(status);
    end = ReadyToEndLocked();
    if (end) ended_ = true;
  }
  if (end) End();
}

void CallReactor::End() {
  // The handler makes no next message: its reservation goes back.
  ReleaseReservation();
  std::optional<grpc::Status> forced;
  {
    std::lock_guard<std::mutex> lock(mu_);
    forced = forced_;
  }
  const uint8_t* data = nullptr;
  size_t len = 0;
  pgf_release_fn release = nullptr;
  void* release_ctx = nullptr;

  // A write the handler queued just before it finished goes first (before
  // the status, as the shim promises); OnWriteDone ends the RPC after it.
  Taken w;
  if (pgf_call_take_write(call_, &w.data, &w.len, &w.release, &w.ctx, nullptr) == PGF_OK) {
    if (!forced && ChargeMessage(&w)) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        write_in_flight_ = true;
        ended_ = false;
      }
      // The handler is done: reported when gRPC is (OnWriteDone).
      StartMessageWrite(w, Report::kOnDone);
      return;
    }
    if (!forced) {
      forced = grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, MemoryBudget::kRefusedText);
    }
    if (w.release != nullptr) ReleaseLater(w.release, w.ctx);
    WriteDoneLater(call_, false, false);
  }

  if (forced) {
    // Answered by the host (two request messages, never dispatched): none of
    // the handler's answer is sent.
    pgf_call_take_response(call_, &data, &len, &release, &release_ctx);
    if (release != nullptr) ReleaseLater(release, release_ctx);
    Finish(std::move(*forced));
    return;
  }

  grpc::Status status = HandlerGrpcStatus(call_);
  {
    std::lock_guard<std::recursive_mutex> lock(send_mu_);
    CopyInitialMetadataLocked();
  }
  ForEachMetadata(pgf_call_trailing_metadata(call_),
                  [this](const std::string& k, const std::string& v) {
                    ctx_->AddTrailingMetadata(k, v);
                  });
  pgf_call_take_response(call_, &data, &len, &release, &release_ctx);
  bool has_response = release != nullptr || len > 0;
  if (!status.ok() || !(has_response || UnaryResponse(kind_))) {
    // An error carries no response message; streams end without one unless
    // the handler set it.
    if (release != nullptr) ReleaseLater(release, release_ctx);
    Finish(std::move(status));
    return;
  }
  // The unary answer (an empty message when the handler set none).  A small
  // one whose release never blocks (a nonblocking C handler's, or the call's
  // own copy of a Python answer) is copied and released here, rather than
  // from gRPC's slice destroy callback through the service thread.
  // (Releasing a Python object inline on the handler's thread measured no
  // gain: 0.98x.)
  grpc::Slice payload;
  if (release != nullptr && len <= kCopyLimit && ReleaseNeverBlocks(release, release_ctx)) {
    if (len > 0) payload = grpc::Slice(data, len);
    release(release_ctx);
  } else if (release != nullptr) {
    // Held by gRPC until sent: charged to the memory budget (rule 2); the
    // answer that would pass it is replaced by RESOURCE_EXHAUSTED.
    Taken answer{data, len, release, release_ctx};
    if (!ChargeMessage(&answer)) {
      ReleaseLater(release, release_ctx);
      Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, MemoryBudget::kRefusedText));
      return;
    }
    payload = OwnedSlice(data, len, release, release_ctx, answer.charged);
  }
  write_buf_ = grpc::ByteBuffer(&payload, 1);
  grpc::WriteOptions options;
  if (!pgf_call_compress_response(call_)) options.set_no_compression();
  StartWriteAndFinish(&write_buf_, options, std::move(status));
}

void CallReactor::OnCancel() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
  }
  // The cancel callback is Python's (it takes the GIL): not on this thread.
  // It also completes a read or write the handler waits for.
  if (call_ != nullptr) CancelLater(call_);
}

void CallReactor::OnDone() {
  // Inline: by now the response was taken and the handler registration
  // dropped at finish, so the last reference frees plain C memory only.
  pgf_call_unref(call_);
  ReleaseReservation();
  HostBudget().Release(admitted_);
  delete this;
}

}  // namespace pgf_host
