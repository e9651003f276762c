#include "memory_budget.h"

namespace pgf_host {

bool MemoryBudget::TryCharge(size_t n, size_t keep_free) {
  if (keep_free > limit_ || n > limit_ - keep_free) return false;
  const size_t ceiling = limit_ - keep_free - n;  // used may be at most this
  size_t used = used_.load(std::memory_order_relaxed);
  do {
    if (used > ceiling) return false;
  } while (!used_.compare_exchange_weak(used, used + n, std::memory_order_relaxed));
  return true;
}

MemoryBudget& HostBudget() {
  static MemoryBudget budget;
  return budget;
}

}  // namespace pgf_host
