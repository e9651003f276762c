#include "h2_call.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "../host.h"
#include "../memory_budget.h"
#include "grpc_wire.h"
#include "h2_bridge.h"
#include "h2_server.h"

namespace pgf_host {
namespace h2 {

namespace {

ssize_t ReadCb(nghttp2_session*, int32_t, uint8_t*, size_t length, uint32_t* data_flags,
               nghttp2_data_source* source, void*) {
  return static_cast<H2Call*>(source->ptr)->ReadData(length, data_flags);
}

}  // namespace

H2Call::H2Call(Conn* conn, int32_t stream_id)
    : conn_(conn), loop_(conn->loop()), id_(stream_id) {
  loop_->server()->live_calls.fetch_add(1, std::memory_order_relaxed);
}

void H2Call::Unref() {
  if (refs_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  // The last reference goes on the loop (or on a handler's thread, in a
  // stream event's guard): the handler is done and took (or never had) its
  // answer, and the stream is closed, so only plain C memory is freed.
  for (pgf_message* m : ready_) pgf_message_unref(m);
  assembler_.Free();
  HostBudget().Release(admitted_);
  Server* server = loop_->server();
  if (call_ != nullptr) pgf_call_unref(call_);
  delete this;
  server->live_calls.fetch_sub(1, std::memory_order_release);
}

bool H2Call::UnaryRequest() const { return pgf_host::UnaryRequest(kind_); }

bool H2Call::UnaryResponse() const { return pgf_host::UnaryResponse(kind_); }

// ------------------------------------------------------------- headers

void H2Call::OnHeader(const uint8_t* name, size_t namelen, const uint8_t* value,
                      size_t valuelen) {
  // Counted as HPACK counts a header list (RFC 7541 4.1) before anything is
  // kept: a client repeating a 4 KiB indexed header costs us nothing past
  // the limit (nghttp2 hands us its table's own copy).
  md_bytes_ += MetadataEntryCost(namelen, valuelen);
  if (md_bytes_ > conn_->config().max_metadata_bytes) md_over_ = true;
  if (md_over_ || headers_done_) return;  // client trailers: counted, ignored
  std::string k(reinterpret_cast<const char*>(name), namelen);
  std::string v(reinterpret_cast<const char*>(value), valuelen);
  if (k[0] == ':') {
    if (k == ":method") method_ = std::move(v);
    else if (k == ":path") path_ = std::move(v);
    return;
  }
  if (k == "content-type") content_type_ = std::move(v);
  else if (k == "grpc-timeout") timeout_ = std::move(v);
  else if (k == "grpc-encoding") encoding_ = std::move(v);
  else if (k == "grpc-accept-encoding") accept_encoding_ = std::move(v);
  else if (k == "te") return;
  else if (BinaryKey(k.data(), k.size())) {
    std::string raw;
    if (Base64Decode(v, &raw)) md_.emplace_back(std::move(k), std::move(raw));
  } else {
    md_.emplace_back(std::move(k), std::move(v));
  }
}

void H2Call::OnHeadersEnd() {
  headers_done_ = true;
  if (md_over_) {
    Refuse(200, MetadataTooLarge());
    return;
  }
  if (method_ != "POST") {
    Refuse(405, Status{PGF_STATUS_UNIMPLEMENTED, "method must be POST"});
    return;
  }
  const char kGrpc[] = "application/grpc";
  if (content_type_.compare(0, sizeof kGrpc - 1, kGrpc) != 0 ||
      (content_type_.size() > sizeof kGrpc - 1 && content_type_[sizeof kGrpc - 1] != '+' &&
       content_type_[sizeof kGrpc - 1] != ';')) {
    Refuse(415, Status{PGF_STATUS_INTERNAL, "invalid content-type: " + content_type_});
    return;
  }
  call_ = pgf_call_new(path_.data(), path_.size());
  if (call_ == nullptr) {
    Refuse(200, MalformedPath(path_));
    return;
  }
  bool answered = false;
  kind_ = KindFirst(call_, HandlerDone, this, &answered);
  if (answered) {
    // No handler: the shim's answer comes as a kDone task, later on this
    // loop, with the dispatch's reference.
    dispatched_ = true;
    handler_done_ = false;
    Ref();
    return;
  }
  if (!encoding_.empty() && encoding_ != "identity" && encoding_ != "gzip" &&
      encoding_ != "deflate") {
    Refuse(200, Status{PGF_STATUS_UNIMPLEMENTED,
                       "Compression algorithm '" + encoding_ + "' is not supported"});
    return;
  }
  // The memory budget (--max-memory-bytes), before anything is copied or
  // dispatched.
  if (!Admit(kind_, &admitted_, &keep_free_)) {
    Refuse(200, Status{PGF_STATUS_RESOURCE_EXHAUSTED, MemoryBudget::kRefusedText});
    return;
  }
  if (!FillCall()) {
    Refuse(200, Status{PGF_STATUS_RESOURCE_EXHAUSTED, "out of memory"});
    return;
  }
  if (UnaryRequest()) {
    // The unary fast path: dispatched as soon as the one message is here.
    if (kind_ == PGF_KIND_SERVER_STREAMING &&
        pgf_call_set_stream(call_, StreamEvent, this) != PGF_OK) {
      Refuse(200, Status{PGF_STATUS_RESOURCE_EXHAUSTED, "out of memory"});
    }
    return;
  }
  // Request streams: the handler pulls every message itself.
  if (pgf_call_set_stream(call_, StreamEvent, this) != PGF_OK) {
    Refuse(200, Status{PGF_STATUS_RESOURCE_EXHAUSTED, "out of memory"});
    return;
  }
  ScheduleDispatch();
}

// The request metadata goes into the call in one block, after the header
// list passed --max-metadata-bytes.
bool H2Call::FillCall() {
  if (!SetRequestMetadata(call_, md_)) return false;
  md_.clear();
  md_.shrink_to_fit();
  pgf_call_set_peer(call_, conn_->peer().data(), conn_->peer().size());
  // One block per call; a connection's properties are computed once.
  const auto& auth = conn_->auth_properties();
  if (pgf_call_add_auth_properties(call_, auth.data(), auth.size()) != PGF_OK) return false;
  const std::string& identity = conn_->identity_key();
  if (!identity.empty() &&
      pgf_call_set_peer_identity_key(call_, identity.data(), identity.size()) != PGF_OK)
    return false;
  int64_t timeout_ns;
  if (!timeout_.empty() && ParseTimeout(timeout_, &timeout_ns)) {
    // Past what int64 ns since 1970 holds (Go and Java send 2777778H for
    // none): no deadline.
    int64_t now = RealtimeNs();
    if (timeout_ns < INT64_MAX - now) {
      pgf_call_set_deadline(call_, now + timeout_ns);
      deadline_ms_ = MonotonicMs() + timeout_ns / 1000000;
      loop_->AddDeadline(deadline_ms_, this);
    }
  }
  return true;
}

// ------------------------------------------------------------ dispatch

// After the bytes read with the request were all processed: a request
// reset in the same read (rapid reset: HEADERS, DATA, RST_STREAM in one
// packet) never reaches a handler, a worker or the queue.
void H2Call::DispatchIfOpen() {
  if (conn_ != nullptr && !ended_ && !dispatched_ && !forced_) {
    Dispatch();
  } else if (!dispatched_) {
    handler_done_ = true;  // none will run
    if (forced_ && !ended_) EndWithoutHandler(*forced_);
  }
  Unref();  // DispatchSoon's
}

void H2Call::ScheduleDispatch() {
  handler_done_ = false;  // one will run, unless the stream closes first
  conn_->DispatchSoon(this);
}

void H2Call::Dispatch() {
  dispatched_ = true;
  handler_done_ = false;
  Ref();  // the handler's, until its kDone task ran
  // A PGF_FLAG_NONBLOCKING C handler starts here, on the loop; any other on
  // a worker (RunDispatch).
  Status refused;
  if (StartHandler(call_, HandlerDone, this, RunDispatch, &refused)) return;
  Unref();
  EndWithoutHandler(std::move(refused));
}

// On a worker.
void H2Call::RunDispatch(void* self, void*) {
  auto* c = static_cast<H2Call*>(self);
  // Expired or abandoned while queued (overload): no handler time.  The
  // dispatch's reference goes with the task.
  if (pgf_call_is_cancelled(c->call_)) {
    c->Post(TaskKind::kRefused, PGF_STATUS_CANCELLED);
    return;
  }
  if (pgf_dispatch_async(GetHost().registry, c->call_, HandlerDone, c) != PGF_OK) {
    c->Post(TaskKind::kRefused, PGF_STATUS_INTERNAL);
  }
}

void H2Call::HandlerDone(pgf_call*, void* self) {
  // Any thread; the dispatch's reference goes with the task.
  static_cast<H2Call*>(self)->Post(TaskKind::kDone);
}

// On the handler's thread, inside pgf_call_read / write /
// send_initial_metadata: never blocks, and never touches the stream.
void H2Call::StreamEvent(pgf_call*, int event, void* self) {
  auto* c = static_cast<H2Call*>(self);
  TaskKind kind;
  switch (event) {
    case PGF_EVENT_READ:
      if (c->ReadInline()) return;
      kind = TaskKind::kRead;
      break;
    case PGF_EVENT_WRITE:
      // Completing the write here may finish the call on this thread (its
      // done callback is not waited for then) and the loop may end it at
      // once: a reference keeps `c` while we are in it.
      c->Ref();
      c->TakeWrite(true);
      c->Unref();
      return;
    case PGF_EVENT_INITIAL_METADATA: kind = TaskKind::kInitialMd; break;
    default: return;
  }
  c->Ref();
  c->Post(kind);
}

// On the handler's thread, inside pgf_call_read: a message already received
// is handed over here, without a hop to the loop and back (the read
// completes on this thread); the loop is only asked to reopen the window.
// Messages arrive in order and a handler has one read at a time, so the
// front is the one its read wants.  False if none is waiting.
bool H2Call::ReadInline() {
  pgf_message* msg;
  {
    std::lock_guard<std::mutex> lock(ready_mu_);
    if (ready_.empty()) return false;
    msg = ready_.front();
    ready_.pop_front();
  }
  Ref();
  if (!consume_posted_.exchange(true, std::memory_order_acq_rel)) {
    Ref();
    Post(TaskKind::kConsume);
  }
  pgf_call_push_request(call_, msg);  // released there if the call is over
  Unref();
  return true;
}

// On the handler's thread (posting the kWrite), or on the loop for a write
// left queued at the finish: the message is taken and charged to the memory
// budget here, so that a write beyond it fails at once for the handler (as
// in the gRPC C++ host) instead of after a hop to the loop, while the
// handler makes more.  True if it was queued for the loop.
bool H2Call::TakeWrite(bool on_handler_thread) {
  Taken t;
  if (pgf_call_take_write(call_, &t.data, &t.len, &t.release, &t.ctx, nullptr) != PGF_OK) {
    return false;
  }
  if (!ChargeResponse(t.len, &t.charged)) {
    if (t.release != nullptr) {
      // On the handler's own thread, which may wait (a nonblocking handler
      // may be on a loop: not there), the refused bytes go at once: a
      // release queued behind busy Python threads let the bytes of many
      // refused messages outlive what the budget counts.
      if (on_handler_thread && !pgf_call_nonblocking(call_)) {
        t.release(t.ctx);
      } else {
        ReleaseLater(t.release, t.ctx);
      }
    }
    if (!on_handler_thread) {
      // On the loop (the handler finished with this write queued).
      WriteDoneLater(call_, false, true);
      if (!forced_) forced_ = Status{PGF_STATUS_RESOURCE_EXHAUSTED, MemoryBudget::kRefusedText};
      return false;
    }
    Ref();
    Post(TaskKind::kRefused, kWriteRefused);
    pgf_call_write_done(call_, 0);
    CancelLater(call_);
    return false;
  }
  // A small message whose bytes may be copied here (borrowed, or released
  // without blocking) is copied and its write completed at once while the
  // copies not yet sent stay within kEarlyBytes: the handler makes its next
  // messages while the loop sends these, and a write beyond waits until it
  // is sent.
  size_t cost = t.len + kEarlyOverhead;
  bool room = early_bytes_.load(std::memory_order_acquire) + cost <= kEarlyBytes;
  if (on_handler_thread && room && t.len <= MemoryBudget::kUncountedMessage &&
      (t.release == nullptr || pgf_call_nonblocking(call_) ||
       pgf_release_never_blocks(t.release, t.ctx))) {
    t.copy = static_cast<uint8_t*>(std::malloc(t.len + 1));
    if (t.copy != nullptr) {
      if (t.len != 0) std::memcpy(t.copy, t.data, t.len);  // data may be NULL
      if (t.release != nullptr) t.release(t.ctx);  // never blocks
      t.data = t.copy;
      t.release = nullptr;
      t.early = true;
      t.early_cost = cost;
      early_bytes_.fetch_add(cost, std::memory_order_acq_rel);
    }
  }
  {
    std::lock_guard<std::mutex> lock(taken_mu_);
    taken_.push_back(t);
  }
  // One kWrite task at a time: the loop sends whatever is taken, in order,
  // one message after the other (OnOutSent).
  if (on_handler_thread && !write_posted_.exchange(true, std::memory_order_acq_rel)) {
    Ref();
    Post(TaskKind::kWrite);
  }
  if (t.early) pgf_call_write_done(call_, 1);
  return true;
}

// Rule 2 of memory_budget.h: a response message held by reference is
// charged until sent; the call's first one only within the budget.
bool H2Call::ChargeResponse(size_t len, size_t* charged) {
  *charged = 0;
  if (len <= MemoryBudget::kUncountedMessage) return true;
  MemoryBudget& budget = HostBudget();
  if (!response_charged_.exchange(true)) {
    if (!budget.TryCharge(len, keep_free_)) {
      response_charged_ = false;
      return false;
    }
  } else {
    budget.Charge(len);  // the stream was admitted: it waits instead
  }
  *charged = len;
  return true;
}

// The task carries one reference: a new one (stream events) or the
// dispatch's (kDone, kRefused).
void H2Call::Post(TaskKind kind, int arg) { loop_->Post(Task{this, kind, arg}); }

void H2Call::RunTask(TaskKind kind, int arg) {
  switch (kind) {
    case TaskKind::kRead:
      read_pending_ = true;
      if (!ended_) Consume();
      DeliverRead();
      break;
    case TaskKind::kWrite:
      write_posted_.store(false, std::memory_order_release);  // before taken_ is read
      // One message in flight per stream: the next waits for it (OnOutSent).
      if (!handler_write_in_flight_) StartHandlerWrite();
      break;
    case TaskKind::kConsume:
      consume_posted_.store(false, std::memory_order_release);
      if (!ended_) Consume();
      break;
    case TaskKind::kInitialMd:
      if (!headers_sent_ && !ended_ && conn_ != nullptr) SendHeaders();
      break;
    case TaskKind::kDone:
      handler_done_ = true;
      if (ended_) {
        DropAnswer();
      } else {
        MaybeEnd();
      }
      break;
    case TaskKind::kRefused:
      if (arg == kWriteRefused) {
        // A write beyond the memory budget: the handler was told and
        // cancelled; its status is replaced.
        if (!forced_) forced_ = Status{PGF_STATUS_RESOURCE_EXHAUSTED, MemoryBudget::kRefusedText};
        MaybeEnd();
        break;
      }
      handler_done_ = true;
      EndWithoutHandler(Status{arg, arg == PGF_STATUS_CANCELLED ? "cancelled" : "dispatch failed"});
      break;
  }
  Unref();
}

void H2Call::EndWithoutHandler(Status status) {
  CountRefused(path_, kind_, status.code);
  handler_done_ = true;
  if (!forced_) forced_ = std::move(status);
  MaybeEnd();
}

// Answered without a handler, which counts in the shim's metrics as every
// call does.
void H2Call::Refuse(int http_status, Status status) {
  CountRefused(path_, kind_, status.code);
  SendTrailersOnly(http_status, status);
}

// Trailers-only (or a bare HTTP error).
void H2Call::SendTrailersOnly(int http_status, const Status& status) {
  ended_ = true;
  if (conn_ == nullptr) return;
  std::vector<std::pair<std::string, std::string>> hs;
  hs.emplace_back(":status", std::to_string(http_status));
  if (http_status == 200) {
    hs.emplace_back("content-type", "application/grpc");
    for (auto& t : Trailers(status)) hs.push_back(std::move(t));
  }
  std::vector<nghttp2_nv> nv = Nvs(hs);
  headers_sent_ = true;
  nghttp2_submit_response(conn_->session(), id_, nv.data(), nv.size(), nullptr);
  conn_->MarkDirty();
}

// --------------------------------------------------------------- reads

// Reopens the stream's window for what was received: only while the
// handler wants a message (or the unary request), so a client is held to
// one window beyond what the handler read.
void H2Call::Consume() {
  if (conn_ == nullptr || unconsumed_ == 0) return;
  nghttp2_session_consume_stream(conn_->session(), id_, unconsumed_);
  unconsumed_ = 0;
  conn_->MarkDirty();
}

void H2Call::OnData(const uint8_t* data, size_t len) {
  if (ended_ || call_ == nullptr) {
    // Answered already (the stream is reset once the status went): dropped.
    nghttp2_session_consume_stream(conn_->session(), id_, len);
    return;
  }
  unconsumed_ += len;
  ParseData(data, len);
  if (read_pending_ || UnaryRequest()) Consume();
  DeliverRead();
}

void H2Call::ParseData(const uint8_t* data, size_t len) {
  const Config& cfg = conn_->config();
  while (len > 0 && !ended_ && !forced_) {
    pgf_message* msg = nullptr;
    Status error;
    switch (assembler_.Next(&data, &len, encoding_, cfg.max_message_size, keep_free_, &msg,
                            &error)) {
      case MessageAssembler::Result::kMore:
        return;
      case MessageAssembler::Result::kError:
        StreamError(std::move(error));
        return;
      case MessageAssembler::Result::kMessage:
        OnRequestMessage(msg);
        break;
    }
  }
}

void H2Call::OnRequestMessage(pgf_message* msg) {
  if (!UnaryRequest()) {
    std::lock_guard<std::mutex> lock(ready_mu_);
    ready_.push_back(msg);
    return;
  }
  if (got_request_) {
    // A second message: the handler stops, its answer is replaced.
    pgf_message_unref(msg);
    forced_ = NotOneRequest(path_);
    if (dispatched_ && !handler_done_) CancelLater(call_);
    MaybeEnd();
    return;
  }
  got_request_ = true;
  if (pgf_call_set_request_message(call_, msg) != PGF_OK) {
    StreamError(Status{PGF_STATUS_RESOURCE_EXHAUSTED, "out of memory while reading the request"});
    return;
  }
  ScheduleDispatch();
}

void H2Call::DeliverRead() {
  if (!read_pending_) return;
  pgf_message* msg = nullptr;
  {
    std::lock_guard<std::mutex> lock(ready_mu_);
    if (!ready_.empty()) {
      msg = ready_.front();
      ready_.pop_front();
    }
  }
  if (msg != nullptr) {
    read_pending_ = false;
    PushLater(call_, msg);
  } else if (remote_closed_ || forced_) {
    // The half-close (or a broken request stream): the end of the messages.
    read_pending_ = false;
    PushLater(call_, nullptr);
  }
}

void H2Call::OnRemoteClose() {
  remote_closed_ = true;
  if (ended_ || call_ == nullptr) return;
  if (UnaryRequest()) {
    if (!got_request_) {
      if (!assembler_.started()) {
        Refuse(200, NotOneRequest(path_));
      } else {
        Refuse(200, Status{PGF_STATUS_INTERNAL, "incomplete request message"});
      }
      return;
    }
    MaybeEnd();  // the status may have waited for the half-close
    return;
  }
  DeliverRead();
}

// A broken request stream: the handler is cancelled, the status is ours.
void H2Call::StreamError(Status status) {
  if (forced_ || ended_) return;
  forced_ = std::move(status);
  if (!dispatched_) {
    Status s = *forced_;
    Refuse(200, std::move(s));
    return;
  }
  if (!handler_done_) CancelLater(call_);
  DeliverRead();
  MaybeEnd();
}

// -------------------------------------------------------------- writes

// A taken handler message that will not be sent.
void H2Call::DropTaken(const Taken& t) {
  early_bytes_.fetch_sub(t.early_cost, std::memory_order_acq_rel);
  HostBudget().Release(t.charged);
  std::free(t.copy);
  if (t.release != nullptr) ReleaseLater(t.release, t.ctx);
  if (t.early) {
    CancelLater(call_);  // completed already: the handler learns it so
  } else {
    WriteDoneLater(call_, false, true);
  }
}

// The oldest taken message, moved to *t; false if none is.
bool H2Call::PopTaken(Taken* t) {
  std::lock_guard<std::mutex> lock(taken_mu_);
  if (taken_.empty()) return false;
  *t = taken_.front();
  taken_.pop_front();
  return true;
}

// Starts the next taken message; every one that will not be sent (the call
// is over, or one was too large) is dropped, up to the next to send: one
// kWrite task may stand for several taken messages.
void H2Call::StartHandlerWrite() {
  bool too_large = false;
  for (;;) {
    Taken t;
    if (!PopTaken(&t)) break;
    if (ended_ || conn_ == nullptr || forced_) {
      DropTaken(t);
      continue;
    }
    if (t.len > conn_->config().max_message_size) {
      DropTaken(t);
      forced_ = Status{PGF_STATUS_RESOURCE_EXHAUSTED, "Sent message larger than max"};
      if (!handler_done_) CancelLater(call_);
      too_large = true;
      continue;
    }
    handler_write_in_flight_ = true;
    StartOut(t, true);
    return;
  }
  if (too_large) MaybeEnd();
}

void H2Call::StartOut(const Taken& t, bool handler_write) {
  const uint8_t* data = t.data;
  size_t len = t.len;
  pgf_release_fn release = t.release;
  void* ctx = t.ctx;
  if (!headers_sent_) {
    compress_ = call_ != nullptr && pgf_call_compress_response(call_) &&
                ListHas(accept_encoding_, "gzip");
  }
  out_ = Out{};
  out_.owned = t.copy;
  uint8_t flag = 0;
  if (compress_) {
    std::string z;
    if (Gzip(data, len, &z)) {
      // Our own copy goes out; the handler's bytes are done with.
      auto* zipped = static_cast<uint8_t*>(std::malloc(z.size() + 1));
      if (zipped != nullptr) {
        std::free(out_.owned);
        out_.owned = zipped;
        std::memcpy(out_.owned, z.data(), z.size());
        if (release != nullptr) ReleaseLater(release, ctx);
        release = nullptr;
        data = out_.owned;
        len = z.size();
        flag = 1;
      }
    }
  }
  if (!headers_sent_) SendHeaders();
  out_.charged = t.charged;
  out_.prefix[0] = flag;
  out_.prefix[1] = static_cast<uint8_t>(len >> 24);
  out_.prefix[2] = static_cast<uint8_t>(len >> 16);
  out_.prefix[3] = static_cast<uint8_t>(len >> 8);
  out_.prefix[4] = static_cast<uint8_t>(len);
  out_.data = data;
  out_.len = len;
  out_.release = release;
  out_.release_ctx = ctx;
  out_.handler_write = handler_write;
  out_.early = t.early;
  out_.early_cost = t.early_cost;
  out_.active = true;
  // One DATA item per message: the trailers can then go as HEADERS, which
  // no flow-control window holds back, whenever no message is in flight.
  nghttp2_data_provider prd;
  prd.source.ptr = this;
  prd.read_callback = ReadCb;
  nghttp2_submit_data(conn_->session(), NGHTTP2_FLAG_NONE, id_, &prd);
  conn_->MarkDirty();
}

void H2Call::SendHeaders() {
  headers_sent_ = true;
  std::vector<std::pair<std::string, std::string>> hs;
  hs.emplace_back(":status", "200");
  hs.emplace_back("content-type", "application/grpc");
  if (compress_) hs.emplace_back("grpc-encoding", "gzip");
  hs.emplace_back("grpc-accept-encoding", "identity,deflate,gzip");
  if (call_ != nullptr && dispatched_) AppendMetadata(pgf_call_initial_metadata(call_), &hs);
  std::vector<nghttp2_nv> nv = Nvs(hs);
  nghttp2_submit_headers(conn_->session(), NGHTTP2_FLAG_NONE, id_, nullptr, nv.data(),
                         nv.size(), nullptr);
  conn_->MarkDirty();
}

// nghttp2 asks for the next DATA frame of the message in flight: sent
// without a copy (NO_COPY: SendData writes it).
ssize_t H2Call::ReadData(size_t length, uint32_t* data_flags) {
  size_t n = std::min(length, out_.total() - out_.queued);
  out_.queued += n;
  *data_flags |= NGHTTP2_DATA_FLAG_NO_COPY;
  if (out_.queued == out_.total()) {
    *data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
  }
  return static_cast<ssize_t>(n);
}

int H2Call::SendData(const uint8_t* framehd, size_t length) {
  iovec iov[3];
  int n = 0;
  iov[n++] = iovec{const_cast<uint8_t*>(framehd), 9};
  size_t off = out_.sent;
  size_t left = length;
  if (off < 5 && left > 0) {
    size_t k = std::min(5 - off, left);
    iov[n++] = iovec{out_.prefix + off, k};
    off += k;
    left -= k;
  }
  if (left > 0) iov[n++] = iovec{const_cast<uint8_t*>(out_.data + (off - 5)), left};
  conn_->Write(iov, n);
  out_.sent += length;
  // Completed once nghttp2 is done with the item (after this callback):
  // only then may the next message or the trailers be submitted.
  if (out_.sent == out_.total()) conn_->AfterSend(this);
  return 0;
}

// The whole message is in the connection's hands (the socket, or its
// buffer): the handler's write completes, its bytes are released.
void H2Call::OnOutSent() {
  if (!out_.active || out_.sent != out_.total()) return;  // failed meanwhile
  EndOut(true);
  if (trailers_pending_) {
    trailers_pending_ = false;
    SubmitTrailers();
    return;
  }
  StartHandlerWrite();  // any message taken meanwhile goes next
  MaybeEnd();
}

void H2Call::SubmitTrailers() {
  if (conn_ == nullptr) return;
  std::vector<nghttp2_nv> nv = Nvs(trailers_);
  nghttp2_submit_trailer(conn_->session(), id_, nv.data(), nv.size());
  trailers_.clear();
  conn_->MarkDirty();
}

// The transport is gone with a message in flight: not sent.
void H2Call::FailOut() {
  if (!out_.active) return;
  EndOut(false);
}

// The message in flight is over, sent or not: its bytes are released and
// the handler's write, if it was one, completes.
void H2Call::EndOut(bool sent) {
  Out done = out_;
  out_ = Out{};
  HostBudget().Release(done.charged);
  std::free(done.owned);
  if (done.release != nullptr) ReleaseLater(done.release, done.release_ctx);
  if (!done.handler_write) return;
  handler_write_in_flight_ = false;
  early_bytes_.fetch_sub(done.early_cost, std::memory_order_acq_rel);
  if (!done.early) {
    WriteDoneLater(call_, sent, true);
  } else if (!sent) {
    CancelLater(call_);  // completed already: the handler learns it so
  }
}

// -------------------------------------------------------------- the end

std::vector<std::pair<std::string, std::string>> H2Call::Trailers(const Status& status) {
  std::vector<std::pair<std::string, std::string>> t;
  t.emplace_back("grpc-status", std::to_string(status.code));
  if (!status.message.empty()) {
    t.emplace_back("grpc-message", PercentEncode(status.message.data(), status.message.size()));
  }
  if (call_ != nullptr && dispatched_ && !forced_) {
    const uint8_t* details = nullptr;
    size_t details_len = 0;
    pgf_call_status_details(call_, &details, &details_len);
    if (details_len > 0) {
      t.emplace_back("grpc-status-details-bin", Base64Encode(details, details_len));
    }
    AppendMetadata(pgf_call_trailing_metadata(call_), &t);
  }
  return t;
}

void H2Call::SendStatus(const Status& status) {
  ended_ = true;
  if (conn_ == nullptr) return;
  if (!headers_sent_) {
    bool initial_md = call_ != nullptr && dispatched_ && !forced_ &&
                      pgf_metadata_count(pgf_call_initial_metadata(call_)) > 0;
    if (!initial_md) {
      SendTrailersOnly(200, status);
      return;
    }
    SendHeaders();
  }
  trailers_ = Trailers(status);
  if (out_.active) {
    trailers_pending_ = true;  // after the message (OnOutSent)
    return;
  }
  SubmitTrailers();
}

void H2Call::MaybeEnd() {
  if (ended_ || !handler_done_ || handler_write_in_flight_ || out_.active) return;
  // A unary answer goes once the half-close came (as gRPC Java's servers).
  if (UnaryRequest() && !remote_closed_ && !forced_ && conn_ != nullptr) return;
  const uint8_t* data = nullptr;
  size_t len = 0;
  pgf_release_fn release = nullptr;
  void* ctx = nullptr;
  bool queued;
  {
    std::lock_guard<std::mutex> lock(taken_mu_);
    queued = !taken_.empty();
  }
  if (queued || (call_ != nullptr && TakeWrite(false))) {
    // A write the handler queued just before it finished goes first (or
    // fails, if the call is over).
    StartHandlerWrite();
    if (handler_write_in_flight_) return;
  }
  if (call_ != nullptr) {
    release = nullptr;
    pgf_call_take_response(call_, &data, &len, &release, &ctx);
  }
  if (forced_ || conn_ == nullptr || call_ == nullptr) {
    if (release != nullptr) ReleaseLater(release, ctx);
    SendStatus(forced_ ? *forced_ : Status{PGF_STATUS_CANCELLED, "cancelled"});
    return;
  }
  Status status = HandlerStatus(call_);
  bool has_response = release != nullptr || len > 0;
  if (status.code != PGF_STATUS_OK || !(has_response || UnaryResponse())) {
    // An error carries no response message; streams end without one unless
    // the handler set it.
    if (release != nullptr) ReleaseLater(release, ctx);
    SendStatus(status);
    return;
  }
  if (len > conn_->config().max_message_size) {
    if (release != nullptr) ReleaseLater(release, ctx);
    SendStatus(Status{PGF_STATUS_RESOURCE_EXHAUSTED, "Sent message larger than max"});
    return;
  }
  // The unary answer (an empty message when the handler set none), then the
  // status after it.
  Taken t{data, len, release, ctx, 0};
  if (!ChargeResponse(len, &t.charged)) {
    if (release != nullptr) ReleaseLater(release, ctx);
    SendStatus(Status{PGF_STATUS_RESOURCE_EXHAUSTED, MemoryBudget::kRefusedText});
    return;
  }
  StartOut(t, false);
  SendStatus(status);
}

// The status went without the handler's answer (deadline, reset): what it
// left is released where a release may block.
void H2Call::DropAnswer() {
  if (call_ == nullptr) return;
  const uint8_t* data = nullptr;
  size_t len = 0;
  pgf_release_fn release = nullptr;
  void* ctx = nullptr;
  if (pgf_call_take_write(call_, &data, &len, &release, &ctx, nullptr) == PGF_OK) {
    if (release != nullptr) ReleaseLater(release, ctx);
    WriteDoneLater(call_, false, true);
  }
  release = nullptr;
  pgf_call_take_response(call_, &data, &len, &release, &ctx);
  if (release != nullptr) ReleaseLater(release, ctx);
}

void H2Call::OnDeadline() {
  deadline_ms_ = -1;
  if (ended_) return;
  cancelled_ = true;
  forced_ = Status{PGF_STATUS_DEADLINE_EXCEEDED, "Deadline Exceeded"};
  if (dispatched_ && !handler_done_) CancelLater(call_);
  Abort(PGF_STATUS_DEADLINE_EXCEEDED, "Deadline Exceeded");
}

// The status now, whatever the handler does; a message half sent is cut by
// a reset instead.
void H2Call::Abort(int code, const char* message) {
  if (!cancelled_ && dispatched_ && !handler_done_) CancelLater(call_);
  cancelled_ = true;
  if (ended_) return;
  if (!forced_) forced_ = Status{code, message};
  if (conn_ == nullptr) {
    ended_ = true;
    return;
  }
  if (out_.active) {
    // nghttp2 holds part of it, perhaps behind a window the client never
    // reopens: the trailers could wait forever behind it.
    ended_ = true;
    nghttp2_submit_rst_stream(conn_->session(), NGHTTP2_FLAG_NONE, id_, NGHTTP2_CANCEL);
    conn_->MarkDirty();
    return;
  }
  FailOut();
  SendStatus(*forced_);
}

void H2Call::OnStreamClose(uint32_t) {
  if (!ended_) {
    // Reset by the client (or the connection died) before the status went:
    // the handler is cancelled (on the service pool: its callback may take
    // the GIL), and finishes later.
    ended_ = true;
    cancelled_ = true;
    if (dispatched_ && !handler_done_) CancelLater(call_);
  }
  FailOut();
  // Writes taken and waiting for the one in flight will not be sent either.
  for (;;) {
    Taken t;
    if (!PopTaken(&t)) break;
    DropTaken(t);
  }
  conn_ = nullptr;
  if (deadline_ms_ >= 0) loop_->RemoveDeadline(deadline_ms_, this);
  deadline_ms_ = -1;
  {
    std::lock_guard<std::mutex> lock(ready_mu_);
    for (pgf_message* m : ready_) pgf_message_unref(m);
    ready_.clear();
  }
  assembler_.Free();
  Unref();  // the stream's
}

}  // namespace h2
}  // namespace pgf_host
