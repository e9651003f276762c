/* Unit tests of the shim's call metrics (no Python): started / handled by
 * code / messages in and out / in flight / duration histogram per method,
 * unknown methods and methods beyond the bound in the overflow entry, the
 * on/off switch, refused calls, older (smaller) stats structs, and the
 * shared file a supervisor reads (PGF_METRICS_FILE).
 *
 * Build: make -C csrc test (or test-asan). */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include "pygrpc_ffi.h"
#include "check.h"

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

static void test_bounded(pgf_registry *reg) {
    /* A service-level registration takes any method name: the table stops
     * at PGF_METRICS_MAX_METHODS entries, the rest count as overflow. */
    CHECK_INT(pgf_registry_register_service(reg, "m.Any", 5, unary_handler,
                                            NULL, NULL), PGF_OK);
    uint64_t overflow = entry("").started;
    char path[64];
    int calls = PGF_METRICS_MAX_METHODS + 40;
    for (int i = 0; i < calls; i++) {
        snprintf(path, sizeof(path), "/m.Any/M%d", i);
        unary(reg, path, "x");
    }
    size_t n = 0;
    CHECK_INT(pgf_metrics_snapshot(NULL, 0, sizeof(stats[0]), &n), PGF_OK);
    CHECK_INT(n, PGF_METRICS_MAX_METHODS + 1); /* + the overflow entry */
    uint64_t counted = 0;
    CHECK_INT(pgf_metrics_snapshot(stats, MAX_STATS, sizeof(stats[0]), &n),
              PGF_OK);
    for (size_t i = 0; i < n; i++)
        counted += stats[i].started;
    CHECK(entry("").started > overflow);
    CHECK_STR(stats[0].path, ""); /* the overflow entry comes first */
    /* Over-long paths go to the overflow entry too. */
    char long_path[PGF_METRICS_PATH_MAX + 16];
    memset(long_path, 'a', sizeof(long_path));
    memcpy(long_path, "/m.Any/", 7);
    long_path[sizeof(long_path) - 1] = '\0';
    uint64_t before = entry("").started;
    unary(reg, long_path, "x");
    CHECK_INT(entry("").started, before + 1);
    (void)counted;
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

int main(void) {
    char file[64];
    snprintf(file, sizeof(file), "/tmp/pgf-metrics-test-%d", (int)getpid());
    setenv("PGF_METRICS_FILE", file, 1); /* read at the first count */
    pgf_registry *reg = pgf_registry_new();
    CHECK(reg != NULL);
    CHECK_INT(pgf_registry_register_method(reg, "m.Svc", 5, "Get", 3,
                                           unary_handler, NULL, NULL), PGF_OK);
    test_unary_counts(reg);
    test_unknown_methods_overflow(reg);
    test_stream_messages(reg);
    test_refused_and_switch(reg);
    test_bounded(reg);
    test_arguments(file);
    pgf_registry_free(reg);
    unlink(file);
    printf("test_metrics: %ld checks passed\n", check_count);
    return 0;
}
