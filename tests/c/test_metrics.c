/* Unit tests of the shim's call metrics (no Python): started / handled by
 * code / messages in and out / in flight / duration histogram per method,
 * unknown methods and methods beyond the bound in the overflow entry (and
 * registered methods counted under their names after a flood of unknown
 * names to a whole-service handler), the
 * on/off switch, refused calls, older (smaller) stats structs, and the
 * shared file a supervisor reads (PGF_METRICS_FILE); the host gauges of
 * thread pools (published roles only, exact under concurrent updates, in
 * the file too), and files of another layout refused.
 *
 * Build: make -C tests/c test (or test-asan, test-tsan). */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include "pygrpc_ffi.h"
#include "check.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define MAX_STATS (PGF_METRICS_MAX_METHODS + 8)

static pgf_method_stats stats[MAX_STATS];
static pgf_method_stats file_stats[MAX_STATS];

/* The entry for path in a fresh snapshot (a zeroed one if absent). */
static pgf_method_stats entry(const char *path) {
    size_t n = 0;
    CHECK_INT(pgf_metrics_snapshot(stats, MAX_STATS, sizeof(stats[0]), &n),
              PGF_OK);
    CHECK(n <= MAX_STATS);
    for (size_t i = 0; i < n; i++)
        if (strcmp(stats[i].path, path) == 0)
            return stats[i];
    pgf_method_stats none;
    memset(&none, 0, sizeof(none));
    return none;
}

static uint64_t bucket_total(const pgf_method_stats *s) {
    uint64_t total = 0;
    for (int b = 0; b <= PGF_METRICS_BUCKETS; b++)
        total += s->duration_buckets[b];
    return total;
}

/* ------------------------------------------------------------ handlers */

static uint8_t answer[] = "ok";

/* Answers OK with a payload, or fails with the code in the payload's first
 * byte ('5' -> NOT_FOUND). */
static void unary_handler(void *data, pgf_call *call) {
    (void)data;
    const uint8_t *req = NULL;
    size_t len = 0;
    pgf_call_request(call, &req, &len);
    if (len > 0 && req[0] == '5') {
        CHECK_INT(pgf_call_finish(call, PGF_STATUS_NOT_FOUND, "no", 2), PGF_OK);
        return;
    }
    CHECK_INT(pgf_call_set_response(call, answer, 2, NULL, NULL), PGF_OK);
    CHECK_INT(pgf_call_finish(call, PGF_STATUS_OK, NULL, 0), PGF_OK);
}

/* A stream handler that does nothing now; the test drives the call. */
static void later_handler(void *data, pgf_call *call) {
    (void)data;
    (void)call;
}

static void no_events(pgf_call *call, int event, void *data) {
    (void)call;
    (void)event;
    (void)data;
}

static void on_read(pgf_call *call, int result, pgf_message *msg, void *ud) {
    (void)call;
    *(int *)ud = result;
    pgf_message_unref(msg);
}

static void on_write(pgf_call *call, int result, void *ud) {
    (void)call;
    *(int *)ud = result;
}

static void unary(pgf_registry *reg, const char *path, const char *payload) {
    pgf_call *c = pgf_call_new(path, strlen(path));
    CHECK(c != NULL);
    CHECK_INT(pgf_call_set_request(c, (const uint8_t *)payload,
                                   strlen(payload)), PGF_OK);
    CHECK_INT(pgf_dispatch(reg, c), PGF_OK);
    pgf_call_unref(c);
}

/* --------------------------------------------------------------- tests */

