#include "h2_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstring>

#include "h2_call.h"

namespace pgf_host {
namespace h2 {

namespace {

// Frames nghttp2 may queue in our buffer before we stop asking it for
// more: a client that does not read holds the connection to about this.
constexpr size_t kHighWater = 256 * 1024;
// DATA frames up to this size are copied into the buffer with the frames
// around them (one write for many small frames); larger ones go to the
// socket straight from the handler's bytes.
constexpr size_t kCopyBelow = 4096;
// The connection window: the stream windows (64 KiB each, reopened only as
// handlers read) are what holds a client back, not this.
constexpr int32_t kConnectionWindow = 16 * 1024 * 1024;
// Rapid reset (CVE-2023-44487): RST_STREAMs a client may send, as a token
// bucket; beyond them nghttp2 sends GOAWAY and we close the connection.
constexpr uint64_t kResetBurst = 1000;
constexpr uint64_t kResetRate = 33;
// CONTINUATION frames after one HEADERS (nghttp2's default): beyond it the
// session is torn down.
constexpr size_t kMaxContinuations = 8;
// Pings while a connection has no call, without --keepalive-permit-without-calls.
constexpr int64_t kIdlePingIntervalMs = 2 * 3600 * 1000;

char kEventTag;
char kListenTag;

std::string PeerOf(const sockaddr_storage& ss) {
  char host[INET6_ADDRSTRLEN] = "";
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    return std::string("ipv4:") + host + ":" + std::to_string(ntohs(a->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    return std::string("ipv6:[") + host + "]:" + std::to_string(ntohs(a->sin6_port));
  }
  if (ss.ss_family == AF_UNIX) return "unix:";
  return "unknown";
}

H2Call* CallOf(nghttp2_session* s, int32_t stream_id) {
  return static_cast<H2Call*>(nghttp2_session_get_stream_user_data(s, stream_id));
}

nghttp2_session_callbacks* Callbacks() {
  static nghttp2_session_callbacks* cbs = [] {
    nghttp2_session_callbacks* c;
    nghttp2_session_callbacks_new(&c);
    nghttp2_session_callbacks_set_send_callback(c, Conn::SendCb);
    nghttp2_session_callbacks_set_send_data_callback(c, Conn::SendDataCb);
    nghttp2_session_callbacks_set_on_begin_headers_callback(c, Conn::BeginHeadersCb);
    nghttp2_session_callbacks_set_on_header_callback(c, Conn::HeaderCb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(c, Conn::FrameRecvCb);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(c, Conn::DataChunkCb);
    nghttp2_session_callbacks_set_on_stream_close_callback(c, Conn::StreamCloseCb);
    nghttp2_session_callbacks_set_on_frame_send_callback(c, Conn::FrameSendCb);
    return c;
  }();
  return cbs;
}

nghttp2_option* SessionOptions() {
  static nghttp2_option* opt = [] {
    nghttp2_option* o;
    nghttp2_option_new(&o);
    // Reads are pulled: a stream's window reopens only as its handler reads.
    nghttp2_option_set_no_auto_window_update(o, 1);
    nghttp2_option_set_stream_reset_rate_limit(o, kResetBurst, kResetRate);
    nghttp2_option_set_max_continuations(o, kMaxContinuations);
    return o;
  }();
  return opt;
}

}  // namespace

int64_t MonotonicMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// ---------------------------------------------------------------- Conn

Conn::Conn(Loop* loop, int fd, std::string peer)
    : loop_(loop), fd_(fd), peer_(std::move(peer)) {
  created_ms_ = last_call_ms_ = last_read_ms_ = MonotonicMs();
}

Conn::~Conn() {
  if (session_ != nullptr) nghttp2_session_del(session_);
  if (ssl_ != nullptr) SSL_free(ssl_);
  close(fd_);
}

const Config& Conn::config() const { return loop_->config(); }

bool Conn::Start() {
  if (nghttp2_session_server_new2(&session_, Callbacks(), this, SessionOptions()) != 0) {
    session_ = nullptr;
    return false;
  }
  const Config& cfg = config();
  nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, cfg.max_concurrent_streams},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, static_cast<uint32_t>(cfg.max_metadata_bytes)},
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings,
                          sizeof settings / sizeof settings[0]);
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);
  if (TlsCredentials* tls = loop_->server()->tls()) {
    // Our SETTINGS wait in nghttp2 until the handshake is done.
    ssl_ = tls->NewSsl();
    if (ssl_ == nullptr || SSL_set_fd(ssl_, fd_) != 1) return false;
    SSL_set_accept_state(ssl_);
    handshaking_ = true;
  } else {
    SetAuth(InsecurePeerAuth());
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = this;
  if (epoll_ctl(loop_->epfd(), EPOLL_CTL_ADD, fd_, &ev) != 0) return false;
  MarkDirty();
  return true;
}

void Conn::SetAuth(PeerAuth auth) {
  auth_ = std::move(auth);
  auth_entries_.clear();
  for (const auto& [name, value] : auth_.properties) {
    auth_entries_.push_back({name.data(), name.size(),
                             reinterpret_cast<const uint8_t*>(value.data()), value.size()});
  }
}

void Conn::MarkDirty() {
  if (dirty_) return;
  dirty_ = true;
  loop_->MarkDirty(this);
}

void Conn::OnEvents(uint32_t events) {
  if (handshaking_) {
    Handshake();
    return;
  }
  if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) || (ssl_wants_write_ && (events & EPOLLOUT))) {
    ReadSocket();
  }
  if (events & EPOLLOUT) WriteBuffered();
  MarkDirty();
}

