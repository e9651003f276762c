// A streaming load client on gRPC C++'s callback API, faster than the
// servers it measures: it opens K streams to one method and counts the
// response messages received in a fixed window.
//
//   stream_client --target HOST:PORT --method /pkg.Svc/M --mode bidi|server|unary
//                 [--streams K] [--seconds T] [--payload N] [--rate R]
//
// bidi:   each stream writes N-byte messages back to back (one write in
//         flight, as gRPC allows) and reads the answers concurrently.
// server: each stream sends one request (the decimal count of messages it
//         wants) and reads the server's messages.
// unary:  open loop at a fixed offered load (--rate calls/s, spread over
//         the window whatever the answers' pace): each call sends an
//         N-byte message; the latency of each answer is recorded.
// Prints one JSON line: {"messages": M, "seconds": S, "messages_per_s": R,
// "errors": E} (unary adds "p50_us" and "p99_us").  Build: g++ -O2 -std=c++17 stream_client.cc
// $(pkg-config --cflags --libs grpc++) -o stream_client
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <algorithm>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

std::atomic<bool> measuring{false};
std::atomic<bool> stopping{false};
std::atomic<long> received{0};
std::atomic<long> errors{0};

class Stream final : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  Stream(grpc::GenericStub* stub, const std::string& method, bool bidi, size_t payload)
      : bidi_(bidi) {
    std::string body = bidi ? std::string(payload, 'x') : std::string("100000000");
    grpc::Slice slice(body);
    request_ = grpc::ByteBuffer(&slice, 1);
    stub->PrepareBidiStreamingCall(&ctx_, method, grpc::StubOptions(), this);
    StartRead(&response_);
    if (bidi_) {
      StartWrite(&request_);
    } else {
      StartWriteLast(&request_, grpc::WriteOptions());
    }
    StartCall();
  }

  void OnWriteDone(bool ok) override {
    if (!ok || !bidi_) return;
    if (stopping.load(std::memory_order_relaxed)) {
      StartWritesDone();
      return;
    }
    StartWrite(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;
    if (measuring.load(std::memory_order_relaxed)) received.fetch_add(1, std::memory_order_relaxed);
    if (stopping.load(std::memory_order_relaxed) && !bidi_) {
      ctx_.TryCancel();
      return;
    }
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    if (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED) {
      errors.fetch_add(1);
      std::fprintf(stderr, "stream ended: %d %s\n", status.error_code(),
                   status.error_message().c_str());
    }
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
    cv_.notify_all();
  }

  void Await() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(30), [this] { return done_; });
    if (!done_) ctx_.TryCancel();
    cv_.wait(lock, [this] { return done_; });
  }

 private:
  bool bidi_;
  grpc::ClientContext ctx_;
  grpc::ByteBuffer request_;
  grpc::ByteBuffer response_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
};

// One unary call of the open loop: sent at its scheduled time, its latency
// recorded when the answer arrives.
struct UnaryCall {
  grpc::ClientContext ctx;
  grpc::ByteBuffer request;
  grpc::ByteBuffer response;
  Clock::time_point sent;
};

std::mutex latencies_mu;
std::vector<double> latencies_us;
std::atomic<long> in_flight{0};

int RunUnary(grpc::GenericStub* stub, const std::string& method, double rate, double seconds,
             size_t payload) {
  std::string body(payload, 'x');
  const auto interval = std::chrono::duration<double>(1.0 / rate);
  latencies_us.reserve(static_cast<size_t>(rate * seconds) + 16);
  auto t0 = Clock::now();
  long sent = 0;
  for (;;) {
    auto due = t0 + std::chrono::duration_cast<Clock::duration>(interval * sent);
    if (std::chrono::duration<double>(due - t0).count() >= seconds) break;
    std::this_thread::sleep_until(due);
    auto* call = new UnaryCall;
    grpc::Slice slice(body);
    call->request = grpc::ByteBuffer(&slice, 1);
    call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    call->sent = Clock::now();
    in_flight.fetch_add(1);
    stub->UnaryCall(&call->ctx, method, grpc::StubOptions(), &call->request, &call->response,
                    [call](grpc::Status status) {
                      double us = std::chrono::duration<double, std::micro>(
                                      Clock::now() - call->sent).count();
                      if (status.ok()) {
                        std::lock_guard<std::mutex> lock(latencies_mu);
                        latencies_us.push_back(us);
                      } else {
                        errors.fetch_add(1);
                      }
                      delete call;
                      in_flight.fetch_sub(1);
                    });
    ++sent;
  }
  double took = std::chrono::duration<double>(Clock::now() - t0).count();
  while (in_flight.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::sort(latencies_us.begin(), latencies_us.end());
  auto pct = [](double q) {
    if (latencies_us.empty()) return 0.0;
    size_t i = static_cast<size_t>(q * static_cast<double>(latencies_us.size() - 1) + 0.5);
    return latencies_us[std::min(i, latencies_us.size() - 1)];
  };
  std::printf("{\"messages\": %zu, \"seconds\": %.3f, \"messages_per_s\": %.1f, "
              "\"errors\": %ld, \"p50_us\": %.1f, \"p99_us\": %.1f}\n",
              latencies_us.size(), took, static_cast<double>(latencies_us.size()) / took,
              errors.load(), pct(0.50), pct(0.99));
  return errors.load() ? 1 : 0;
}

const char* Arg(int argc, char** argv, const char* name, const char* fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  std::string target = Arg(argc, argv, "--target", "127.0.0.1:50051");
  std::string method = Arg(argc, argv, "--method", "/bench.Stream/Bidi");
  std::string mode = Arg(argc, argv, "--mode", "bidi");
  bool bidi = mode == "bidi";
  int streams = std::atoi(Arg(argc, argv, "--streams", "4"));
  double seconds = std::atof(Arg(argc, argv, "--seconds", "3"));
  size_t payload = static_cast<size_t>(std::atol(Arg(argc, argv, "--payload", "16")));

  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  auto channel = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  grpc::GenericStub stub(channel);
  if (mode == "unary")
    return RunUnary(&stub, method, std::atof(Arg(argc, argv, "--rate", "1000")), seconds, payload);
  std::vector<std::unique_ptr<Stream>> all;
  for (int i = 0; i < streams; ++i)
    all.emplace_back(new Stream(&stub, method, bidi, payload));

  // A short warm-up, then the measured window.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  measuring = true;
  auto t0 = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  measuring = false;
  double took = std::chrono::duration<double>(Clock::now() - t0).count();
  long count = received.load();
  stopping = true;
  for (auto& s : all) s->Await();
  std::printf("{\"messages\": %ld, \"seconds\": %.3f, \"messages_per_s\": %.1f, \"errors\": %ld}\n",
              count, took, count / took, errors.load());
  return errors.load() ? 1 : 0;
}