static void test_unary_counts(pgf_registry *reg) {
    pgf_method_stats before = entry("/m.Svc/Get");
    for (int i = 0; i < 3; i++)
        unary(reg, "/m.Svc/Get", "x");
    unary(reg, "/m.Svc/Get", "5");
    pgf_method_stats s = entry("/m.Svc/Get");
    CHECK_INT(s.kind, PGF_KIND_UNARY);
    CHECK_INT(s.started - before.started, 4);
    CHECK_INT(s.handled[PGF_STATUS_OK] - before.handled[PGF_STATUS_OK], 3);
    CHECK_INT(s.handled[PGF_STATUS_NOT_FOUND] -
                  before.handled[PGF_STATUS_NOT_FOUND], 1);
    CHECK_INT(s.msg_received - before.msg_received, 4);
    CHECK_INT(s.msg_sent - before.msg_sent, 3); /* failed calls send none */
    CHECK_INT(s.in_flight, 0);
    CHECK_INT(bucket_total(&s) - bucket_total(&before), 4);
    /* Fast calls land in the first bucket (<= 5 ms). */
    CHECK(s.duration_buckets[0] >= 4);
    const double *bounds = pgf_metrics_bucket_bounds();
    CHECK(bounds[0] == 0.005 && bounds[PGF_METRICS_BUCKETS - 1] == 10.0);
}

static void test_unknown_methods_overflow(pgf_registry *reg) {
    pgf_method_stats before = entry("");
    unary(reg, "/m.Svc/Nope", "x");
    unary(reg, "/nobody.Here/Nope", "x");
    pgf_method_stats s = entry("");
    CHECK_INT(s.kind, -1);
    CHECK_INT(s.started - before.started, 2);
    CHECK_INT(s.handled[PGF_STATUS_UNIMPLEMENTED] -
                  before.handled[PGF_STATUS_UNIMPLEMENTED], 2);
    /* No entry was made for either path. */
    CHECK_INT(entry("/m.Svc/Nope").started, 0);
    CHECK_INT(entry("/nobody.Here/Nope").started, 0);
}

static void test_stream_messages(pgf_registry *reg) {
    CHECK_INT(pgf_registry_register(reg, "m.Chat", 6, "Talk", 4,
                                    PGF_KIND_BIDI_STREAMING, later_handler,
                                    NULL, NULL), PGF_OK);
    pgf_call *c = pgf_call_new("/m.Chat/Talk", 12);
    CHECK(c != NULL);
    CHECK_INT(pgf_call_set_stream(c, no_events, NULL), PGF_OK);
    CHECK_INT(pgf_dispatch_async(reg, c, NULL, NULL), PGF_OK);
    pgf_method_stats s = entry("/m.Chat/Talk");
    CHECK_INT(s.kind, PGF_KIND_BIDI_STREAMING);
    CHECK_INT(s.started, 1);
    CHECK_INT(s.in_flight, 1);
    CHECK_INT(s.msg_received, 0);
    for (int i = 0; i < 3; i++) {
        int read_result = 99, write_result = 99;
        CHECK_INT(pgf_call_read(c, on_read, &read_result), PGF_OK);
        CHECK_INT(pgf_call_push_request(c, pgf_message_new(answer, 2, NULL,
                                                           NULL)), PGF_OK);
        CHECK_INT(read_result, PGF_OK);
        CHECK_INT(pgf_call_write(c, answer, 2, NULL, NULL, on_write,
                                 &write_result), PGF_OK);
        const uint8_t *data;
        size_t len;
        pgf_release_fn release;
        void *ctx;
        CHECK_INT(pgf_call_take_write(c, &data, &len, &release, &ctx, NULL),
                  PGF_OK);
        /* The third write fails on the wire: not counted as sent. */
        CHECK_INT(pgf_call_write_done(c, i < 2), PGF_OK);
        CHECK_INT(write_result, i < 2 ? PGF_OK : PGF_ECANCELLED);
    }
    int eof = 99;
    CHECK_INT(pgf_call_read(c, on_read, &eof), PGF_OK);
    CHECK_INT(pgf_call_push_request(c, NULL), PGF_OK); /* half-close */
    CHECK_INT(eof, PGF_EOF);
    s = entry("/m.Chat/Talk");
    CHECK_INT(s.msg_received, 3);
    CHECK_INT(s.msg_sent, 2);
    CHECK_INT(pgf_call_finish(c, PGF_STATUS_OK, NULL, 0), PGF_OK);
    s = entry("/m.Chat/Talk");
    CHECK_INT(s.handled[PGF_STATUS_OK], 1);
    CHECK_INT(s.msg_sent, 2); /* no unary response on a stream */
    CHECK_INT(s.in_flight, 0);
    pgf_call_unref(c);
}

