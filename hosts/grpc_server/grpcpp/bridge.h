// The byte and metadata bridge between gRPC C++ and the shim: request
// messages out of gRPC's byte buffers, response bytes into gRPC slices
// without a copy (their release runs when gRPC drops the slice), metadata,
// deadlines and statuses both ways.  Every byte held here is charged to the
// memory budget (../memory_budget.h) while it lives.
#pragma once

#include <grpc/support/time.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/config.h>
#include <grpcpp/support/slice.h>
#include <grpcpp/support/status.h>

#include <atomic>
#include <cstdint>
#include <string>

#include "../admission.h"
#include "../metadata.h"
#include "pygrpc_ffi.h"

namespace pgf_host {

// The message gRPC delivered into buf, without a copy when it is one slice
// (small messages); flattened once otherwise.  buf is emptied.  NULL on
// allocation failure.
pgf_message* TakeMessage(grpc::ByteBuffer* buf);

// A slice over owned bytes: release(ctx) runs once gRPC is done with them
// (on the service pool), and the `charged` bytes go back to the memory
// budget then.
grpc::Slice OwnedSlice(const uint8_t* data, size_t len, pgf_release_fn release, void* ctx,
                       size_t charged);

// A write of borrowed bytes (release NULL): the handler may reuse them once
// pgf_call_write_done ran, so that waits for both OnWriteDone
// (ArriveBorrowed) and the destroy callback of the slice that lends them to
// gRPC (BorrowedSlice).
struct BorrowedWrite {
  pgf_call* call;  // own reference
  size_t charged;  // to the memory budget until gRPC drops the slice
  std::atomic<int> pending{2};
  std::atomic<bool> ok{false};
};

// A slice lending w's bytes to gRPC.
grpc::Slice BorrowedSlice(const uint8_t* data, size_t len, BorrowedWrite* w);

// One of the two arrivals; the last completes the write (inline if
// may_inline and the shim allows it) and frees w.
void ArriveBorrowed(BorrowedWrite* w, bool may_inline);

// The call's deadline in ns since the Unix epoch; INT64_MAX for none.
int64_t DeadlineUnixNs(gpr_timespec raw);

// A status the host answers with, as gRPC's.
grpc::Status GrpcStatus(const CallStatus& status);

// The handler's status, with its details.
grpc::Status HandlerGrpcStatus(pgf_call* call);

}  // namespace pgf_host