void Conn::Handshake() {
  int rc = SSL_do_handshake(ssl_);
  if (rc == 1) {
    handshaking_ = false;
    ssl_wants_write_ = false;
    // A client that sent no ALPN at all (one that offered other protocols
    // only was refused in the handshake) does not speak gRPC.
    const unsigned char* proto = nullptr;
    unsigned int len = 0;
    SSL_get0_alpn_selected(ssl_, &proto, &len);
    if (len != 2 || std::memcmp(proto, "h2", 2) != 0) {
      CloseSoon();
      return;
    }
    SetAuth(TlsPeerAuth(ssl_));  // before any call: no stream exists yet
    last_read_ms_ = MonotonicMs();
    ReadSocket();  // the client's preface may have come with its Finished
    MarkDirty();   // our SETTINGS
    return;
  }
  switch (SSL_get_error(ssl_, rc)) {
    case SSL_ERROR_WANT_READ:
      ssl_wants_write_ = false;
      break;
    case SSL_ERROR_WANT_WRITE:
      ssl_wants_write_ = true;
      break;
    default:  // not TLS (a plaintext client), no h2, no or a bad client certificate
      ERR_clear_error();
      CloseSoon();
      return;
  }
  UpdateEpoll();
}

ssize_t Conn::ReadTls(uint8_t* buf, size_t len) {
  ssl_wants_write_ = false;
  int n = SSL_read(ssl_, buf, static_cast<int>(std::min<size_t>(len, INT_MAX)));
  if (n > 0) return n;
  switch (SSL_get_error(ssl_, n)) {
    case SSL_ERROR_WANT_READ:
      errno = EAGAIN;
      return -1;
    case SSL_ERROR_WANT_WRITE:
      ssl_wants_write_ = true;
      UpdateEpoll();
      errno = EAGAIN;
      return -1;
    case SSL_ERROR_ZERO_RETURN:  // close_notify
      return 0;
    default:
      ERR_clear_error();
      errno = EIO;
      return -1;
  }
}

