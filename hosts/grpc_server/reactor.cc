#include "reactor.h"

#include <grpc/support/time.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <string>

#include "host.h"
#include "native_echo.h"

namespace pgf_host {

namespace {

// The response payload handed to gRPC; freed by the slice's destroy callback.
struct OwnedPayload {
  pgf_release_fn release;
  void* ctx;
};

// gRPC runs this on one of its own threads, where nothing may block; the
// release may take the GIL, so it goes to the service pool.
void DestroyPayload(void* p) {
  auto* owned = static_cast<OwnedPayload*>(p);
  ReleaseLater(owned->release, owned->ctx);
  delete owned;
  GetHost().outstanding_buffers.fetch_sub(1, std::memory_order_release);
}

// The call's deadline in ns since the Unix epoch; INT64_MAX for none.  Read
// from the raw gpr_timespec: ServerContext::deadline() converts it to a
// nanosecond time_point, which overflows past 2262, so a grpc-timeout of
// ~236 years or more ("2777778H", what Go and Java clients send for no
// deadline) came out as a deadline in the past.  Such deadlines, and any
// beyond INT64_MAX ns, mean no deadline.
int64_t DeadlineUnixNs(gpr_timespec raw) {
  if (gpr_time_cmp(raw, gpr_inf_future(raw.clock_type)) == 0) return INT64_MAX;
  gpr_timespec t = gpr_convert_clock_type(raw, GPR_CLOCK_REALTIME);
  if (gpr_time_cmp(t, gpr_inf_future(GPR_CLOCK_REALTIME)) == 0) return INT64_MAX;
  constexpr int64_t kNsPerSec = 1000000000;
  if (t.tv_sec >= INT64_MAX / kNsPerSec - 1) return INT64_MAX;
  if (t.tv_sec < 0) return 0;  // before the epoch: long expired
  return t.tv_sec * kNsPerSec + t.tv_nsec;
}

template <typename AddFn>
void CopyMetadata(const pgf_metadata* md, AddFn add) {
  size_t n = pgf_metadata_count(md);
  for (size_t i = 0; i < n; ++i) {
    const char* key;
    size_t key_len;
    const uint8_t* value;
    size_t value_len;
    if (pgf_metadata_get(md, i, &key, &key_len, &value, &value_len) != PGF_OK) continue;
    add(std::string(key, key_len),
        std::string(reinterpret_cast<const char*>(value), value_len));
  }
}

}  // namespace

CallReactor::CallReactor(grpc::GenericCallbackServerContext* ctx) : ctx_(ctx) {
  StartRead(&request_);
}

void CallReactor::OnReadDone(bool ok) {
  if (!ok) {
    // Half-close without a message, or the call is already gone.
    Finish(grpc::Status(grpc::StatusCode::INTERNAL, "missing request message"));
    return;
  }
  const std::string& path = ctx_->method();
  pgf_call* call = pgf_call_new(path.data(), path.size());
  if (call == nullptr) {
    Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                        "malformed method path: " + path));
    return;
  }
  bool filled = FillCall(call);
  bool cancelled;
  {
    std::lock_guard<std::mutex> lock(mu_);
    call_ = call;
    cancelled = cancelled_;
  }
  if (!filled) {
    Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        "out of memory while reading the request"));
  } else if (cancelled) {
    // Gone before it was dispatched: no handler needs to see it.
    Finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  } else if (!GetHost().workers->Post(RunDispatch, this, call)) {
    Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "server is shutting down"));
  }
}

bool CallReactor::FillCall(pgf_call* call) {
  // Zero copy when the message is one slice (small messages); otherwise
  // flatten it once.  request_slice_ keeps the bytes alive until OnDone.
  if (!request_.TrySingleSlice(&request_slice_).ok()) {
    if (!request_.DumpToSingleSlice(&request_slice_).ok()) request_slice_ = grpc::Slice();
  }
  request_.Clear();
  if (pgf_call_set_request(call, request_slice_.begin(), request_slice_.size()) != PGF_OK) {
    return false;
  }
  for (const auto& kv : ctx_->client_metadata()) {
    if (pgf_call_add_request_metadata(call, kv.first.data(), kv.first.size(),
                                      reinterpret_cast<const uint8_t*>(kv.second.data()),
                                      kv.second.size()) == PGF_ENOMEM) {
      return false;
    }
  }
  std::string peer = ctx_->peer();
  pgf_call_set_peer(call, peer.data(), peer.size());
  pgf_call_set_deadline(call, DeadlineUnixNs(ctx_->raw_deadline()));
  return true;
}

