/* Counts of live objects, by kind (PGF_LIVE_*), for leak checks. */
#include "internal.h"

static int64_t live_counts[PGF_LIVE_KINDS];

void pgf__live_add(int kind, int64_t delta) {
    __atomic_fetch_add(&live_counts[kind], delta, __ATOMIC_RELAXED);
}

int64_t pgf_live_count(int kind) {
    if (kind < 0 || kind >= PGF_LIVE_KINDS)
        return -1;
    return __atomic_load_n(&live_counts[kind], __ATOMIC_RELAXED);
}