ssize_t Conn::WriteTls(const char* data, size_t len) {
  // A retry after WANT_WRITE passes the same bytes (the buffer's unsent
  // head) and at least as many: what OpenSSL requires.
  int n = SSL_write(ssl_, data, static_cast<int>(std::min<size_t>(len, INT_MAX)));
  if (n > 0) return n;
  switch (SSL_get_error(ssl_, n)) {
    case SSL_ERROR_WANT_WRITE:
    case SSL_ERROR_WANT_READ:
      errno = EAGAIN;
      return -1;
    default:
      ERR_clear_error();
      errno = EPIPE;
      return -1;
  }
}

void Conn::AfterSend(H2Call* call) {
  call->Ref();
  sent_.push_back(call);
  MarkDirty();
}

void Conn::DispatchSoon(H2Call* call) {
  call->Ref();
  to_dispatch_.push_back(call);
}

void Conn::ReadSocket() {
  ReadFrames();
  std::vector<H2Call*> calls;
  calls.swap(to_dispatch_);
  for (H2Call* call : calls) call->DispatchIfOpen();
}

void Conn::ReadFrames() {
  uint8_t buf[64 * 1024];
  // Bounded per turn, so one busy connection does not starve the others.
  // TLS reads one record (at most 16 KiB) at a time and leaves the rest in
  // the socket (no read-ahead), so epoll still sees what is left.
  for (int i = 0; i < (ssl_ != nullptr ? 32 : 8) && !closing_; ++i) {
    ssize_t n = ssl_ != nullptr ? ReadTls(buf, sizeof buf) : read(fd_, buf, sizeof buf);
    if (n > 0) {
      last_read_ms_ = MonotonicMs();
      ssize_t rv = nghttp2_session_mem_recv(session_, buf, static_cast<size_t>(n));
      if (rv < 0) {
        // A connection error (flood, protocol): nghttp2 queued GOAWAY where
        // it could; it goes out with the flush, then we close.
        nghttp2_session_terminate_session(session_, NGHTTP2_PROTOCOL_ERROR);
        draining_ = true;
        return;
      }
      if (ssl_ == nullptr && static_cast<size_t>(n) < sizeof buf) return;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    CloseSoon();  // EOF or a broken socket
    return;
  }
}

ssize_t Conn::SendCb(nghttp2_session*, const uint8_t* data, size_t len, int, void* self) {
  auto* c = static_cast<Conn*>(self);
  if (c->buffered() >= kHighWater) return NGHTTP2_ERR_WOULDBLOCK;
  c->wbuf_.append(reinterpret_cast<const char*>(data), len);
  return static_cast<ssize_t>(len);
}

int Conn::SendDataCb(nghttp2_session*, nghttp2_frame*, const uint8_t* framehd, size_t length,
                     nghttp2_data_source* source, void* self) {
  auto* c = static_cast<Conn*>(self);
  if (c->buffered() >= kHighWater) return NGHTTP2_ERR_WOULDBLOCK;
  return static_cast<H2Call*>(source->ptr)->SendData(framehd, length);
}

void Conn::Write(const iovec* iov, int n) {
  size_t total = 0;
  for (int i = 0; i < n; ++i) total += iov[i].iov_len;
  // TLS encrypts from the buffer (SSL_write has no writev).
  if (total <= kCopyBelow || closing_ || ssl_ != nullptr) {
    if (closing_) return;
    for (int i = 0; i < n; ++i) {
      wbuf_.append(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
    }
    return;
  }
  // What is buffered, then the frame straight from the caller's bytes, in
  // one writev; only what the socket did not take is copied.
  iovec all[5];
  int k = 0;
  if (buffered() > 0) all[k++] = iovec{&wbuf_[woff_], buffered()};
  for (int i = 0; i < n; ++i) all[k++] = iov[i];
  ssize_t w = writev(fd_, all, k);
  if (w < 0) {
    if (errno != EAGAIN && errno != EINTR) {
      CloseSoon();
      return;
    }
    w = 0;
  }
  size_t written = static_cast<size_t>(w);
  size_t from_buf = std::min(written, buffered());
  woff_ += from_buf;
  written -= from_buf;
  if (woff_ == wbuf_.size()) {
    wbuf_.clear();
    woff_ = 0;
  }
  for (int i = 0; i < n; ++i) {
    size_t skip = std::min(written, iov[i].iov_len);
    written -= skip;
    wbuf_.append(static_cast<const char*>(iov[i].iov_base) + skip, iov[i].iov_len - skip);
  }
}

bool Conn::WriteBuffered() {
  while (buffered() > 0) {
    ssize_t n = ssl_ != nullptr ? WriteTls(&wbuf_[woff_], buffered())
                                : write(fd_, &wbuf_[woff_], buffered());
    if (n > 0) {
      woff_ += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
    CloseSoon();
    return false;
  }
  if (woff_ == wbuf_.size()) {
    wbuf_.clear();
    woff_ = 0;
  } else if (woff_ > (1 << 20)) {
    wbuf_.erase(0, woff_);
    woff_ = 0;
  }
  return true;
}

void Conn::Flush() {
  dirty_ = false;
  if (closing_ || handshaking_) return;
  // nghttp2 stops (WOULDBLOCK) at our high-water mark; once the socket took
  // the buffer it is asked again, else frames it still holds would wait for
  // an event that may never come.
  for (int round = 0;; ++round) {
    while (buffered() < kHighWater) {
      if (nghttp2_session_send(session_) != 0) {
        CloseSoon();
        return;
      }
      if (sent_.empty()) break;
      std::vector<H2Call*> sent;
      sent.swap(sent_);
      for (H2Call* call : sent) {
        call->OnOutSent();  // may submit the next message or the trailers
        call->Unref();
      }
    }
    if (!WriteBuffered()) return;
    if (buffered() > 0 || !nghttp2_session_want_write(session_)) break;
    if (round == 8) {
      MarkDirty();  // the socket keeps taking it: the rest next turn
      break;
    }
  }
  if (buffered() == 0 && (close_after_flush_ || (!nghttp2_session_want_read(session_) &&
                                                  !nghttp2_session_want_write(session_)))) {
    CloseSoon();  // GOAWAY went and no stream is left (or a terminated session)
    return;
  }
  UpdateEpoll();
}

void Conn::UpdateEpoll() {
  bool want = buffered() > 0 || ssl_wants_write_;
  if (want == want_out_) return;
  want_out_ = want;
  epoll_event ev{};
  ev.events = want ? (EPOLLIN | EPOLLOUT) : EPOLLIN;
  ev.data.ptr = this;
  epoll_ctl(loop_->epfd(), EPOLL_CTL_MOD, fd_, &ev);
}

void Conn::CloseSoon() {
  if (closing_) return;
  closing_ = true;
  loop_->MarkClosing(this);
}

void Conn::Drain(uint32_t error_code) {
  if (handshaking_) {
    CloseSoon();  // no HTTP/2 yet: nothing to finish
    return;
  }
  if (draining_) return;
  draining_ = true;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(session_), error_code, nullptr,
                        0);
  MarkDirty();
}

void Conn::Close() {
  // Every call still open is cancelled; nghttp2_session_del runs no callback.
  std::vector<H2Call*> open;
  open.reserve(calls_.size());
  for (auto& kv : calls_) open.push_back(kv.second);
  calls_.clear();
  for (H2Call* call : open) call->OnStreamClose(NGHTTP2_CANCEL);
  std::vector<H2Call*> pending;
  pending.swap(to_dispatch_);
  for (H2Call* call : pending) call->DispatchIfOpen();  // closed: not dispatched
  std::vector<H2Call*> sent;
  sent.swap(sent_);
  for (H2Call* call : sent) call->Unref();  // their streams are gone
  epoll_ctl(loop_->epfd(), EPOLL_CTL_DEL, fd_, nullptr);
}

void Conn::AbortCalls() {
  std::vector<H2Call*> open;
  for (auto& kv : calls_) open.push_back(kv.second);
  for (H2Call* call : open) call->Abort(PGF_STATUS_CANCELLED, "server shutdown");
  // What the socket takes now goes; then the connection closes, whether the
  // client reads or not.
  Flush();
  CloseSoon();
}

void Conn::Tick(int64_t now) {
  const Config& cfg = config();
  if (handshaking_) {
    // A client that connects and never finishes its handshake is a dead
    // peer too: it gets the keepalive timeout.
    if (now - created_ms_ > cfg.keepalive_timeout_ms) CloseSoon();
    return;
  }
  if (!calls_.empty()) last_call_ms_ = now;
  if (calls_.empty() && now - last_call_ms_ > cfg.max_connection_idle_ms) {
    Drain(NGHTTP2_NO_ERROR);  // closes once the GOAWAY went: no stream is open
  }
  if (goaway_ms_ < 0 && now - created_ms_ > cfg.max_connection_age_ms) {
    goaway_ms_ = now;
    Drain(NGHTTP2_NO_ERROR);
  }
  if (goaway_ms_ >= 0 && now - goaway_ms_ > cfg.max_connection_age_grace_ms) {
    CloseSoon();  // its calls are cancelled
    return;
  }
  if (ping_sent_ms_ >= 0 && now - ping_sent_ms_ > cfg.keepalive_timeout_ms) {
    CloseSoon();  // a dead peer
    return;
  }
  if (ping_sent_ms_ < 0 && now - last_read_ms_ > cfg.keepalive_time_ms) {
    ping_sent_ms_ = now;
    nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, nullptr);
    MarkDirty();
  }
}

int Conn::BeginHeadersCb(nghttp2_session* s, const nghttp2_frame* frame, void* self) {
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
    return 0;
  }
  auto* c = static_cast<Conn*>(self);
  auto* call = new H2Call(c, frame->hd.stream_id);
  nghttp2_session_set_stream_user_data(s, frame->hd.stream_id, call);
  c->Adopt(frame->hd.stream_id, call);
  return 0;
}