void CallReactor::RunDispatch(void* self, void* call) {
  auto* r = static_cast<CallReactor*>(self);
  auto* c = static_cast<pgf_call*>(call);
  bool cancelled;
  {
    std::lock_guard<std::mutex> lock(r->mu_);
    cancelled = r->cancelled_;
  }
  if (cancelled) {
    // Expired or abandoned while queued (overload): spend no handler time.
    r->Finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
    return;
  }
  // After a successful pgf_dispatch_async the done callback may already have
  // finished the RPC and OnDone deleted r: touch r only on failure.
  if (pgf_dispatch_async(GetHost().registry, c, HandlerDone, r) != PGF_OK) {
    r->Finish(grpc::Status(grpc::StatusCode::INTERNAL, "dispatch failed"));
  }
}

void CallReactor::HandlerDone(pgf_call* call, void* self) {
  static_cast<CallReactor*>(self)->SendAnswer(call);
}

// Runs on whatever thread finished the handler; must not block.  The last
// thing it does is start the final gRPC operation: after that, OnDone may
// delete this reactor at any moment.
void CallReactor::SendAnswer(pgf_call* call) {
  CopyMetadata(pgf_call_initial_metadata(call),
               [this](const std::string& k, const std::string& v) {
                 ctx_->AddInitialMetadata(k, v);
               });
  CopyMetadata(pgf_call_trailing_metadata(call),
               [this](const std::string& k, const std::string& v) {
                 ctx_->AddTrailingMetadata(k, v);
               });

  int code = pgf_call_status(call);
  if (code < 0 || code > 16) code = PGF_STATUS_UNKNOWN;
  size_t msg_len = 0;
  const char* msg = pgf_call_status_message(call, &msg_len);
  const uint8_t* details = nullptr;
  size_t details_len = 0;
  pgf_call_status_details(call, &details, &details_len);
  grpc::Status status =
      details_len > 0
          ? grpc::Status(static_cast<grpc::StatusCode>(code), std::string(msg, msg_len),
                         std::string(reinterpret_cast<const char*>(details), details_len))
          : grpc::Status(static_cast<grpc::StatusCode>(code), std::string(msg, msg_len));

  const uint8_t* data = nullptr;
  size_t len = 0;
  pgf_release_fn release = nullptr;
  void* release_ctx = nullptr;
  pgf_call_take_response(call, &data, &len, &release, &release_ctx);

  if (code != PGF_STATUS_OK) {
    // An error carries no message; the payload, if any, is just released.
    if (release != nullptr) ReleaseLater(release, release_ctx);
    Finish(std::move(status));
    return;
  }

  grpc::Slice payload;  // empty message when the handler set none
  const uint8_t* req = request_slice_.begin();
  if (release != nullptr && len > 0 && data >= req &&
      data + len <= req + request_slice_.size()) {
    // The answer points into the request (an echo): a new reference to the
    // request's own slice keeps the bytes alive exactly as long as gRPC needs
    // them, which the reactor alone does not (it may die first).
    payload = request_slice_.sub(data - req, data - req + len);
    if (NativeEchoAnswering()) {
      release(release_ctx);  // pure C, cheap: see native_echo.h
    } else {
      ReleaseLater(release, release_ctx);
    }
  } else if (release != nullptr) {
    GetHost().outstanding_buffers.fetch_add(1, std::memory_order_relaxed);
    payload = grpc::Slice(const_cast<uint8_t*>(data), len, DestroyPayload,
                          new OwnedPayload{release, release_ctx});
  }
  response_ = grpc::ByteBuffer(&payload, 1);

  grpc::WriteOptions options;
  if (pgf_call_compress_response(call)) {
    // A level, not set_compression_algorithm(GZIP): gRPC then picks gzip
    // (else deflate, else none) among what the client accepts, whereas a
    // forced algorithm is sent even to a client that cannot decode it.
    ctx_->set_compression_level(GRPC_COMPRESS_LEVEL_LOW);
  } else {
    options.set_no_compression();
  }
  StartWriteAndFinish(&response_, options, std::move(status));
}

void CallReactor::OnCancel() {
  pgf_call* call;
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
    call = call_;
  }
  // The cancel callback is Python's (it takes the GIL): not on this thread.
  if (call != nullptr) CancelLater(call);
}

void CallReactor::OnDone() {
  // Inline: by now the response was taken and the handler registration
  // dropped at finish, so the last reference frees plain C memory only.
  pgf_call_unref(call_);
  delete this;
}

}  // namespace pgf_host
