// The product host's transport: gRPC over HTTP/2 on libnghttp2's server
// session API (Debian's security-maintained libnghttp2), with epoll event
// loops.  One Loop per thread owns its connections and their sessions
// (nghttp2 sessions are not thread-safe); worker threads reach a call only
// by posting a Task to its loop (a queue and an eventfd).
#pragma once

#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>
#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../options.h"
#include "../tls.h"
#include "pygrpc_ffi.h"

namespace pgf_host {
namespace h2 {

class H2Call;
class Loop;

// What a worker thread asks of a call's loop.  Each task holds one
// reference to its call.
enum class TaskKind {
  kRead,          // the handler asked for the next request message
  kWrite,         // the handler queued a response message
  kInitialMd,     // the handler asked for its initial metadata to go now
  kDone,          // the handler finished (carries the dispatch's reference)
  kRefused,       // never dispatched (arg: the status code; carries it too)
  kConsume,       // the handler took received messages: reopen the window
};

struct Task {
  H2Call* call;
  TaskKind kind;
  int arg;
};

// Limits and settings every connection applies, from the options.
struct Config {
  uint32_t max_concurrent_streams = 1000;
  size_t max_metadata_bytes = 16 * 1024;
  size_t max_message_size = 64 * 1024 * 1024;
  int64_t max_connection_idle_ms = 30 * 60 * 1000;
  int64_t max_connection_age_ms = 2 * 3600 * 1000;
  int64_t max_connection_age_grace_ms = 10 * 60 * 1000;
  int64_t keepalive_time_ms = 2 * 3600 * 1000;
  int64_t keepalive_timeout_ms = 20 * 1000;
  int64_t min_ping_interval_ms = 5 * 60 * 1000;
  int max_ping_strikes = 2;
  bool keepalive_permit_without_calls = false;
};

// One HTTP/2 connection; touched only on its loop's thread.
class Conn {
 public:
  Conn(Loop* loop, int fd, std::string peer);
  ~Conn();
  bool Start();

  nghttp2_session* session() const { return session_; }
  Loop* loop() const { return loop_; }
  const std::string& peer() const { return peer_; }
  // The auth properties every call of the connection gets (pointing into
  // auth_), and the identity key ("" for none): set once, at the start of a
  // plaintext connection or after the TLS handshake.
  const std::vector<pgf_metadata_entry>& auth_properties() const { return auth_entries_; }
  const std::string& identity_key() const { return auth_.identity_key; }
  const Config& config() const;

  // Frames are sent at the end of the loop's turn (Flush).
  void MarkDirty();
  void OnEvents(uint32_t events);
  // Runs nghttp2_session_send and writes what is buffered; closes the
  // connection when the session is done or the socket broke.
  void Flush();
  // Writes iov in one writev after what is buffered, keeping the rest.  The
  // bytes need not outlive the call.
  void Write(const iovec* iov, int n);
  size_t buffered() const { return wbuf_.size() - woff_; }

  void Forget(int32_t stream_id) { calls_.erase(stream_id); }
  // The call is dispatched once the bytes read with its request are all
  // processed (ReadSocket), if its stream is still open then.
  void DispatchSoon(H2Call* call);
  // The call's message is sent: completed once nghttp2_session_send
  // returned (nghttp2 takes a new DATA item for the stream only then).
  void AfterSend(H2Call* call);
  void Adopt(int32_t stream_id, H2Call* call) { calls_[stream_id] = call; }
  size_t calls() const { return calls_.size(); }

  // Graceful stop: GOAWAY for new streams; the open ones finish.
  void Drain(uint32_t error_code);
  // Idle, age and keepalive; returns false once the connection is closed.
  void Tick(int64_t now_ms);
  void CloseSoon();
  bool closing() const { return closing_; }
  // Server stop after the grace: every call still open is cancelled.
  void AbortCalls();
  // Tears everything down: every call still open is cancelled.
  void Close();

  // nghttp2 callbacks.
  static ssize_t SendCb(nghttp2_session*, const uint8_t* data, size_t len, int, void* self);
  static int SendDataCb(nghttp2_session*, nghttp2_frame* frame, const uint8_t* framehd,
                        size_t length, nghttp2_data_source* source, void* self);
  static int BeginHeadersCb(nghttp2_session*, const nghttp2_frame* frame, void* self);
  static int HeaderCb(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                      size_t namelen, const uint8_t* value, size_t valuelen, uint8_t flags,
                      void* self);
  static int FrameRecvCb(nghttp2_session*, const nghttp2_frame* frame, void* self);
  static int DataChunkCb(nghttp2_session*, uint8_t flags, int32_t stream_id,
                         const uint8_t* data, size_t len, void* self);
  static int StreamCloseCb(nghttp2_session*, int32_t stream_id, uint32_t error_code,
                           void* self);
  static int FrameSendCb(nghttp2_session*, const nghttp2_frame* frame, void* self);