int Conn::HeaderCb(nghttp2_session* s, const nghttp2_frame* frame, const uint8_t* name,
                   size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void*) {
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  if (H2Call* call = CallOf(s, frame->hd.stream_id)) {
    call->OnHeader(name, namelen, value, valuelen);
  }
  return 0;
}

int Conn::FrameRecvCb(nghttp2_session* s, const nghttp2_frame* frame, void* self) {
  auto* c = static_cast<Conn*>(self);
  switch (frame->hd.type) {
    case NGHTTP2_HEADERS: {
      H2Call* call = CallOf(s, frame->hd.stream_id);
      if (call == nullptr) return 0;
      if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) call->OnHeadersEnd();
      if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) call->OnRemoteClose();
      return 0;
    }
    case NGHTTP2_DATA: {
      if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) return 0;
      if (H2Call* call = CallOf(s, frame->hd.stream_id)) call->OnRemoteClose();
      return 0;
    }
    case NGHTTP2_PING: {
      int64_t now = MonotonicMs();
      if (frame->hd.flags & NGHTTP2_FLAG_ACK) {
        c->ping_sent_ms_ = -1;
        return 0;
      }
      // Ping floods: pings closer than the interval, with no data sent by
      // us in between, are strikes; beyond the strikes, GOAWAY.
      const Config& cfg = c->config();
      int64_t interval = c->calls_.empty() && !cfg.keepalive_permit_without_calls
                             ? std::max<int64_t>(kIdlePingIntervalMs, cfg.min_ping_interval_ms)
                             : cfg.min_ping_interval_ms;
      if (c->last_ping_recv_ms_ >= 0 && now - c->last_ping_recv_ms_ < interval &&
          cfg.max_ping_strikes > 0 && ++c->ping_strikes_ > cfg.max_ping_strikes) {
        nghttp2_submit_goaway(s, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(s),
                              NGHTTP2_ENHANCE_YOUR_CALM, reinterpret_cast<const uint8_t*>("too_many_pings"), 14);
        c->draining_ = true;
      }
      c->last_ping_recv_ms_ = now;
      return 0;
    }
    default:
      return 0;
  }
}