static void test_refused_and_switch(pgf_registry *reg) {
    pgf_metrics_count_refused("/m.Svc/Get", 10, PGF_KIND_UNARY,
                              PGF_STATUS_RESOURCE_EXHAUSTED);
    pgf_metrics_count_refused("/m.Svc/Get", 10, PGF_KIND_UNARY, 99);
    pgf_metrics_count_refused(NULL, 5, -1, PGF_STATUS_UNAVAILABLE);
    pgf_method_stats s = entry("/m.Svc/Get");
    CHECK_INT(s.handled[PGF_STATUS_RESOURCE_EXHAUSTED], 1);
    CHECK_INT(s.handled[PGF_STATUS_UNKNOWN], 1);
    CHECK_INT(entry("").handled[PGF_STATUS_UNAVAILABLE], 1);

    CHECK_INT(pgf_metrics_enabled(), 1);
    pgf_metrics_set_enabled(0);
    CHECK_INT(pgf_metrics_enabled(), 0);
    uint64_t started = entry("/m.Svc/Get").started;
    unary(reg, "/m.Svc/Get", "x");
    CHECK_INT(entry("/m.Svc/Get").started, started);
    pgf_metrics_set_enabled(1);
    unary(reg, "/m.Svc/Get", "x");
    CHECK_INT(entry("/m.Svc/Get").started, started + 1);
}

static size_t entries_now(void) {
    size_t n = 0;
    CHECK_INT(pgf_metrics_snapshot(NULL, 0, sizeof(stats[0]), &n), PGF_OK);
    return n;
}

static void test_bounded(pgf_registry *reg) {
    /* A service-level registration takes any method name: the paths it
     * serves get at most PGF_METRICS_MAX_UNREGISTERED entries, the rest
     * count as overflow. */
    CHECK_INT(pgf_registry_register_service(reg, "m.Any", 5, unary_handler,
                                            NULL, NULL), PGF_OK);
    uint64_t overflow = entry("").started;
    size_t before_flood = entries_now();
    char path[64];
    int calls = PGF_METRICS_MAX_METHODS + 40;
    for (int i = 0; i < calls; i++) {
        snprintf(path, sizeof(path), "/m.Any/M%d", i);
        unary(reg, path, "x");
    }
    size_t n = entries_now();
    CHECK(n > before_flood);
    CHECK(n - before_flood <= PGF_METRICS_MAX_UNREGISTERED);
    CHECK(entry("").started >=
          overflow + (uint64_t)(calls - PGF_METRICS_MAX_UNREGISTERED));
    /* Issue 24 (7): a method registered by name, first called after the
     * flood, in the flooded service itself, is counted under its name. */
    CHECK_INT(pgf_registry_register_method(reg, "m.Any", 5, "Real", 4,
                                           unary_handler, NULL, NULL),
              PGF_OK);
    overflow = entry("").started;
    for (int i = 0; i < 5; i++)
        unary(reg, "/m.Any/Real", "x");
    pgf_method_stats real = entry("/m.Any/Real");
    CHECK_INT(real.started, 5);
    CHECK_INT(real.handled[PGF_STATUS_OK], 5);
    CHECK_INT(real.kind, PGF_KIND_UNARY);
    CHECK_INT(entry("").started, overflow);
    /* Registered methods may take every other slot; then the table is full
     * and even they count as overflow. */
    int registered = 0;
    while (entries_now() < PGF_METRICS_MAX_METHODS + 1) {
        snprintf(path, sizeof(path), "R%d", registered);
        CHECK_INT(pgf_registry_register_method(reg, "m.Many", 6, path,
                                               strlen(path), unary_handler,
                                               NULL, NULL), PGF_OK);
        snprintf(path, sizeof(path), "/m.Many/R%d", registered);
        unary(reg, path, "x");
        CHECK_INT(entry(path).started, 1);
        registered++;
    }
    CHECK(registered >=
          PGF_METRICS_MAX_METHODS - PGF_METRICS_MAX_UNREGISTERED -
              (int)before_flood);
    CHECK_INT(pgf_registry_register_method(reg, "m.Many", 6, "Last", 4,
                                           unary_handler, NULL, NULL),
              PGF_OK);
    overflow = entry("").started;
    unary(reg, "/m.Many/Last", "x");
    CHECK_INT(entries_now(), PGF_METRICS_MAX_METHODS + 1); /* + overflow */
    CHECK_INT(entry("").started, overflow + 1);
    CHECK_STR(stats[0].path, ""); /* the overflow entry comes first */
    /* Over-long paths go to the overflow entry too. */
    char long_path[PGF_METRICS_PATH_MAX + 16];
    memset(long_path, 'a', sizeof(long_path));
    memcpy(long_path, "/m.Any/", 7);
    long_path[sizeof(long_path) - 1] = '\0';
    uint64_t before = entry("").started;
    unary(reg, long_path, "x");
    CHECK_INT(entry("").started, before + 1);
}

