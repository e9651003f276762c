// One unary call served through the generic callback API.
#pragma once

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>

#include <mutex>

#include "pygrpc_ffi.h"

namespace pgf_host {

// Lifetime: created by CreateReactor, deleted by OnDone.  OnDone comes only
// after Finish (or StartWriteAndFinish) completed, and those are issued only
// once the handler finished (or the call was never dispatched), so the
// reactor -- and the request bytes the handler borrows -- outlive the
// handler.  The reactor holds one pgf_call reference, dropped in OnDone.
class CallReactor final : public grpc::ServerGenericBidiReactor {
 public:
  explicit CallReactor(grpc::GenericCallbackServerContext* ctx);

  void OnReadDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  static void RunDispatch(void* self, void* call);
  static void HandlerDone(pgf_call* call, void* self);
  bool FillCall(pgf_call* call);
  void SendAnswer(pgf_call* call);

  grpc::GenericCallbackServerContext* const ctx_;
  grpc::ByteBuffer request_;
  // The request bytes the handler sees: the received slice itself, or the
  // one flat copy when the message arrived in several slices.
  grpc::Slice request_slice_;
  grpc::ByteBuffer response_;

  // Guards call_ and cancelled_ between OnReadDone and OnCancel, which gRPC
  // may run concurrently on different threads.
  std::mutex mu_;
  pgf_call* call_ = nullptr;
  bool cancelled_ = false;
};

class GenericService final : public grpc::CallbackGenericService {
 public:
  grpc::ServerGenericBidiReactor* CreateReactor(
      grpc::GenericCallbackServerContext* ctx) override {
    return new CallReactor(ctx);
  }
};

}  // namespace pgf_host