int Conn::DataChunkCb(nghttp2_session* s, uint8_t, int32_t stream_id, const uint8_t* data,
                      size_t len, void*) {
  // The connection window reopens at once; each stream's only as its
  // handler reads (H2Call::Consume).
  nghttp2_session_consume_connection(s, len);
  if (H2Call* call = CallOf(s, stream_id)) {
    call->OnData(data, len);
  } else {
    nghttp2_session_consume_stream(s, stream_id, len);
  }
  return 0;
}

int Conn::StreamCloseCb(nghttp2_session* s, int32_t stream_id, uint32_t error_code,
                        void* self) {
  auto* c = static_cast<Conn*>(self);
  H2Call* call = CallOf(s, stream_id);
  if (call == nullptr) return 0;
  nghttp2_session_set_stream_user_data(s, stream_id, nullptr);
  c->Forget(stream_id);
  call->OnStreamClose(error_code);
  return 0;
}

int Conn::FrameSendCb(nghttp2_session* s, const nghttp2_frame* frame, void* self) {
  auto* c = static_cast<Conn*>(self);
  switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA: {
      // Data sent: client pings are fine again (gRPC's policy).
      c->ping_strikes_ = 0;
      c->last_ping_recv_ms_ = -1;
      if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) return 0;
      // The status went while the client still sends: as gRPC, reset the
      // stream so it stops (and nothing more is received for it).
      H2Call* call = CallOf(s, frame->hd.stream_id);
      if (call != nullptr && !call->remote_closed()) {
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
      }
      return 0;
    }
    case NGHTTP2_GOAWAY:
      // A GOAWAY for an error (rapid reset, flood, ping strikes): once it
      // is written, the connection is closed, whatever the client does.
      if (frame->goaway.error_code != NGHTTP2_NO_ERROR) c->close_after_flush_ = true;
      return 0;
    default:
      return 0;
  }
}