static void test_arguments(const char *file) {
    size_t n = 0;
    CHECK_INT(pgf_metrics_snapshot(stats, 1, 0, &n), PGF_EINVAL);
    CHECK_INT(pgf_metrics_snapshot(stats, 1, sizeof(stats[0]) + 1, &n),
              PGF_EINVAL);
    CHECK_INT(pgf_metrics_snapshot(stats, 1, sizeof(stats[0]), NULL),
              PGF_EINVAL);
    CHECK_INT(pgf_metrics_snapshot(NULL, 1, sizeof(stats[0]), &n), PGF_EINVAL);
    /* An older, smaller struct gets its prefix, packed at its own stride. */
    size_t small = offsetof(pgf_method_stats, started) + sizeof(uint64_t);
    unsigned char packed[4 * sizeof(pgf_method_stats)];
    CHECK_INT(pgf_metrics_snapshot((pgf_method_stats *)(void *)packed, 3,
                                   small, &n), PGF_OK);
    CHECK(n >= 3);
    CHECK_INT(pgf_metrics_snapshot(stats, 3, sizeof(stats[0]), &n), PGF_OK);
    for (size_t i = 0; i < 3; i++)
        CHECK_MEM(packed + i * small, small, &stats[i], small);
    CHECK_INT(pgf_metrics_snapshot_file(NULL, stats, 1, sizeof(stats[0]), &n),
              PGF_EINVAL);
    CHECK_INT(pgf_metrics_snapshot_file("/nonexistent/pgf", stats, 1,
                                        sizeof(stats[0]), &n), PGF_ENOTFOUND);
    CHECK_INT(pgf_metrics_snapshot_file("/dev/null", stats, 1,
                                        sizeof(stats[0]), &n), PGF_EINVAL);
    /* The shared file holds exactly what this process counted. */
    size_t here = 0, there = 0;
    CHECK_INT(pgf_metrics_snapshot(stats, MAX_STATS, sizeof(stats[0]), &here),
              PGF_OK);
    CHECK_INT(pgf_metrics_snapshot_file(file, file_stats, MAX_STATS,
                                        sizeof(file_stats[0]), &there),
              PGF_OK);
    CHECK_INT(there, here);
    CHECK_MEM(file_stats, there * sizeof(stats[0]), stats,
              here * sizeof(stats[0]));
}

/* ---------------------------------------------------------- host gauges */

static pgf_pool_stats pools[PGF_METRICS_MAX_POOLS + 1];

/* The gauges of a role in a fresh snapshot; pool -1 if it is not listed. */
static pgf_pool_stats pool_entry(int role) {
    size_t n = 0;
    CHECK_INT(pgf_metrics_pool_snapshot(pools, PGF_METRICS_MAX_POOLS + 1,
                                        sizeof(pools[0]), &n), PGF_OK);
    CHECK(n <= PGF_METRICS_MAX_POOLS);
    for (size_t i = 0; i < n; i++)
        if (pools[i].pool == role)
            return pools[i];
    pgf_pool_stats none;
    memset(&none, 0, sizeof(none));
    none.pool = -1;
    return none;
}