 private:
  void ReadSocket();
  void ReadFrames();
  bool WriteBuffered();
  void UpdateEpoll();
  // TLS: the handshake (before any HTTP/2), and the socket's read and write
  // through OpenSSL, with read()/write()'s results (-1 and EAGAIN: later).
  void Handshake();
  ssize_t ReadTls(uint8_t* buf, size_t len);
  ssize_t WriteTls(const char* data, size_t len);

  Loop* const loop_;
  const int fd_;
  const std::string peer_;
  PeerAuth auth_;
  std::vector<pgf_metadata_entry> auth_entries_;
  void SetAuth(PeerAuth auth);
  nghttp2_session* session_ = nullptr;
  SSL* ssl_ = nullptr;              // TLS; nullptr for plaintext
  bool handshaking_ = false;        // TLS handshake not done: no HTTP/2 yet
  bool ssl_wants_write_ = false;    // a handshake or read step waits for EPOLLOUT
  std::string wbuf_;
  size_t woff_ = 0;
  bool want_out_ = false;  // EPOLLOUT armed
  bool dirty_ = false;
  bool closing_ = false;
  bool draining_ = false;
  bool close_after_flush_ = false;  // a GOAWAY for an error went out
  std::unordered_map<int32_t, H2Call*> calls_;
  std::vector<H2Call*> to_dispatch_;  // each with a reference
  std::vector<H2Call*> sent_;         // AfterSend, each with a reference
  int64_t created_ms_;
  int64_t last_call_ms_;       // a call was open at this time (idle)
  int64_t last_read_ms_;       // bytes arrived (keepalive)
  int64_t ping_sent_ms_ = -1;  // our keepalive ping, unanswered since
  int64_t last_ping_recv_ms_ = -1;
  int ping_strikes_ = 0;
  int64_t goaway_ms_ = -1;     // age: GOAWAY sent at
};

class Server;

class Loop {
 public:
  Loop(Server* server, int index);
  ~Loop();
  bool Init();
  void Start();
  void Join();

  // Any thread.  Wakes the loop only when its queue was empty.
  void Post(const Task& t);
  void PostFd(int fd, std::string peer);
  // Any thread: runs on the loop (stop listening, GOAWAY, cancel all, quit).
  enum class Control { kDrain, kCancelAll, kQuit };
  void PostControl(Control c);

  Server* server() const { return server_; }
  const Config& config() const;
  bool OnLoopThread() const { return std::this_thread::get_id() == thread_.get_id(); }
  int epfd() const { return epfd_; }

  void MarkDirty(Conn* c) { dirty_.push_back(c); }
  // Deadlines, in CLOCK_MONOTONIC ms.
  void AddDeadline(int64_t at_ms, H2Call* call) { deadlines_.insert({at_ms, call}); }
  void RemoveDeadline(int64_t at_ms, H2Call* call) { deadlines_.erase({at_ms, call}); }
  void SetListener(int fd);
  void MarkClosing(Conn* c);

 private:
  void Run();
  void Wake();
  void CloseConns();
  void RunTasks();
  void Accept();
  void FlushDirty();

  Server* const server_;
  const int index_;
  int epfd_ = -1;
  int evfd_ = -1;
  int listen_fd_ = -1;
  std::thread thread_;

  std::mutex mu_;
  std::vector<Task> tasks_;
  std::vector<std::pair<int, std::string>> new_fds_;
  std::vector<Control> controls_;
  bool quit_ = false;
  bool draining_ = false;

  std::vector<Conn*> dirty_;
  std::vector<Conn*> closing_;
  std::set<Conn*> conns_;
  std::set<std::pair<int64_t, H2Call*>> deadlines_;
  int64_t next_tick_ms_ = 0;
};

class Server {
 public:
  explicit Server(const Options& opts);
  ~Server();
  // Binds and starts the loops; *port is the port bound.  False with
  // *error set on failure.
  bool Start(int* port, std::string* error);
  // Stops accepting and sends GOAWAY; calls in flight get until deadline
  // (CLOCK_MONOTONIC ms), then are cancelled; returns once no call is left
  // (or never: the caller's watchdog ends a process whose handler hangs).
  void Shutdown(int64_t deadline_ms);

  const Config& config() const { return config_; }
  // The TLS credentials; nullptr when the host serves plaintext.
  TlsCredentials* tls() const { return tls_.get(); }
  Loop* NextLoop();
  bool StartLoops(std::string* error);
  // H2Call objects alive (each until its handler finished and its stream
  // closed).
  std::atomic<int64_t> live_calls{0};

 private:
  const Options opts_;
  Config config_;
  std::unique_ptr<TlsCredentials> tls_;
  int listen_fd_ = -1;
  std::vector<std::unique_ptr<Loop>> loops_;
  std::atomic<unsigned> next_{0};
};

int64_t MonotonicMs();

}  // namespace h2
}  // namespace pgf_host