// ---------------------------------------------------------------- Loop

Loop::Loop(Server* server, int index) : server_(server), index_(index) {}

Loop::~Loop() {
  if (epfd_ >= 0) close(epfd_);
  if (evfd_ >= 0) close(evfd_);
}

const Config& Loop::config() const { return server_->config(); }

bool Loop::Init() {
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  evfd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epfd_ < 0 || evfd_ < 0) return false;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = &kEventTag;
  return epoll_ctl(epfd_, EPOLL_CTL_ADD, evfd_, &ev) == 0;
}

void Loop::SetListener(int fd) {
  listen_fd_ = fd;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = &kListenTag;
  epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
}

void Loop::Start() {
  thread_ = std::thread([this] {
    std::string name = "pgf-h2-" + std::to_string(index_);
    pthread_setname_np(pthread_self(), name.c_str());
    Run();
  });
}

void Loop::Join() {
  if (thread_.joinable()) thread_.join();
}

void Loop::Wake() {
  uint64_t one = 1;
  ssize_t rc = write(evfd_, &one, sizeof one);
  (void)rc;  // EAGAIN: the counter is already non-zero, the loop wakes anyway
}

void Loop::Post(const Task& t) {
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    wake = tasks_.empty();
    tasks_.push_back(t);
  }
  if (wake) Wake();
}

void Loop::PostFd(int fd, std::string peer) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    new_fds_.emplace_back(fd, std::move(peer));
  }
  Wake();
}

void Loop::PostControl(Control c) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    controls_.push_back(c);
  }
  Wake();
}