static size_t pool_count(void) {
    size_t n = 99;
    CHECK_INT(pgf_metrics_pool_snapshot(NULL, 0, sizeof(pools[0]), &n),
              PGF_OK);
    return n;
}

static void test_gauges_published_roles_only(void) {
    /* Calls were counted, but no host published a gauge yet. */
    CHECK_INT(pool_count(), 0);
    CHECK_INT(pool_entry(PGF_POOL_HANDLERS).pool, -1);

    CHECK_INT(pgf_metrics_gauge_set(PGF_POOL_HANDLERS, PGF_GAUGE_MAX_THREADS,
                                    8), PGF_OK);
    CHECK_INT(pgf_metrics_gauge_add(PGF_POOL_HANDLERS, PGF_GAUGE_THREADS, 2),
              PGF_OK);
    CHECK_INT(pgf_metrics_gauge_add(PGF_POOL_HANDLERS, PGF_GAUGE_QUEUED, 5),
              PGF_OK);
    CHECK_INT(pgf_metrics_gauge_add(PGF_POOL_HANDLERS, PGF_GAUGE_QUEUED, -2),
              PGF_OK);
    CHECK_INT(pgf_metrics_gauge_add(PGF_POOL_HANDLERS, PGF_GAUGE_BUSY, 2),
              PGF_OK);
    CHECK_INT(pool_count(), 1);
    pgf_pool_stats h = pool_entry(PGF_POOL_HANDLERS);
    CHECK_INT(h.pool, PGF_POOL_HANDLERS);
    CHECK_INT(h.queued, 3);
    CHECK_INT(h.threads, 2);
    CHECK_INT(h.busy, 2);
    CHECK_INT(h.max_threads, 8);

    /* A second pool of the same role adds its own numbers. */
    CHECK_INT(pgf_metrics_gauge_add(PGF_POOL_HANDLERS, PGF_GAUGE_THREADS, 1),
              PGF_OK);
    CHECK_INT(pgf_metrics_gauge_add(PGF_POOL_HANDLERS, PGF_GAUGE_MAX_THREADS,
                                    4), PGF_OK);
    h = pool_entry(PGF_POOL_HANDLERS);
    CHECK_INT(h.threads, 3);
    CHECK_INT(h.max_threads, 12);

    /* Roles are listed in PGF_POOL_* order, whatever the order published. */
    CHECK_INT(pgf_metrics_gauge_add(PGF_POOL_SERVICE, PGF_GAUGE_THREADS, 1),
              PGF_OK);
    CHECK_INT(pgf_metrics_gauge_add(PGF_POOL_STREAMS, PGF_GAUGE_THREADS, 2),
              PGF_OK);
    size_t n = 0;
    CHECK_INT(pgf_metrics_pool_snapshot(pools, PGF_METRICS_MAX_POOLS,
                                        sizeof(pools[0]), &n), PGF_OK);
    CHECK_INT(n, 3);
    CHECK_INT(pools[0].pool, PGF_POOL_HANDLERS);
    CHECK_INT(pools[1].pool, PGF_POOL_STREAMS);
    CHECK_INT(pools[1].threads, 2);
    CHECK_INT(pools[1].queued, 0);
    CHECK_INT(pools[2].pool, PGF_POOL_SERVICE);
    CHECK_INT(pools[2].threads, 1);
    /* cap 1: one entry copied, *n still says 3; the next slot untouched. */
    memset(pools, 0x5a, sizeof(pools));
    CHECK_INT(pgf_metrics_pool_snapshot(pools, 1, sizeof(pools[0]), &n),
              PGF_OK);
    CHECK_INT(n, 3);
    CHECK_INT(pools[0].pool, PGF_POOL_HANDLERS);
    CHECK_INT(pools[1].pool, 0x5a5a5a5a);

    /* Unknown roles and gauges: PGF_EINVAL, nothing changes or appears. */
    const int bad_pools[] = {-1, 3, PGF_METRICS_MAX_POOLS - 1,
                             PGF_METRICS_MAX_POOLS, 1 << 30};
    for (size_t i = 0; i < sizeof(bad_pools) / sizeof(bad_pools[0]); i++) {
        CHECK_INT(pgf_metrics_gauge_add(bad_pools[i], PGF_GAUGE_QUEUED, 1),
                  PGF_EINVAL);
        CHECK_INT(pgf_metrics_gauge_set(bad_pools[i], PGF_GAUGE_QUEUED, 1),
                  PGF_EINVAL);
    }
    const int bad_gauges[] = {-1, PGF_GAUGE_MAX_THREADS + 1, 7, 8, 1 << 30};
    for (size_t i = 0; i < sizeof(bad_gauges) / sizeof(bad_gauges[0]); i++) {
        CHECK_INT(pgf_metrics_gauge_add(PGF_POOL_HANDLERS, bad_gauges[i], 1),
                  PGF_EINVAL);
        CHECK_INT(pgf_metrics_gauge_set(PGF_POOL_HANDLERS, bad_gauges[i], 1),
                  PGF_EINVAL);
    }
    CHECK_INT(pool_count(), 3);
    h = pool_entry(PGF_POOL_HANDLERS);
    CHECK_INT(h.queued, 3);
    CHECK_INT(h.threads, 3);
    CHECK_INT(h.busy, 2);
    CHECK_INT(h.max_threads, 12);

    /* Gauges are kept with counting off: a skipped -1 would be wrong for
     * good once counting is back on. */
    pgf_metrics_set_enabled(0);
    CHECK_INT(pgf_metrics_gauge_add(PGF_POOL_HANDLERS, PGF_GAUGE_BUSY, -2),
              PGF_OK);
    CHECK_INT(pool_entry(PGF_POOL_HANDLERS).busy, 0);
    pgf_metrics_set_enabled(1);

    /* Set overrides whatever was added; the extremes are kept exactly. */
    CHECK_INT(pgf_metrics_gauge_set(PGF_POOL_HANDLERS, PGF_GAUGE_QUEUED,
                                    INT64_MAX), PGF_OK);
    CHECK(pool_entry(PGF_POOL_HANDLERS).queued == INT64_MAX);
    CHECK_INT(pgf_metrics_gauge_set(PGF_POOL_HANDLERS, PGF_GAUGE_QUEUED, 0),
              PGF_OK);
    CHECK_INT(pool_entry(PGF_POOL_HANDLERS).queued, 0);
}

