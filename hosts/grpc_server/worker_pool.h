// A fixed pool of threads running queued tasks in FIFO order.
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

namespace pgf_host {

class WorkerPool {
 public:
  // A task is two plain pointers and a function: posting never allocates
  // beyond the deque's own blocks.
  using Fn = void (*)(void* a, void* b);

  WorkerPool(int threads, const char* name);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Queues fn(a, b).  Returns false, and queues nothing, once Stop() began:
  // the caller decides what to do with the task then.
  bool Post(Fn fn, void* a, void* b);

  // Refuses new tasks, runs every task already queued, joins the threads.
  // Idempotent.  Must not be called from one of the pool's threads.
  void Stop();

 private:
  struct Task {
    Fn fn;
    void* a;
    void* b;
  };
  void Run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Task> queue_;
  int idle_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace pgf_host
