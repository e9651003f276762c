#include "worker_pool.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>

#include "pygrpc_ffi.h"

namespace pgf_host {

namespace {
// How long the oldest queued task may wait, with every thread busy, before
// the pool grows; and how often that is checked.
constexpr auto kStallLimit = std::chrono::milliseconds(50);
constexpr auto kWatchPeriod = std::chrono::milliseconds(20);
}  // namespace

WorkerPool::WorkerPool(int threads, int max_threads, const char* name, int metrics_pool,
                       bool batch)
    : max_threads_(std::max(threads, max_threads)),
      metrics_pool_(metrics_pool),
      batch_(batch),
      name_(name) {
  std::lock_guard<std::mutex> lock(mu_);
  Gauge(PGF_GAUGE_MAX_THREADS, max_threads_);
  max_published_ = true;
  threads_.reserve(max_threads_);
  for (int i = 0; i < threads; ++i) StartThread();
  if (max_threads_ > threads) watchdog_ = std::thread([this] { Watch(); });
}

WorkerPool::~WorkerPool() { Stop(); }

void WorkerPool::Gauge(int gauge, int64_t delta) {
  if (metrics_pool_ >= 0) pgf_metrics_gauge_add(metrics_pool_, gauge, delta);
}

void WorkerPool::StartThread() {
  threads_.emplace_back([this] { Run(); });
  // Counted here, under mu_, before the thread runs: it leaves the count in
  // Run(), under mu_ too, so the gauge never dips below zero.
  Gauge(PGF_GAUGE_THREADS, 1);
  // Thread names make `top -H` and gdb output readable; 15 chars max.
  std::string n = name_ + "-" + std::to_string(threads_.size() - 1);
  n.resize(std::min<size_t>(n.size(), 15));
  pthread_setname_np(threads_.back().native_handle(), n.c_str());
#ifdef SCHED_BATCH
  if (batch_) {
    // Unprivileged and best effort: a thread that stays SCHED_OTHER only
    // loses the effect.
    sched_param param{};
    pthread_setschedparam(threads_.back().native_handle(), SCHED_BATCH, &param);
  }
#endif
}

int WorkerPool::size() {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(threads_.size());
}

bool WorkerPool::WakeLocked() {
  // Only a sleeping worker needs a futex wake, and one at a time: busy
  // ones, and one woken but not yet running, loop back to the queue by
  // themselves, and a woken one wakes the next if tasks remain (Run), so a
  // burst of calls costs the posting gRPC thread one wake, not one per idle
  // worker.  (Waking one per task cost a futex call per call under load:
  // 0.95 context switches per echo call against 0.62.)
  if (idle_ == 0 || wakes_pending_ > 0) return false;
  ++wakes_pending_;
  return true;
}

bool WorkerPool::Post(Fn fn, void* a, void* b) {
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return false;
    queue_.push_back(Task{fn, a, b, Clock::now()});
    Gauge(PGF_GAUGE_QUEUED, 1);
    wake = WakeLocked();
  }
  if (wake) cv_.notify_one();
  return true;
}

WorkerPool::PostResult WorkerPool::PostBounded(Fn fn, void* a, void* b, size_t max_queued) {
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return PostResult::kStopped;
    // Tasks a sleeping thread is about to take do not wait.
    size_t waiting = queue_.size() > static_cast<size_t>(idle_)
                         ? queue_.size() - static_cast<size_t>(idle_) : 0;
    if (waiting >= max_queued) return PostResult::kFull;
    queue_.push_back(Task{fn, a, b, Clock::now()});
    Gauge(PGF_GAUGE_QUEUED, 1);
    wake = WakeLocked();
  }
  if (wake) cv_.notify_one();
  return PostResult::kQueued;
}

void WorkerPool::Watch() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    watch_cv_.wait_for(lock, kWatchPeriod);
    if (stopping_ || queue_.empty() || idle_ > 0) continue;
    if (Clock::now() - queue_.front().queued < kStallLimit) continue;
    if (static_cast<int>(threads_.size()) < max_threads_) StartThread();
  }
}

void WorkerPool::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  watch_cv_.notify_all();
  if (watchdog_.joinable()) watchdog_.join();
  // The watchdog is gone: threads_ no longer grows.
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (max_published_) {
    Gauge(PGF_GAUGE_MAX_THREADS, -max_threads_);
    max_published_ = false;
  }
}

void WorkerPool::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (queue_.empty()) {
      if (stopping_) {
        Gauge(PGF_GAUGE_THREADS, -1);
        return;
      }
      ++idle_;
      cv_.wait(lock);
      --idle_;
      if (wakes_pending_ > 0) --wakes_pending_;
      continue;
    }
    Task t = queue_.front();
    queue_.pop_front();
    Gauge(PGF_GAUGE_QUEUED, -1);
    Gauge(PGF_GAUGE_BUSY, 1);
    bool wake = !queue_.empty() && WakeLocked();  // the next task's thread
    lock.unlock();
    if (wake) cv_.notify_one();
    t.fn(t.a, t.b);
    lock.lock();
    Gauge(PGF_GAUGE_BUSY, -1);
  }
}

}  // namespace pgf_host