/* A pool's life in miniature, on several threads at once: each task is
 * queued (+1), taken by a thread (queued -1, busy +1) and finished (busy
 * -1).  Without a lock between the threads, no update may be lost. */
#define GAUGE_THREADS 8
#define GAUGE_TASKS 20000

static int gauge_go;

static void *gauge_worker(void *arg) {
    (void)arg;
    while (!__atomic_load_n(&gauge_go, __ATOMIC_ACQUIRE))
        ;
    CHECK_INT(pgf_metrics_gauge_add(PGF_POOL_STREAMS, PGF_GAUGE_THREADS, 1),
              PGF_OK);
    for (int i = 0; i < GAUGE_TASKS; i++) {
        pgf_metrics_gauge_add(PGF_POOL_STREAMS, PGF_GAUGE_QUEUED, 1);
        pgf_metrics_gauge_add(PGF_POOL_STREAMS, PGF_GAUGE_QUEUED, -1);
        pgf_metrics_gauge_add(PGF_POOL_STREAMS, PGF_GAUGE_BUSY, 1);
        pgf_metrics_gauge_add(PGF_POOL_STREAMS, PGF_GAUGE_BUSY, -1);
        pgf_metrics_gauge_add(PGF_POOL_SERVICE, PGF_GAUGE_QUEUED, 1);
    }
    return NULL;
}

