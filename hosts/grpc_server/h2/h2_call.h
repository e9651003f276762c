// One gRPC call over one HTTP/2 stream: the bridge between nghttp2's stream
// and the shim's pgf_call (csrc/pygrpc_ffi.h, "streams").
#pragma once

#include <nghttp2/nghttp2.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../admission.h"
#include "h2_bridge.h"
#include "pygrpc_ffi.h"

namespace pgf_host {
namespace h2 {

class Conn;
class Loop;
enum class TaskKind;

using Status = CallStatus;

// Lifetime: refcounted.  The stream holds one reference until nghttp2
// closes it (or the connection goes); a dispatched handler holds one until
// its done callback's task ran on the loop; each posted task holds one.
// Everything but the refcount, the taken writes (taken_mu_) and the
// received messages (ready_mu_) is touched only on the loop's thread:
// handler threads reach it through Loop::Post, never directly.
class H2Call {
 public:
  H2Call(Conn* conn, int32_t stream_id);
  void Ref() { refs_.fetch_add(1, std::memory_order_relaxed); }
  void Unref();

  // From nghttp2's callbacks, on the loop.
  // A request header; counted against --max-metadata-bytes before it is kept.
  void OnHeader(const uint8_t* name, size_t namelen, const uint8_t* value, size_t valuelen);
  void OnHeadersEnd();
  void OnData(const uint8_t* data, size_t len);
  void OnRemoteClose();
  void OnStreamClose(uint32_t error_code);
  ssize_t ReadData(size_t length, uint32_t* data_flags);
  int SendData(const uint8_t* framehd, size_t length);
  // The message's last frame went (after nghttp2_session_send returned).
  void OnOutSent();
  void OnDeadline();
  // The connection is going away, or the server stops: cancelled.
  void Abort(int code, const char* message);

  void RunTask(TaskKind kind, int arg);
  // Dispatches the call unless its stream closed meanwhile.
  void DispatchIfOpen();
  int64_t deadline_ms() const { return deadline_ms_; }
  bool remote_closed() const { return remote_closed_; }

 private:
  // A response message taken from the call.
  struct Taken {
    const uint8_t* data = nullptr;
    size_t len = 0;
    pgf_release_fn release = nullptr;
    void* ctx = nullptr;
    size_t charged = 0;  // to the memory budget
    uint8_t* copy = nullptr;  // ours (data points into it): free()d once sent
    bool early = false;       // completed for the handler as it was taken
    size_t early_cost = 0;    // its share of early_bytes_
  };
  static constexpr int kWriteRefused = -1;  // kRefused's arg: a write beyond the budget

  struct Out {
    uint8_t prefix[5];
    const uint8_t* data = nullptr;
    size_t len = 0;
    pgf_release_fn release = nullptr;
    void* release_ctx = nullptr;
    uint8_t* owned = nullptr;   // our own buffer (a compressed message): free()d
    size_t charged = 0;         // to the memory budget until sent
    size_t queued = 0;          // handed to nghttp2 (prefix included)
    size_t sent = 0;            // written to the connection
    bool active = false;
    bool handler_write = false; // completes the handler's write when sent
    bool early = false;         // ...which was completed as it was taken
    size_t early_cost = 0;      // its share of early_bytes_
    size_t total() const { return len + 5; }
  };

  static void HandlerDone(pgf_call* call, void* self);
  static void StreamEvent(pgf_call* call, int event, void* self);
  bool ReadInline();
  static void RunDispatch(void* self, void* unused);
  void Post(TaskKind kind, int arg = 0);

  bool FillCall();
  void Dispatch();
  void ScheduleDispatch();
  void EndWithoutHandler(Status status);
  void Refuse(int http_status, Status status);
  void SendTrailersOnly(int http_status, const Status& status);
  void Consume();
  void ParseData(const uint8_t* data, size_t len);
  void OnRequestMessage(pgf_message* msg);
  void DeliverRead();
  bool PopTaken(Taken* t);
  void StartHandlerWrite();
  bool TakeWrite(bool on_handler_thread);
  void DropTaken(const Taken& t);
  bool ChargeResponse(size_t len, size_t* charged);
  void StartOut(const Taken& t, bool handler_write);
  void FailOut();
  void EndOut(bool sent);
  void MaybeEnd();
  void DropAnswer();
  void SendHeaders();
  void SendStatus(const Status& status);
  void SubmitTrailers();
  void StreamError(Status status);
  std::vector<std::pair<std::string, std::string>> Trailers(const Status& status);
  void Finished();  // the transport side is over
  bool UnaryRequest() const;
  bool UnaryResponse() const;

  std::atomic<int> refs_{1};
  Conn* conn_;  // nullptr once the stream is gone
  Loop* const loop_;
  const int32_t id_;
  pgf_call* call_ = nullptr;
  int kind_ = -1;

  // Request headers, kept only within --max-metadata-bytes.
  std::string method_, path_, content_type_, timeout_, encoding_, accept_encoding_;
  std::vector<std::pair<std::string, std::string>> md_;
  size_t md_bytes_ = 0;
  bool md_over_ = false;
  bool headers_done_ = false;

  // Request side.
  MessageAssembler assembler_;
  // Complete, not yet read: the loop appends; the handler's thread may
  // take the front in its read (ReadInline), so both hold ready_mu_.
  std::mutex ready_mu_;
  std::deque<pgf_message*> ready_;
  std::atomic<bool> consume_posted_{false};  // a kConsume task is on its way
  size_t unconsumed_ = 0;           // received, stream window not yet reopened
  bool read_pending_ = false;
  bool remote_closed_ = false;
  bool got_request_ = false;  // unary: the one message came

  // Response side.
  Out out_;
  bool headers_sent_ = false;
  bool trailers_pending_ = false;
  std::vector<std::pair<std::string, std::string>> trailers_;
  bool ended_ = false;           // the status was submitted (or the stream reset)
  bool compress_ = false;        // responses go out gzip'ed
  bool handler_write_in_flight_ = false;
  // A response message was charged (rule 2); set on the handler's thread.
  std::atomic<bool> response_charged_{false};
  // Small messages (up to MemoryBudget::kUncountedMessage, copied) a
  // handler may have written and not yet sent, each write completed as it
  // is taken, while their copies (counted with kEarlyOverhead each for the
  // allocator) stay within kEarlyBytes: the handler makes its next messages
  // while the loop sends these; the write after them waits until they are
  // sent.  Within kCallCost, as four copies of 1 KiB were.
  static constexpr size_t kEarlyBytes = 4096;
  static constexpr size_t kEarlyOverhead = 32;
  std::atomic<size_t> early_bytes_{0};  // added by the handler's thread
  // Writes taken on the handler's thread, for the loop, in order.
  std::mutex taken_mu_;
  std::deque<Taken> taken_;
  std::atomic<bool> write_posted_{false};  // a kWrite task is on its way

  // The memory budget (memory_budget.h): what admission charged (rule 1),
  // and the reserve this call leaves to unary calls.
  size_t admitted_ = 0;
  size_t keep_free_ = 0;

  // Handler side.
  bool dispatched_ = false;
  bool handler_done_ = true;  // until dispatched
  bool cancelled_ = false;
  std::optional<Status> forced_;
  int64_t deadline_ms_ = -1;  // CLOCK_MONOTONIC; -1: none
};

}  // namespace h2
}  // namespace pgf_host
