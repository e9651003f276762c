// A pool of threads running queued tasks in FIFO order.  It starts with
// `threads` threads and, when the oldest queued task has waited longer than
// the stall limit while every thread is busy (handlers that block or hang),
// adds threads up to `max_threads`, so that such handlers cannot starve the
// calls queued behind them.
//
// A pool given a metrics role (PGF_POOL_*) publishes its numbers in the
// shim's metrics table as they change (pgf_metrics_gauge_add): tasks queued,
// threads alive, threads busy, and its maximum.  Every change is made with
// mu_ held, so each gauge moves in the order the pool's state does and never
// reads below zero; the atomics themselves are relaxed.  A stopped pool
// contributes nothing (its maximum is withdrawn once its threads are gone).
#pragma once

#include <chrono>
#include <cstdint>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace pgf_host {

class WorkerPool {
 public:
  // A task is two plain pointers and a function: posting never allocates
  // beyond the deque's own blocks.
  using Fn = void (*)(void* a, void* b);

  // metrics_pool: the PGF_POOL_* role whose gauges this pool adds to, or
  // -1 for none.  batch: run the threads under SCHED_BATCH (Linux), so that
  // a thread woken for a task never preempts a running gRPC thread; it runs
  // on an idle core, or when the running thread sleeps or its slice ends.
  WorkerPool(int threads, int max_threads, const char* name, int metrics_pool = -1,
             bool batch = false);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Queues fn(a, b).  Returns false, and queues nothing, once Stop() began:
  // the caller decides what to do with the task then.
  bool Post(Fn fn, void* a, void* b);

  // Post, unless max_queued tasks already wait for a thread: then kFull and
  // nothing is queued (the caller answers instead of queueing without end).
  enum class PostResult { kQueued, kFull, kStopped };
  PostResult PostBounded(Fn fn, void* a, void* b, size_t max_queued);

  // Refuses new tasks, runs every task already queued, joins the threads.
  // Idempotent.  Must not be called from one of the pool's threads.
  void Stop();

  // Threads started so far (grows up to max_threads).
  int size();

 private:
  using Clock = std::chrono::steady_clock;
  struct Task {
    Fn fn;
    void* a;
    void* b;
    Clock::time_point queued;
  };
  void Run();
  void Watch();
  void StartThread();  // with mu_ held
  // Whether a task just queued needs a cv_ notify; with mu_ held.
  bool WakeLocked();
  // Adds delta to one of the role's PGF_GAUGE_*; with mu_ held.
  void Gauge(int gauge, int64_t delta);

  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable watch_cv_;
  std::deque<Task> queue_;
  int idle_ = 0;           // threads waiting on cv_
  int wakes_pending_ = 0;  // of those, notified and not yet running
  bool stopping_ = false;
  int max_threads_;
  int metrics_pool_;
  bool batch_;
  bool max_published_ = false;  // max_threads_ is in the role's gauge
  std::string name_;
  std::vector<std::thread> threads_;
  std::thread watchdog_;
};

}  // namespace pgf_host