static void test_gauges_exact_under_concurrency(void) {
    pgf_pool_stats before = pool_entry(PGF_POOL_STREAMS);
    int64_t service_queued = pool_entry(PGF_POOL_SERVICE).queued;
    pthread_t threads[GAUGE_THREADS];
    for (int i = 0; i < GAUGE_THREADS; i++)
        CHECK_INT(pthread_create(&threads[i], NULL, gauge_worker, NULL), 0);
    __atomic_store_n(&gauge_go, 1, __ATOMIC_RELEASE);
    /* Read while they run: each gauge stays within what is possible. */
    for (int i = 0; i < 2000; i++) {
        pgf_pool_stats s = pool_entry(PGF_POOL_STREAMS);
        CHECK(s.queued >= before.queued &&
              s.queued <= before.queued + GAUGE_THREADS);
        CHECK(s.busy >= before.busy && s.busy <= before.busy + GAUGE_THREADS);
    }
    for (int i = 0; i < GAUGE_THREADS; i++)
        CHECK_INT(pthread_join(threads[i], NULL), 0);
    pgf_pool_stats after = pool_entry(PGF_POOL_STREAMS);
    CHECK_INT(after.queued, before.queued);
    CHECK_INT(after.busy, before.busy);
    CHECK_INT(after.threads, before.threads + GAUGE_THREADS);
    CHECK_INT(pool_entry(PGF_POOL_SERVICE).queued,
              service_queued + (int64_t)GAUGE_THREADS * GAUGE_TASKS);
}

static void test_gauges_arguments_and_file(const char *file) {
    size_t n = 0;
    CHECK_INT(pgf_metrics_pool_snapshot(pools, 1, 0, &n), PGF_EINVAL);
    CHECK_INT(pgf_metrics_pool_snapshot(pools, 1, sizeof(pools[0]) + 1, &n),
              PGF_EINVAL);
    CHECK_INT(pgf_metrics_pool_snapshot(pools, 1, sizeof(pools[0]), NULL),
              PGF_EINVAL);
    CHECK_INT(pgf_metrics_pool_snapshot(NULL, 1, sizeof(pools[0]), &n),
              PGF_EINVAL);
    /* An older, smaller struct gets its prefix, packed at its own stride. */
    size_t small = offsetof(pgf_pool_stats, threads) + sizeof(int64_t);
    unsigned char packed[PGF_METRICS_MAX_POOLS * sizeof(pgf_pool_stats)];
    CHECK_INT(pgf_metrics_pool_snapshot((pgf_pool_stats *)(void *)packed, 3,
                                        small, &n), PGF_OK);
    CHECK_INT(n, 3);
    CHECK_INT(pgf_metrics_pool_snapshot(pools, 3, sizeof(pools[0]), &n),
              PGF_OK);
    for (size_t i = 0; i < 3; i++)
        CHECK_MEM(packed + i * small, small, &pools[i], small);

    CHECK_INT(pgf_metrics_pool_snapshot_file(NULL, pools, 1, sizeof(pools[0]),
                                             &n), PGF_EINVAL);
    CHECK_INT(pgf_metrics_pool_snapshot_file(file, pools, 1, sizeof(pools[0]),
                                             NULL), PGF_EINVAL);
    CHECK_INT(pgf_metrics_pool_snapshot_file(file, pools, 1, 0, &n),
              PGF_EINVAL);
    CHECK_INT(pgf_metrics_pool_snapshot_file("/nonexistent/pgf", pools, 1,
                                             sizeof(pools[0]), &n),
              PGF_ENOTFOUND);
    CHECK_INT(pgf_metrics_pool_snapshot_file("/dev/null", pools, 1,
                                             sizeof(pools[0]), &n),
              PGF_EINVAL);
    /* The shared file holds exactly this process's gauges. */
    pgf_pool_stats here[PGF_METRICS_MAX_POOLS], there[PGF_METRICS_MAX_POOLS];
    size_t n_here = 0, n_there = 0;
    memset(here, 0, sizeof(here));
    memset(there, 0, sizeof(there));
    CHECK_INT(pgf_metrics_gauge_add(PGF_POOL_HANDLERS, PGF_GAUGE_QUEUED, 7),
              PGF_OK);
    CHECK_INT(pgf_metrics_pool_snapshot(here, PGF_METRICS_MAX_POOLS,
                                        sizeof(here[0]), &n_here), PGF_OK);
    CHECK_INT(pgf_metrics_pool_snapshot_file(file, there,
                                             PGF_METRICS_MAX_POOLS,
                                             sizeof(there[0]), &n_there),
              PGF_OK);
    CHECK_INT(n_there, 3);
    CHECK_INT(n_there, n_here);
    CHECK_MEM(there, sizeof(there), here, sizeof(here));
    CHECK_INT(there[0].queued, 7);
    CHECK_INT(pgf_metrics_gauge_add(PGF_POOL_HANDLERS, PGF_GAUGE_QUEUED, -7),
              PGF_OK);
}