void Loop::Accept() {
  for (int i = 0; i < 64; ++i) {
    sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int fd = accept4(listen_fd_, reinterpret_cast<sockaddr*>(&ss), &len,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN, or out of descriptors: retried on the next event
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    server_->NextLoop()->PostFd(fd, PeerOf(ss));
  }
}

void Loop::MarkClosing(Conn* c) { closing_.push_back(c); }

void Loop::RunTasks() {
  // Tasks posted while these run (from this thread) are taken next round.
  for (int round = 0; round < 64; ++round) {
    std::vector<Task> tasks;
    std::vector<std::pair<int, std::string>> fds;
    std::vector<Control> controls;
    {
      std::lock_guard<std::mutex> lock(mu_);
      tasks.swap(tasks_);
      fds.swap(new_fds_);
      controls.swap(controls_);
    }
    if (tasks.empty() && fds.empty() && controls.empty()) return;
    for (auto& [fd, peer] : fds) {
      if (draining_) {
        close(fd);
        continue;
      }
      auto* c = new Conn(this, fd, std::move(peer));
      conns_.insert(c);
      if (!c->Start()) c->CloseSoon();
    }
    for (const Task& t : tasks) t.call->RunTask(t.kind, t.arg);
    for (Control ctl : controls) {
      switch (ctl) {
        case Control::kDrain:
          draining_ = true;
          if (listen_fd_ >= 0) {
            epoll_ctl(epfd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
            close(listen_fd_);
            listen_fd_ = -1;
          }
          for (Conn* c : conns_) c->Drain(NGHTTP2_NO_ERROR);
          break;
        case Control::kCancelAll:
          for (Conn* c : conns_) c->AbortCalls();
          break;
        case Control::kQuit:
          quit_ = true;
          break;
      }
    }
  }
  Wake();  // more left: next turn
}

void Loop::FlushDirty() {
  for (int round = 0; round < 8 && !dirty_.empty(); ++round) {
    std::vector<Conn*> dirty;
    dirty.swap(dirty_);
    for (Conn* c : dirty) c->Flush();
  }
}

void Loop::CloseConns() {
  while (!closing_.empty()) {
    std::vector<Conn*> closing;
    closing.swap(closing_);
    for (Conn* c : closing) {
      c->Close();
      conns_.erase(c);
      dirty_.erase(std::remove(dirty_.begin(), dirty_.end(), c), dirty_.end());
      delete c;
    }
  }
}

void Loop::Run() {
  epoll_event events[128];
  while (!quit_) {
    int64_t now = MonotonicMs();
    int64_t wake_at = next_tick_ms_;
    if (!deadlines_.empty()) wake_at = std::min(wake_at, deadlines_.begin()->first);
    int timeout = static_cast<int>(std::clamp<int64_t>(wake_at - now, 0, 1000));
    int n = epoll_wait(epfd_, events, 128, timeout);
    for (int i = 0; i < n; ++i) {
      void* p = events[i].data.ptr;
      if (p == &kEventTag) {
        uint64_t v;
        ssize_t rc = read(evfd_, &v, sizeof v);
        (void)rc;
      } else if (p == &kListenTag) {
        Accept();
      } else {
        auto* c = static_cast<Conn*>(p);
        if (!c->closing()) c->OnEvents(events[i].events);
      }
    }
    RunTasks();
    now = MonotonicMs();
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
      H2Call* call = deadlines_.begin()->second;
      deadlines_.erase(deadlines_.begin());
      call->OnDeadline();
    }
    if (now >= next_tick_ms_) {
      next_tick_ms_ = now + 1000;
      for (Conn* c : conns_) c->Tick(now);
    }
    FlushDirty();
    CloseConns();
  }
}

// -------------------------------------------------------------- Server

Server::Server(const Options& opts) : opts_(opts) {
  config_.max_concurrent_streams = static_cast<uint32_t>(opts.max_concurrent_streams);
  config_.max_metadata_bytes = static_cast<size_t>(opts.max_metadata_bytes);
  config_.max_message_size = static_cast<size_t>(opts.max_message_size);
  config_.max_connection_idle_ms = opts.max_connection_idle_ms;
  config_.max_connection_age_ms = opts.max_connection_age_ms;
  config_.max_connection_age_grace_ms = opts.max_connection_age_grace_ms;
  config_.keepalive_time_ms = opts.keepalive_time_ms;
  config_.keepalive_timeout_ms = opts.keepalive_timeout_ms;
  config_.min_ping_interval_ms = opts.min_ping_interval_ms;
  config_.max_ping_strikes = opts.max_ping_strikes;
  config_.keepalive_permit_without_calls = opts.keepalive_permit_without_calls;
}

Server::~Server() = default;

Loop* Server::NextLoop() {
  return loops_[next_.fetch_add(1, std::memory_order_relaxed) % loops_.size()].get();
}

// unix:PATH and unix-abstract:NAME, as gRPC names them.
static int ListenUnix(const std::string& addr, std::string* error) {
  bool abstract = addr.rfind("unix-abstract:", 0) == 0;
  std::string path = addr.substr(abstract ? 14 : 5);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  size_t offset = abstract ? 1 : 0;  // abstract: a leading NUL
  if (path.empty() || path.size() + offset >= sizeof sa.sun_path) {
    *error = "cannot listen on " + addr + ": bad path";
    return -1;
  }
  std::memcpy(sa.sun_path + offset, path.data(), path.size());
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + offset + path.size());
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&sa), len) != 0 || listen(fd, 1024) != 0) {
    *error = "cannot listen on " + addr + ": " + std::strerror(errno);
    if (fd >= 0) close(fd);
    return -1;
  }
  return fd;
}

