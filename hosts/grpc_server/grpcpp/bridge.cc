#include "bridge.h"

#include "../host.h"
#include "../memory_budget.h"

namespace pgf_host {

namespace {

void DestroyBorrowed(void* p) {
  auto* w = static_cast<BorrowedWrite*>(p);
  HostBudget().Release(w->charged);
  // Not inline: this may run deep inside gRPC.
  ArriveBorrowed(w, false);
}

// Owned bytes handed to gRPC; freed by the slice's destroy callback.
struct OwnedPayload {
  pgf_release_fn release;
  void* ctx;
  size_t charged;  // to the memory budget until gRPC drops the slice
};

// gRPC runs this on one of its own threads, where nothing may block; the
// release may take the GIL, so it goes to the service pool.
void DestroyPayload(void* p) {
  auto* owned = static_cast<OwnedPayload*>(p);
  HostBudget().Release(owned->charged);
  ReleaseLater(owned->release, owned->ctx);
  delete owned;
  GetHost().outstanding_buffers.fetch_sub(1, std::memory_order_release);
}

// The release of a request message: the received slice it points into,
// whose bytes were charged to the memory budget while they live.
void DeleteSlice(void* p) {
  auto* slice = static_cast<grpc::Slice*>(p);
  HostBudget().Release(slice->size());
  delete slice;
}

}  // namespace

void ArriveBorrowed(BorrowedWrite* w, bool may_inline) {
  if (w->pending.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  WriteDoneLater(w->call, w->ok.load(std::memory_order_acquire), may_inline);
  pgf_call_unref(w->call);  // plain C: WriteDoneLater holds its own
  delete w;
}

grpc::Slice BorrowedSlice(const uint8_t* data, size_t len, BorrowedWrite* w) {
  return grpc::Slice(const_cast<uint8_t*>(data), len, DestroyBorrowed, w);
}

grpc::Slice OwnedSlice(const uint8_t* data, size_t len, pgf_release_fn release, void* ctx,
                       size_t charged) {
  if (len == 0) {
    HostBudget().Release(charged);
    ReleaseLater(release, ctx);
    return grpc::Slice();
  }
  GetHost().outstanding_buffers.fetch_add(1, std::memory_order_relaxed);
  return grpc::Slice(const_cast<uint8_t*>(data), len, DestroyPayload,
                     new OwnedPayload{release, ctx, charged});
}

pgf_message* TakeMessage(grpc::ByteBuffer* buf) {
  auto* slice = new grpc::Slice;
  if (!buf->TrySingleSlice(slice).ok() && !buf->DumpToSingleSlice(slice).ok()) {
    *slice = grpc::Slice();
  }
  buf->Clear();
  // The bytes exist: charged whatever the total (DeleteSlice gives them
  // back).  Reads are pulled, so a client cannot make the host hold more
  // than the message its handler asked for and what its window lets it
  // send ahead (BDP probing is off, grpcpp_transport.cc).
  HostBudget().Charge(slice->size());
  return pgf_message_new(slice->begin(), slice->size(), DeleteSlice, slice);
}

// Read from the raw gpr_timespec: ServerContext::deadline() converts it to
// a nanosecond time_point, which overflows past 2262, so a grpc-timeout of
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

grpc::Status GrpcStatus(const CallStatus& status) {
  return grpc::Status(static_cast<grpc::StatusCode>(status.code), status.message);
}

grpc::Status HandlerGrpcStatus(pgf_call* call) {
  CallStatus status = HandlerStatus(call);
  const uint8_t* details = nullptr;
  size_t details_len = 0;
  pgf_call_status_details(call, &details, &details_len);
  if (details_len > 0) {
    return grpc::Status(static_cast<grpc::StatusCode>(status.code), status.message,
                        std::string(reinterpret_cast<const char*>(details), details_len));
  }
  return GrpcStatus(status);
}

}  // namespace pgf_host