/* A file in the first layout (before the gauges: magic "PGFMETR1",
 * version 1, a smaller table) is refused with PGF_EVERSION, never read as
 * this one; a file still being created is PGF_EINVAL. */
static void write_file(const char *path, uint64_t magic, uint32_t version,
                       size_t size) {
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    CHECK_INT(ftruncate(fd, (off_t)size), 0);
    unsigned char header[12];
    memcpy(header, &magic, 8);
    memcpy(header + 8, &version, 4);
    CHECK_INT(pwrite(fd, header, sizeof(header), 0), sizeof(header));
    CHECK_INT(close(fd), 0);
}

static void test_other_layouts_refused(const char *file) {
    const uint64_t magic = 0x5047464d45545231ull; /* "PGFMETR1" */
    char old[80];
    snprintf(old, sizeof(old), "%s.old", file);
    size_t n = 12345;
    /* Layout 1: a 24-byte header and 1025 method entries of 480 bytes. */
    size_t v1_size = 24 + 1025 * 480;
    write_file(old, magic, 1, v1_size);
    CHECK_INT(pgf_metrics_snapshot_file(old, stats, MAX_STATS,
                                        sizeof(stats[0]), &n), PGF_EVERSION);
    CHECK_INT(pgf_metrics_pool_snapshot_file(old, pools, 1, sizeof(pools[0]),
                                             &n), PGF_EVERSION);
    CHECK_INT(n, 12345); /* nothing written */
    /* A later layout, as large as any: refused too. */
    write_file(old, magic, 3, 4u << 20);
    CHECK_INT(pgf_metrics_pool_snapshot_file(old, pools, 1, sizeof(pools[0]),
                                             &n), PGF_EVERSION);
    /* Not a table at all, or not one yet (created, magic not written). */
    write_file(old, 0x1234, 2, 4u << 20);
    CHECK_INT(pgf_metrics_pool_snapshot_file(old, pools, 1, sizeof(pools[0]),
                                             &n), PGF_EINVAL);
    write_file(old, 0, 0, 0);
    CHECK_INT(pgf_metrics_snapshot_file(old, stats, 1, sizeof(stats[0]), &n),
              PGF_EINVAL);
    /* This layout's header on a file cut short: not (yet) a table. */
    write_file(old, magic, 2, 4096);
    CHECK_INT(pgf_metrics_snapshot_file(old, stats, 1, sizeof(stats[0]), &n),
              PGF_EINVAL);
    CHECK_INT(n, 12345);
    CHECK_INT(unlink(old), 0);
    CHECK(strcmp(pgf_strerror(PGF_EVERSION), "unknown error") != 0);
}

int main(void) {
    char file[64];
    snprintf(file, sizeof(file), "/tmp/pgf-metrics-test-%d", (int)getpid());
    setenv("PGF_METRICS_FILE", file, 1); /* read at the first count */
    pgf_registry *reg = pgf_registry_new();
    CHECK(reg != NULL);
    CHECK_INT(pgf_registry_register_method(reg, "m.Svc", 5, "Get", 3,
                                           unary_handler, NULL, NULL), PGF_OK);
    test_unary_counts(reg);
    test_gauges_published_roles_only();
    test_unknown_methods_overflow(reg);
    test_stream_messages(reg);
    test_refused_and_switch(reg);
    test_bounded(reg);
    test_arguments(file);
    test_gauges_exact_under_concurrency();
    test_gauges_arguments_and_file(file);
    test_other_layouts_refused(file);
    pgf_registry_free(reg);
    unlink(file);
    printf("test_metrics: %ld checks passed\n", check_count);
    return 0;
}
