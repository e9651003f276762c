#include "worker_pool.h"

#include <pthread.h>

#include <algorithm>

#include <string>

namespace pgf_host {

WorkerPool::WorkerPool(int threads, const char* name) {
  threads_.reserve(threads);
  for (int i = 0; i < threads; ++i) {
    threads_.emplace_back([this] { Run(); });
    // Thread names make `top -H` and gdb output readable; 15 chars max.
    std::string n = std::string(name) + "-" + std::to_string(i);
    n.resize(std::min<size_t>(n.size(), 15));
    pthread_setname_np(threads_.back().native_handle(), n.c_str());
  }
}

WorkerPool::~WorkerPool() { Stop(); }

bool WorkerPool::Post(Fn fn, void* a, void* b) {
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return false;
    queue_.push_back(Task{fn, a, b});
    // Only a sleeping worker needs a futex wake; busy ones loop back to the
    // queue by themselves.
    wake = idle_ > 0;
  }
  if (wake) cv_.notify_one();
  return true;
}

void WorkerPool::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
}

void WorkerPool::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (queue_.empty()) {
      if (stopping_) return;
      ++idle_;
      cv_.wait(lock);
      --idle_;
      continue;
    }
    Task t = queue_.front();
    queue_.pop_front();
    lock.unlock();
    t.fn(t.a, t.b);
    lock.lock();
  }
}

}  // namespace pgf_host
