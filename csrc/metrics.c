/* Per-method call statistics counted without the GIL (see "metrics" in
 * pygrpc_ffi.h): a bounded open-addressing table keyed by method path, with
 * atomic counters.  Lookups are lock-free; a mutex serialises only the rare
 * insertion of a new method.  Beside it, the host's gauges: a fixed array
 * of pool roles, each a few atomic numbers.  The table is a flat,
 * pointer-free struct so that it can live in a shared file mapping
 * (PGF_METRICS_FILE) that a supervisor process reads; its header names the
 * layout's version, so that a file in another layout is refused. */
#include "internal.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SLOTS 1024 /* power of two, twice PGF_METRICS_MAX_METHODS */
#define TABLE_MAGIC 0x5047464d45545231ull /* "PGFMETR1" */
/* 2: the pool gauges (pool[]) and the header's pools/pool_size fields. */
#define TABLE_VERSION 2u
/* Gauges per pool role in the table: PGF_GAUGE_* are 0..POOL_GAUGES_USED-1,
 * the rest is room for later ones without a layout change. */
#define POOL_GAUGES 8
#define POOL_GAUGES_USED 4
/* The roles defined so far: PGF_POOL_HANDLERS..PGF_POOL_SERVICE. */
#define POOL_ROLES 3

enum { SLOT_EMPTY = 0, SLOT_READY = 2 };

/* One method's live counters.  Every field is read and written with
 * __atomic builtins; state goes EMPTY -> READY once, after path and kind
 * are written (release), under insert_mu. */
typedef struct mentry {
    int state;
    int kind;
    uint32_t path_len;
    uint32_t pad_;
    char path[PGF_METRICS_PATH_MAX];
    uint64_t started;
    uint64_t handled[17];
    uint64_t msg_received;
    uint64_t msg_sent;
    int64_t in_flight;
    uint64_t buckets[PGF_METRICS_BUCKETS + 1];
    uint64_t sum_ns;
} mentry;

/* One pool role's gauges; state goes EMPTY -> READY when a host first
 * publishes one of them.  Every field is accessed atomically. */
typedef struct mpool {
    int state;
    int pad_;
    int64_t gauge[POOL_GAUGES];
} mpool;

typedef struct mtable {
    uint64_t magic; /* stored last, with release: the header is complete */
    uint32_t version;
    uint32_t slots;
    uint32_t entries; /* READY slots, not counting the overflow entry */
    uint32_t entry_size;
    uint32_t pools;     /* PGF_METRICS_MAX_POOLS */
    uint32_t pool_size; /* sizeof(mpool) */
    mpool pool[PGF_METRICS_MAX_POOLS];
    mentry overflow;
    mentry slot[SLOTS];
} mtable;

/* The header as a reader checks it before mapping the whole table. */
typedef struct mheader {
    uint64_t magic;
    uint32_t version;
} mheader;

typedef char path_size_matches_[
    sizeof(((pgf_method_stats *)0)->path) == PGF_METRICS_PATH_MAX ? 1 : -1];
typedef char pool_roles_fit_[POOL_ROLES <= PGF_METRICS_MAX_POOLS ? 1 : -1];
typedef char gauges_fit_[PGF_GAUGE_MAX_THREADS < POOL_GAUGES_USED &&
                         POOL_GAUGES_USED <= POOL_GAUGES ? 1 : -1];
typedef char buckets_match_[sizeof(((pgf_method_stats *)0)->duration_buckets) ==
                            (PGF_METRICS_BUCKETS + 1) * sizeof(uint64_t) ? 1 : -1];

static const double bucket_bounds[PGF_METRICS_BUCKETS] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
static const int64_t bucket_ns[PGF_METRICS_BUCKETS] = {
    5000000LL,   10000000LL,   25000000LL,   50000000LL,
    100000000LL, 250000000LL,  500000000LL,  1000000000LL,
    2500000000LL, 5000000000LL, 10000000000LL};