bool Server::Start(int* port, std::string* error) {
  if (!opts_.tls_cert.empty()) {
    tls_ = TlsCredentials::Load(opts_, error);
    if (tls_ == nullptr) return false;
  }
  std::string addr = opts_.listen;
  if (addr.rfind("unix:", 0) == 0 || addr.rfind("unix-abstract:", 0) == 0) {
    listen_fd_ = ListenUnix(addr, error);
    if (listen_fd_ < 0) return false;
    *port = 1;  // no port: the address is the path
    return StartLoops(error);
  }
  size_t colon = addr.rfind(':');
  if (colon == std::string::npos) {
    *error = "cannot listen on " + addr + ": expected HOST:PORT";
    return false;
  }
  std::string host = addr.substr(0, colon);
  std::string service = addr.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.empty() || host == "0.0.0.0" ? nullptr : host.c_str(),
                  service.c_str(), &hints, &res) != 0 ||
      res == nullptr) {
    *error = "cannot listen on " + addr;
    return false;
  }
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd >= 0) {
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (opts_.reuse_port) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  }
  if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
    *error = "cannot listen on " + addr + ": " + std::strerror(errno);
    if (fd >= 0) close(fd);
    freeaddrinfo(res);
    return false;
  }
  freeaddrinfo(res);
  sockaddr_storage ss;
  socklen_t len = sizeof ss;
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  *port = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                         : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  listen_fd_ = fd;
  return StartLoops(error);
}

bool Server::StartLoops(std::string* error) {
  unsigned n = std::max(1u, std::min(4u, std::thread::hardware_concurrency()));
  for (unsigned i = 0; i < n; ++i) {
    loops_.push_back(std::make_unique<Loop>(this, static_cast<int>(i)));
    if (!loops_.back()->Init()) {
      *error = "cannot create an event loop";
      return false;
    }
  }
  loops_[0]->SetListener(listen_fd_);
  for (auto& l : loops_) l->Start();
  if (tls_ != nullptr) tls_->StartReloads();
  return true;
}

void Server::Shutdown(int64_t deadline_ms) {
  for (auto& l : loops_) l->PostControl(Loop::Control::kDrain);
  while (live_calls.load(std::memory_order_acquire) > 0 && MonotonicMs() < deadline_ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (live_calls.load(std::memory_order_acquire) > 0) {
    for (auto& l : loops_) l->PostControl(Loop::Control::kCancelAll);
    while (live_calls.load(std::memory_order_acquire) > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  for (auto& l : loops_) l->PostControl(Loop::Control::kQuit);
  for (auto& l : loops_) l->Join();
  if (tls_ != nullptr) tls_->StopReloads();
}

}  // namespace h2
}  // namespace pgf_host