static mtable static_table;
static mtable *table; /* set once by init, then read atomically */
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t insert_mu = PTHREAD_MUTEX_INITIALIZER;
static int enabled = 1;
/* Entries made for paths no handler is registered for by name (a
 * whole-service handler's, refused calls'): at most
 * PGF_METRICS_MAX_UNREGISTERED, so that clients naming methods at will
 * never take the slots of registered methods.  Changed under insert_mu;
 * the table is this process's alone (its file is created anew). */
static uint32_t unregistered_entries;

static void table_header(mtable *t) {
    t->version = TABLE_VERSION;
    t->slots = SLOTS;
    t->entry_size = (uint32_t)sizeof(mentry);
    t->pools = PGF_METRICS_MAX_POOLS;
    t->pool_size = (uint32_t)sizeof(mpool);
    t->overflow.kind = -1;
    t->overflow.state = SLOT_READY;
    /* Last: a reader that sees the magic sees the rest of the header. */
    __atomic_store_n(&t->magic, TABLE_MAGIC, __ATOMIC_RELEASE);
}

/* The table in the file named by PGF_METRICS_FILE, or NULL. */
static mtable *map_file(const char *file) {
    int fd = open(file, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return NULL;
    void *p = MAP_FAILED;
    if (ftruncate(fd, (off_t)sizeof(mtable)) == 0)
        p = mmap(NULL, sizeof(mtable), PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                 0);
    close(fd);
    return p == MAP_FAILED ? NULL : (mtable *)p;
}

static void init_table(void) {
    const char *flag = getenv("PGF_METRICS");
    if (flag != NULL && strcmp(flag, "0") == 0)
        __atomic_store_n(&enabled, 0, __ATOMIC_RELAXED);
    const char *file = getenv("PGF_METRICS_FILE");
    mtable *t = NULL;
    if (file != NULL && file[0] != '\0')
        t = map_file(file); /* the file starts zeroed */
    if (t == NULL)
        t = &static_table;
    table_header(t);
    __atomic_store_n(&table, t, __ATOMIC_RELEASE);
}

static mtable *get_table(void) {
    mtable *t = __atomic_load_n(&table, __ATOMIC_ACQUIRE);
    if (t == NULL) {
        pthread_once(&init_once, init_table);
        t = __atomic_load_n(&table, __ATOMIC_ACQUIRE);
    }
    return t;
}

static uint32_t hash_path(const char *s, size_t len) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

static int slot_matches(const mentry *e, const char *path, size_t len) {
    return e->path_len == len && memcmp(e->path, path, len) == 0;
}

/* The entry counting path: found, inserted, or the overflow entry.  A path
 * that is not registered by name gets an entry of its own only while fewer
 * than PGF_METRICS_MAX_UNREGISTERED such entries exist. */
static mentry *lookup(mtable *t, const char *path, size_t len, int kind,
                      int registered) {
    if (kind < 0 || path == NULL || len == 0 || len >= PGF_METRICS_PATH_MAX)
        return &t->overflow;
    uint32_t start = hash_path(path, len) & (SLOTS - 1);
    for (uint32_t i = 0; i < SLOTS; i++) {
        mentry *e = &t->slot[(start + i) & (SLOTS - 1)];
        int state = __atomic_load_n(&e->state, __ATOMIC_ACQUIRE);
        if (state == SLOT_EMPTY)
            break;
        if (slot_matches(e, path, len))
            return e;
    }
    /* A flood of unknown names stays off the mutex once their share is
     * used up. */
    if (!registered &&
        __atomic_load_n(&unregistered_entries, __ATOMIC_RELAXED) >=
            PGF_METRICS_MAX_UNREGISTERED)
        return &t->overflow;
    /* Not there: insert under the mutex (states change only under it). */
    mentry *found = &t->overflow;
    pthread_mutex_lock(&insert_mu);
    for (uint32_t i = 0; i < SLOTS; i++) {
        mentry *e = &t->slot[(start + i) & (SLOTS - 1)];
        if (__atomic_load_n(&e->state, __ATOMIC_ACQUIRE) == SLOT_EMPTY) {
            if (__atomic_load_n(&t->entries, __ATOMIC_RELAXED) <
                    PGF_METRICS_MAX_METHODS &&
                (registered ||
                 __atomic_load_n(&unregistered_entries, __ATOMIC_RELAXED) <
                     PGF_METRICS_MAX_UNREGISTERED)) {
                memcpy(e->path, path, len);
                e->path[len] = '\0';
                e->path_len = (uint32_t)len;
                e->kind = kind;
                __atomic_store_n(&e->state, SLOT_READY, __ATOMIC_RELEASE);
                __atomic_fetch_add(&t->entries, 1, __ATOMIC_RELAXED);
                if (!registered)
                    __atomic_fetch_add(&unregistered_entries, 1,
                                       __ATOMIC_RELAXED);
                found = e;
            }
            break;
        }
        if (slot_matches(e, path, len)) {
            found = e;
            break;
        }
    }
    pthread_mutex_unlock(&insert_mu);
    return found;
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void add(uint64_t *counter, uint64_t n) {
    __atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

static void observe(mentry *e, int64_t ns) {
    if (ns < 0)
        ns = 0;
    int b = 0;
    while (b < PGF_METRICS_BUCKETS && ns > bucket_ns[b])
        b++;
    add(&e->buckets[b], 1);
    add(&e->sum_ns, (uint64_t)ns);
}

/* ------------------------------------------- hooks of dispatch and calls */

void pgf__metrics_begin(pgf__metrics_mark *mark, const char *path,
                        size_t path_len, int kind, int registered,
                        int request_received) {
    if (!__atomic_load_n(&enabled, __ATOMIC_RELAXED))
        return;
    mtable *t = get_table();
    if (!__atomic_load_n(&enabled, __ATOMIC_RELAXED))
        return; /* the environment turned it off */
    mentry *e = lookup(t, path, path_len, kind, registered);
    add(&e->started, 1);
    __atomic_fetch_add(&e->in_flight, 1, __ATOMIC_RELAXED);
    if (request_received)
        add(&e->msg_received, 1);
    mark->start_ns = now_ns();
    __atomic_store_n(&mark->entry, (void *)e, __ATOMIC_RELEASE);
}

void pgf__metrics_finish(pgf__metrics_mark *mark, int code, int response_set) {
    mentry *e = __atomic_load_n(&mark->entry, __ATOMIC_ACQUIRE);
    if (e == NULL)
        return;
    if (code < 0 || code > 16)
        code = PGF_STATUS_UNKNOWN;
    add(&e->handled[code], 1);
    if (code == PGF_STATUS_OK && response_set)
        add(&e->msg_sent, 1);
    observe(e, now_ns() - mark->start_ns);
    __atomic_fetch_sub(&e->in_flight, 1, __ATOMIC_RELAXED);
}

void pgf__metrics_message(pgf__metrics_mark *mark, int sent) {
    mentry *e = __atomic_load_n(&mark->entry, __ATOMIC_ACQUIRE);
    if (e != NULL)
        add(sent ? &e->msg_sent : &e->msg_received, 1);
}

/* ------------------------------------------------------------- public */

const double *pgf_metrics_bucket_bounds(void) { return bucket_bounds; }

void pgf_metrics_set_enabled(int enable) {
    get_table(); /* the environment's setting first, then this one */
    __atomic_store_n(&enabled, enable != 0, __ATOMIC_RELAXED);
}

int pgf_metrics_enabled(void) {
    get_table();
    return __atomic_load_n(&enabled, __ATOMIC_RELAXED);
}

void pgf_metrics_count_refused(const char *path, size_t path_len, int kind,
                               int code) {
    if (!__atomic_load_n(&enabled, __ATOMIC_RELAXED))
        return;
    mtable *t = get_table();
    /* The host does not say whether path is registered by name: it counts
     * as unregistered unless a dispatched call made its entry already. */
    mentry *e = lookup(t, path, path_len, kind, 0);
    if (code < 0 || code > 16)
        code = PGF_STATUS_UNKNOWN;
    add(&e->started, 1);
    add(&e->handled[code], 1);
    observe(e, 0);
}

/* ------------------------------------------------------------ gauges */

static mpool *pool_gauge(int pool, int gauge) {
    if (pool < 0 || pool >= POOL_ROLES || gauge < 0 ||
        gauge >= POOL_GAUGES_USED)
        return NULL;
    mpool *p = &get_table()->pool[pool];
    if (__atomic_load_n(&p->state, __ATOMIC_RELAXED) != SLOT_READY)
        __atomic_store_n(&p->state, SLOT_READY, __ATOMIC_RELEASE);
    return p;
}

int pgf_metrics_gauge_add(int pool, int gauge, int64_t delta) {
    mpool *p = pool_gauge(pool, gauge);
    if (p == NULL)
        return PGF_EINVAL;
    /* __atomic arithmetic on signed integers wraps: never undefined. */
    __atomic_fetch_add(&p->gauge[gauge], delta, __ATOMIC_RELAXED);
    return PGF_OK;
}

int pgf_metrics_gauge_set(int pool, int gauge, int64_t value) {
    mpool *p = pool_gauge(pool, gauge);
    if (p == NULL)
        return PGF_EINVAL;
    __atomic_store_n(&p->gauge[gauge], value, __ATOMIC_RELAXED);
    return PGF_OK;
}

/* ------------------------------------------------------------ reading */

static int check_out(const void *out, size_t cap, size_t stats_size,
                     size_t max_size, const size_t *n) {
    if (n == NULL || stats_size == 0 || stats_size > max_size ||
        (out == NULL && cap != 0))
        return PGF_EINVAL;
    return PGF_OK;
}

static void copy_entry(const mentry *e, pgf_method_stats *s) {
    memset(s, 0, sizeof(*s));
    size_t len = __atomic_load_n(&e->path_len, __ATOMIC_RELAXED);
    if (len >= PGF_METRICS_PATH_MAX)
        len = 0; /* a damaged file: never read past the field */
    memcpy(s->path, e->path, len);
    s->kind = e->kind;
    s->started = __atomic_load_n(&e->started, __ATOMIC_RELAXED);
    for (int c = 0; c < 17; c++)
        s->handled[c] = __atomic_load_n(&e->handled[c], __ATOMIC_RELAXED);
    s->msg_received = __atomic_load_n(&e->msg_received, __ATOMIC_RELAXED);
    s->msg_sent = __atomic_load_n(&e->msg_sent, __ATOMIC_RELAXED);
    s->in_flight = __atomic_load_n(&e->in_flight, __ATOMIC_RELAXED);
    for (int b = 0; b <= PGF_METRICS_BUCKETS; b++)
        s->duration_buckets[b] = __atomic_load_n(&e->buckets[b],
                                                 __ATOMIC_RELAXED);
    s->duration_sum_ns = __atomic_load_n(&e->sum_ns, __ATOMIC_RELAXED);
}

static int copy_table(const mtable *t, pgf_method_stats *out, size_t cap,
                      size_t stats_size, size_t *n) {
    if (check_out(out, cap, stats_size, sizeof(pgf_method_stats), n) != PGF_OK)
        return PGF_EINVAL;
    size_t count = 0;
    pgf_method_stats s;
    for (int i = -1; i < SLOTS; i++) {
        const mentry *e = i < 0 ? &t->overflow : &t->slot[i];
        if (__atomic_load_n(&e->state, __ATOMIC_ACQUIRE) != SLOT_READY)
            continue;
        if (count < cap) {
            copy_entry(e, &s);
            memcpy((char *)out + count * stats_size, &s, stats_size);
        }
        count++;
    }
    *n = count;
    return PGF_OK;
}

static int copy_pools(const mtable *t, pgf_pool_stats *out, size_t cap,
                      size_t stats_size, size_t *n) {
    if (check_out(out, cap, stats_size, sizeof(pgf_pool_stats), n) != PGF_OK)
        return PGF_EINVAL;
    size_t count = 0;
    pgf_pool_stats s;
    for (int i = 0; i < POOL_ROLES; i++) {
        const mpool *p = &t->pool[i];
        if (__atomic_load_n(&p->state, __ATOMIC_ACQUIRE) != SLOT_READY)
            continue;
        if (count < cap) {
            memset(&s, 0, sizeof(s));
            s.pool = i;
            s.queued = __atomic_load_n(&p->gauge[PGF_GAUGE_QUEUED],
                                       __ATOMIC_RELAXED);
            s.threads = __atomic_load_n(&p->gauge[PGF_GAUGE_THREADS],
                                        __ATOMIC_RELAXED);
            s.busy = __atomic_load_n(&p->gauge[PGF_GAUGE_BUSY],
                                     __ATOMIC_RELAXED);
            s.max_threads = __atomic_load_n(&p->gauge[PGF_GAUGE_MAX_THREADS],
                                            __ATOMIC_RELAXED);
            memcpy((char *)out + count * stats_size, &s, stats_size);
        }
        count++;
    }
    *n = count;
    return PGF_OK;
}

int pgf_metrics_snapshot(pgf_method_stats *out, size_t cap, size_t stats_size,
                         size_t *n) {
    return copy_table(get_table(), out, cap, stats_size, n);
}

int pgf_metrics_pool_snapshot(pgf_pool_stats *out, size_t cap,
                              size_t stats_size, size_t *n) {
    return copy_pools(get_table(), out, cap, stats_size, n);
}

/* Maps the table in file read-only into *out (munmap it, sizeof(mtable)).
 * A file shorter than the table, or whose magic is not there (yet), holds
 * no table: PGF_EINVAL.  One with the magic but another version, or sizes
 * this build does not have, was written in another layout: PGF_EVERSION
 * (a layout-1 file is shorter than this table, so its header is read on
 * its own first). */
static int map_table_file(const char *file, const mtable **out) {
    int fd = open(file, O_RDONLY);
    if (fd < 0)
        return PGF_ENOTFOUND;
    int rc = PGF_EINVAL;
    struct stat st;
    mheader h;
    void *p = MAP_FAILED;
    if (fstat(fd, &st) == 0 && (size_t)st.st_size >= sizeof(h) &&
        pread(fd, &h, sizeof(h), 0) == (ssize_t)sizeof(h) &&
        h.magic == TABLE_MAGIC) {
        if (h.version != TABLE_VERSION)
            rc = PGF_EVERSION;
        else if ((size_t)st.st_size >= sizeof(mtable))
            p = mmap(NULL, sizeof(mtable), PROT_READ, MAP_SHARED, fd, 0);
    }
    close(fd);
    if (p == MAP_FAILED)
        return rc;
    const mtable *t = p;
    if (__atomic_load_n(&t->magic, __ATOMIC_ACQUIRE) != TABLE_MAGIC) {
        rc = PGF_EINVAL;
    } else if (t->version != TABLE_VERSION || t->slots != SLOTS ||
               t->entry_size != sizeof(mentry) ||
               t->pools != PGF_METRICS_MAX_POOLS ||
               t->pool_size != sizeof(mpool)) {
        rc = PGF_EVERSION;
    } else {
        *out = t;
        return PGF_OK;
    }
    munmap(p, sizeof(mtable));
    return rc;
}

int pgf_metrics_snapshot_file(const char *file, pgf_method_stats *out,
                              size_t cap, size_t stats_size, size_t *n) {
    if (file == NULL || n == NULL)
        return PGF_EINVAL;
    const mtable *t = NULL;
    int rc = map_table_file(file, &t);
    if (rc != PGF_OK)
        return rc;
    rc = copy_table(t, out, cap, stats_size, n);
    munmap((void *)t, sizeof(mtable));
    return rc;
}

int pgf_metrics_pool_snapshot_file(const char *file, pgf_pool_stats *out,
                                   size_t cap, size_t stats_size, size_t *n) {
    if (file == NULL || n == NULL)
        return PGF_EINVAL;
    const mtable *t = NULL;
    int rc = map_table_file(file, &t);
    if (rc != PGF_OK)
        return rc;
    rc = copy_pools(t, out, cap, stats_size, n);
    munmap((void *)t, sizeof(mtable));
    return rc;
}
