/* Unit tests of streams on a call (no Python): pulled reads, back-pressured
 * writes, half-close, initial metadata, cancellation and finish while reads
 * or writes are outstanding, refcounted request messages, method kinds, and
 * the blocking forms across threads.  A small fake host records the events
 * a call reports.  Every PGF_LIVE_* counter returns to its start value.
 *
 * Build: make -C tests/c test (or test-asan). */
#include "pygrpc_ffi.h"
#include "check.h"

#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <time.h>

#define NKINDS 6

static void live_snapshot(int64_t out[NKINDS]) {
    for (int k = 0; k < NKINDS; k++)
        out[k] = pgf_live_count(k);
}

static void check_live_(const int64_t base[NKINDS], const char *file,
                        int line) {
    for (int k = 0; k < NKINDS; k++) {
        if (pgf_live_count(k) != base[k]) {
            fprintf(stderr, "%s:%d: CHECK failed: live kind %d: %lld != %lld\n",
                    file, line, k, (long long)pgf_live_count(k),
                    (long long)base[k]);
            _Exit(1);
        }
        CHECK_PASS_();
    }
}
#define CHECK_LIVE(base) check_live_((base), __FILE__, __LINE__)

static pgf_call *new_call(const char *path) {
    pgf_call *c = pgf_call_new(path, strlen(path));
    if (c == NULL)
        CHECK_FAIL_("pgf_call_new(\"%s\") returned NULL", path);
    return c;
}

/* ------------------------------------------------------------ fake host */

typedef struct host {
    int reads, writes, initial;   /* events seen */
} host;

static void host_events(pgf_call *call, int event, void *data) {
    (void)call;
    host *h = data;
    if (event == PGF_EVENT_READ)
        h->reads++;
    else if (event == PGF_EVENT_WRITE)
        h->writes++;
    else if (event == PGF_EVENT_INITIAL_METADATA)
        h->initial++;
    else
        CHECK_FAIL_("unknown event %d", event);
}

/* A read or write callback's outcome. */
typedef struct outcome {
    int calls;
    int result;
    pgf_message *msg;
} outcome;

static void on_read(pgf_call *call, int result, pgf_message *msg, void *ud) {
    (void)call;
    outcome *o = ud;
    o->calls++;
    o->result = result;
    o->msg = msg;
}

static void on_write(pgf_call *call, int result, void *ud) {
    (void)call;
    outcome *o = ud;
    o->calls++;
    o->result = result;
}

static int released;
static void count_release(void *ctx) {
    (void)ctx;
    __atomic_fetch_add(&released, 1, __ATOMIC_RELAXED);
}

static pgf_message *message(const char *s) {
    pgf_message *m = pgf_message_new((const uint8_t *)s, strlen(s),
                                     count_release, NULL);
    CHECK(m != NULL);
    return m;
}

static void check_message(pgf_message *m, const char *want) {
    size_t len = 0;
    const uint8_t *data = pgf_message_data(m, &len);
    CHECK_MEM(data, len, want, strlen(want));
}

/* ---------------------------------------------------------------- tests */

static void test_messages(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    released = 0;
    pgf_message *m = message("abc");
    CHECK_INT(pgf_live_count(PGF_LIVE_MESSAGES), base[PGF_LIVE_MESSAGES] + 1);
    CHECK(pgf_message_ref(m) == m);
    pgf_message_unref(m);
    CHECK_INT(released, 0);
    check_message(m, "abc");
    pgf_message_unref(m);
    CHECK_INT(released, 1);
    /* Bad arguments: release still runs once, nothing is created. */
    CHECK(pgf_message_new(NULL, 3, count_release, NULL) == NULL);
    CHECK_INT(released, 2);
    size_t len = 7;
    CHECK(pgf_message_data(NULL, &len) == NULL);
    CHECK_INT(len, 0);
    pgf_message_unref(NULL);
    CHECK(pgf_message_ref(NULL) == NULL);
    pgf_message *empty = pgf_message_new(NULL, 0, NULL, NULL);
    CHECK(empty != NULL);
    pgf_message_unref(empty);
    CHECK_LIVE(base);
}

static void test_request_message_outlives_call(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    released = 0;
    pgf_call *c = new_call("/s.S/M");
    CHECK_INT(pgf_call_set_request_message(c, message("payload")), PGF_OK);
    const uint8_t *data;
    size_t len;
    pgf_call_request(c, &data, &len);
    CHECK_MEM(data, len, "payload", 7);
    pgf_call_request(c, NULL, NULL); /* NULL outputs are skipped */
    pgf_message *kept = pgf_call_request_message(c);
    CHECK(kept != NULL);
    CHECK_INT(pgf_call_finish(c, PGF_STATUS_OK, NULL, 0), PGF_OK);
    pgf_call_unref(c);
    CHECK_INT(released, 0); /* a reader still holds the bytes */
    check_message(kept, "payload");
    pgf_message_unref(kept);
    CHECK_INT(released, 1);

    /* Lent bytes are not handed out as messages. */
    c = new_call("/s.S/M");
    CHECK_INT(pgf_call_set_request(c, (const uint8_t *)"x", 1), PGF_OK);
    CHECK(pgf_call_request_message(c) == NULL);
    /* Replacing lent bytes with a message, then the message with lent
     * bytes, releases the message once. */
    CHECK_INT(pgf_call_set_request_message(c, message("y")), PGF_OK);
    CHECK_INT(pgf_call_set_request(c, (const uint8_t *)"z", 1), PGF_OK);
    CHECK_INT(released, 2);
    CHECK_INT(pgf_call_set_request_message(c, NULL), PGF_EINVAL);
    CHECK_INT(pgf_call_set_request_message(NULL, message("q")), PGF_EINVAL);
    CHECK_INT(released, 3);
    pgf_call_unref(c);
    CHECK_LIVE(base);
}

static void test_unary_reads(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    pgf_call *c = new_call("/s.S/M");
    CHECK_INT(pgf_call_set_request(c, (const uint8_t *)"one", 3), PGF_OK);
    outcome o = {0, 0, NULL};
    CHECK_INT(pgf_call_read(c, on_read, &o), PGF_OK);
    CHECK_INT(o.calls, 1);
    CHECK_INT(o.result, PGF_OK);
    check_message(o.msg, "one");
    pgf_message_unref(o.msg);
    o.calls = 0;
    CHECK_INT(pgf_call_read(c, on_read, &o), PGF_OK);
    CHECK_INT(o.calls, 1);
    CHECK_INT(o.result, PGF_EOF);
    CHECK(o.msg == NULL);
    pgf_message *m = (pgf_message *)1;
    CHECK_INT(pgf_call_read_wait(c, &m), PGF_EOF);
    CHECK(m == NULL);
    /* No stream: writes are refused, and their bytes released. */
    released = 0;
    CHECK_INT(pgf_call_write(c, (const uint8_t *)"r", 1, count_release, NULL,
                             on_write, &o),
              PGF_ESTATE);
    CHECK_INT(released, 1);
    CHECK_INT(pgf_call_read(c, NULL, NULL), PGF_EINVAL);
    CHECK_INT(pgf_call_read_wait(c, NULL), PGF_EINVAL);
    CHECK_INT(pgf_call_finish(c, PGF_STATUS_OK, NULL, 0), PGF_OK);
    CHECK_INT(pgf_call_read(c, on_read, &o), PGF_ECANCELLED);
    pgf_call_unref(c);
    CHECK_LIVE(base);
}

static void test_stream_reads(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    released = 0;
    host h = {0, 0, 0};
    pgf_call *c = new_call("/s.S/M");
    CHECK_INT(pgf_call_set_stream(c, host_events, &h), PGF_OK);
    CHECK_INT(pgf_call_set_stream(c, NULL, &h), PGF_EINVAL);
    /* A push nobody asked for is refused and released. */
    CHECK_INT(pgf_call_push_request(c, message("early")), PGF_ESTATE);
    CHECK_INT(released, 1);

    outcome o = {0, 0, NULL};
    for (int i = 0; i < 3; i++) {
        o.calls = 0;
        CHECK_INT(pgf_call_read(c, on_read, &o), PGF_OK);
        CHECK_INT(h.reads, i + 1); /* pulled: one read asked per message */
        CHECK_INT(o.calls, 0);
        /* One read at a time. */
        outcome other = {0, 0, NULL};
        CHECK_INT(pgf_call_read(c, on_read, &other), PGF_ESTATE);
        CHECK_INT(h.reads, i + 1);
        CHECK_INT(pgf_call_push_request(c, message("m")), PGF_OK);
        CHECK_INT(o.calls, 1);
        CHECK_INT(o.result, PGF_OK);
        check_message(o.msg, "m");
        pgf_message_unref(o.msg);
    }
    o.calls = 0;
    CHECK_INT(pgf_call_read(c, on_read, &o), PGF_OK);
    CHECK_INT(pgf_call_push_request(c, NULL), PGF_OK); /* half-close */
    CHECK_INT(o.calls, 1);
    CHECK_INT(o.result, PGF_EOF);
    /* After the end, reads end at once without asking the host. */
    o.calls = 0;
    CHECK_INT(pgf_call_read(c, on_read, &o), PGF_OK);
    CHECK_INT(o.result, PGF_EOF);
    CHECK_INT(h.reads, 4);
    CHECK_INT(pgf_call_finish(c, PGF_STATUS_OK, NULL, 0), PGF_OK);
    CHECK_INT(pgf_call_set_stream(c, host_events, &h), PGF_OK); /* not dispatched */
    pgf_call_unref(c);
    CHECK_INT(released, 4);
    CHECK_LIVE(base);
}

static void test_stream_writes(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    released = 0;
    host h = {0, 0, 0};
    pgf_call *c = new_call("/s.S/M");
    CHECK_INT(pgf_call_set_stream(c, host_events, &h), PGF_OK);
    const uint8_t *data;
    size_t len;
    pgf_release_fn release;
    void *ctx;
    unsigned flags = 9;
    CHECK_INT(pgf_call_take_write(c, &data, &len, &release, &ctx, &flags),
              PGF_ENOTFOUND);
    CHECK_INT(pgf_call_write_done(c, 1), PGF_ESTATE);
    CHECK_INT(pgf_call_add_initial_metadata(c, "k", 1, (const uint8_t *)"v", 1),
              PGF_OK);
    CHECK_INT(pgf_call_initial_metadata_ready(c), 0);

    outcome o = {0, 0, NULL};
    CHECK_INT(pgf_call_write(c, (const uint8_t *)"w1", 2, count_release, NULL,
                             on_write, &o),
              PGF_OK);
    CHECK_INT(h.writes, 1);
    /* Initial metadata goes with the first message and is frozen. */
    CHECK_INT(pgf_call_initial_metadata_ready(c), 1);
    CHECK_INT(pgf_call_add_initial_metadata(c, "k2", 2, (const uint8_t *)"v", 1),
              PGF_ESTATE);
    CHECK_INT(pgf_metadata_count(pgf_call_initial_metadata(c)), 1);
    CHECK_INT(pgf_call_reset_response(c), PGF_OK); /* keeps sent metadata */
    CHECK_INT(pgf_metadata_count(pgf_call_initial_metadata(c)), 1);
    /* Back-pressure: one write outstanding. */
    outcome o2 = {0, 0, NULL};
    CHECK_INT(pgf_call_write(c, (const uint8_t *)"w2", 2, count_release, NULL,
                             on_write, &o2),
              PGF_ESTATE);
    CHECK_INT(released, 1);
    CHECK_INT(pgf_call_take_write(c, &data, &len, &release, &ctx, &flags),
              PGF_OK);
    CHECK_MEM(data, len, "w1", 2);
    CHECK(release != NULL);
    pgf_release_fn taken_release = release;
    void *taken_ctx = ctx;
    CHECK_INT(flags, 0);
    CHECK_INT(pgf_live_count(PGF_LIVE_BUFFERS), base[PGF_LIVE_BUFFERS] + 1);
    CHECK_INT(pgf_call_take_write(c, &data, &len, &release, &ctx, NULL),
              PGF_ENOTFOUND);
    CHECK_INT(o.calls, 0);
    CHECK_INT(pgf_call_write_done(c, 1), PGF_OK);
    CHECK_INT(o.calls, 1);
    CHECK_INT(o.result, PGF_OK);
    /* The host owns the bytes it took until it releases them. */
    CHECK_INT(released, 1);
    taken_release(taken_ctx);
    CHECK_INT(released, 2);

    /* Borrowed bytes: no release for the host; valid until write_done. */
    o.calls = 0;
    static const uint8_t fixed[] = "static";
    CHECK_INT(pgf_call_write(c, fixed, 6, NULL, NULL, on_write, &o), PGF_OK);
    CHECK_INT(pgf_call_take_write(c, &data, &len, &release, &ctx, NULL),
              PGF_OK);
    CHECK(data == fixed);
    CHECK(release == NULL);
    CHECK_INT(pgf_call_write_done(c, 0), PGF_OK); /* could not be sent */
    CHECK_INT(o.result, PGF_ECANCELLED);
    CHECK_INT(pgf_call_finish(c, PGF_STATUS_OK, NULL, 0), PGF_OK);
    CHECK_INT(pgf_call_write(c, fixed, 6, NULL, NULL, on_write, &o),
              PGF_ESTATE);
    pgf_call_unref(c);
    CHECK_INT(h.initial, 0);
    CHECK_LIVE(base);
}

static void test_stream_write_release(void) {
    /* The host releases what it took, exactly once. */
    int64_t base[NKINDS];
    live_snapshot(base);
    released = 0;
    host h = {0, 0, 0};
    pgf_call *c = new_call("/s.S/M");
    CHECK_INT(pgf_call_set_stream(c, host_events, &h), PGF_OK);
    outcome o = {0, 0, NULL};
    CHECK_INT(pgf_call_write(c, (const uint8_t *)"a", 1, count_release, NULL,
                             on_write, &o),
              PGF_OK);
    const uint8_t *data;
    size_t len;
    pgf_release_fn release;
    void *ctx;
    CHECK_INT(pgf_call_take_write(c, &data, &len, &release, &ctx, NULL),
              PGF_OK);
    CHECK_INT(pgf_call_write_done(c, 1), PGF_OK);
    CHECK_INT(released, 0);
    release(ctx);
    CHECK_INT(released, 1);
    CHECK_INT(pgf_call_finish(c, PGF_STATUS_OK, NULL, 0), PGF_OK);
    pgf_call_unref(c);
    CHECK_LIVE(base);
}

static void test_cancel_completes_outstanding(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    released = 0;
    host h = {0, 0, 0};
    pgf_call *c = new_call("/s.S/M");
    CHECK_INT(pgf_call_set_stream(c, host_events, &h), PGF_OK);
    outcome r = {0, 0, NULL}, w = {0, 0, NULL};
    CHECK_INT(pgf_call_read(c, on_read, &r), PGF_OK);
    CHECK_INT(pgf_call_write(c, (const uint8_t *)"q", 1, count_release, NULL,
                             on_write, &w),
              PGF_OK);
    pgf_call_cancel(c);
    CHECK_INT(r.calls, 1);
    CHECK_INT(r.result, PGF_ECANCELLED);
    CHECK_INT(w.calls, 1);
    CHECK_INT(w.result, PGF_ECANCELLED);
    CHECK_INT(released, 1); /* the queued message was never taken */
    /* Late host operations are refused and lose nothing. */
    CHECK_INT(pgf_call_push_request(c, message("late")), PGF_ESTATE);
    CHECK_INT(released, 2);
    const uint8_t *data;
    size_t len;
    pgf_release_fn release;
    void *ctx;
    CHECK_INT(pgf_call_take_write(c, &data, &len, &release, &ctx, NULL),
              PGF_ENOTFOUND);
    CHECK_INT(pgf_call_read(c, on_read, &r), PGF_ECANCELLED);
    CHECK_INT(pgf_call_write(c, (const uint8_t *)"q", 1, count_release, NULL,
                             on_write, &w),
              PGF_ECANCELLED);
    CHECK_INT(released, 3);
    CHECK_INT(r.calls, 1);
    CHECK_INT(w.calls, 1);
    CHECK_INT(pgf_call_finish(c, PGF_STATUS_CANCELLED, NULL, 0), PGF_OK);
    pgf_call_unref(c);
    CHECK_LIVE(base);
}

static void test_cancel_leaves_taken_write_to_host(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    host h = {0, 0, 0};
    pgf_call *c = new_call("/s.S/M");
    CHECK_INT(pgf_call_set_stream(c, host_events, &h), PGF_OK);
    outcome w = {0, 0, NULL};
    static const uint8_t fixed[] = "b";
    CHECK_INT(pgf_call_write(c, fixed, 1, NULL, NULL, on_write, &w), PGF_OK);
    const uint8_t *data;
    size_t len;
    pgf_release_fn release;
    void *ctx;
    CHECK_INT(pgf_call_take_write(c, &data, &len, &release, &ctx, NULL),
              PGF_OK);
    pgf_call_cancel(c);
    /* Borrowed bytes are still in the host's hands: not completed yet. */
    CHECK_INT(w.calls, 0);
    CHECK_INT(pgf_call_write_done(c, 0), PGF_OK);
    CHECK_INT(w.calls, 1);
    CHECK_INT(w.result, PGF_ECANCELLED);
    CHECK_INT(pgf_call_finish(c, PGF_STATUS_CANCELLED, NULL, 0), PGF_OK);
    pgf_call_unref(c);
    CHECK_LIVE(base);
}

static void test_finish_with_outstanding(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    released = 0;
    host h = {0, 0, 0};
    pgf_call *c = new_call("/s.S/M");
    CHECK_INT(pgf_call_set_stream(c, host_events, &h), PGF_OK);
    outcome r = {0, 0, NULL}, w = {0, 0, NULL};
    CHECK_INT(pgf_call_read(c, on_read, &r), PGF_OK);
    CHECK_INT(pgf_call_write(c, (const uint8_t *)"last", 4, count_release,
                             NULL, on_write, &w),
              PGF_OK);
    CHECK_INT(pgf_call_finish(c, PGF_STATUS_OK, NULL, 0), PGF_OK);
    /* The read ends inside finish; the write is still sent. */
    CHECK_INT(r.calls, 1);
    CHECK_INT(r.result, PGF_ECANCELLED);
    CHECK_INT(w.calls, 0);
    CHECK_INT(pgf_call_initial_metadata_ready(c), 1);
    const uint8_t *data;
    size_t len;
    pgf_release_fn release;
    void *ctx;
    CHECK_INT(pgf_call_take_write(c, &data, &len, &release, &ctx, NULL),
              PGF_OK);
    CHECK_MEM(data, len, "last", 4);
    CHECK_INT(pgf_call_write_done(c, 1), PGF_OK);
    CHECK_INT(w.calls, 1);
    CHECK_INT(w.result, PGF_OK);
    release(ctx);
    CHECK_INT(released, 1);
    CHECK_INT(pgf_call_push_request(c, message("after")), PGF_ESTATE);
    CHECK_INT(pgf_call_finish(c, PGF_STATUS_OK, NULL, 0), PGF_ESTATE);
    pgf_call_unref(c);
    CHECK_LIVE(base);
}

static void test_unref_drops_outstanding_write(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    released = 0;
    host h = {0, 0, 0};
    pgf_call *c = new_call("/s.S/M");
    CHECK_INT(pgf_call_set_stream(c, host_events, &h), PGF_OK);
    outcome w = {0, 0, NULL};
    CHECK_INT(pgf_call_write(c, (const uint8_t *)"x", 1, count_release, NULL,
                             on_write, &w),
              PGF_OK);
    CHECK_INT(pgf_call_finish(c, PGF_STATUS_OK, NULL, 0), PGF_OK);
    pgf_call_unref(c); /* the host never took it */
    CHECK_INT(w.calls, 1);
    CHECK_INT(w.result, PGF_ECANCELLED);
    CHECK_INT(released, 1);
    CHECK_LIVE(base);
}

static void test_initial_metadata_event(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    host h = {0, 0, 0};
    pgf_call *c = new_call("/s.S/M");
    CHECK_INT(pgf_call_set_stream(c, host_events, &h), PGF_OK);
    CHECK_INT(pgf_call_add_initial_metadata(c, "a", 1, (const uint8_t *)"1", 1),
              PGF_OK);
    CHECK_INT(pgf_call_send_initial_metadata(c), PGF_OK);
    CHECK_INT(h.initial, 1);
    CHECK_INT(pgf_call_send_initial_metadata(c), PGF_OK); /* once */
    CHECK_INT(h.initial, 1);
    CHECK_INT(pgf_call_add_initial_metadata(c, "b", 1, (const uint8_t *)"2", 1),
              PGF_ESTATE);
    CHECK_INT(pgf_call_add_trailing_metadata(c, "b", 1, (const uint8_t *)"2", 1),
              PGF_OK);
    CHECK_INT(pgf_call_send_initial_metadata(NULL), PGF_EINVAL);
    CHECK_INT(pgf_call_finish(c, PGF_STATUS_OK, NULL, 0), PGF_OK);
    pgf_call_unref(c);
    /* Without a stream, the request only marks it (sent with the status). */
    c = new_call("/s.S/M");
    CHECK_INT(pgf_call_send_initial_metadata(c), PGF_OK);
    CHECK_INT(pgf_call_initial_metadata_ready(c), 1);
    CHECK_INT(pgf_call_finish(c, PGF_STATUS_OK, NULL, 0), PGF_OK);
    pgf_call_unref(c);
    CHECK_LIVE(base);
}

static void noop_handler(void *data, pgf_call *call) {
    (void)data, (void)call;
}

static void test_kinds(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    pgf_registry *reg = pgf_registry_new();
    CHECK(reg != NULL);
    CHECK_INT(pgf_registry_method_kind(reg, "s.S", 3, "M", 1), PGF_ENOTFOUND);
    CHECK_INT(pgf_registry_register(reg, "s.S", 3, NULL, 0,
                                    PGF_KIND_BIDI_STREAMING,
                                    (pgf_handler_fn)NULL, NULL, NULL),
              PGF_EINVAL);
    released = 0;
    CHECK_INT(pgf_registry_register(reg, "s.S", 3, NULL, 0, 7,
                                    noop_handler, NULL,
                                    count_release),
              PGF_EINVAL);
    CHECK_INT(released, 1);
    CHECK_INT(pgf_registry_register(reg, "s.S", 3, NULL, 0,
                                    PGF_KIND_BIDI_STREAMING,
                                    noop_handler, NULL, NULL),
              PGF_OK);
    CHECK_INT(pgf_registry_register(reg, "s.S", 3, "U", 1, PGF_KIND_UNARY,
                                    noop_handler, NULL, NULL),
              PGF_OK);
    CHECK_INT(pgf_registry_register(reg, "s.S", 3, "C", 1,
                                    PGF_KIND_CLIENT_STREAMING,
                                    noop_handler, NULL, NULL),
              PGF_OK);
    CHECK_INT(pgf_registry_register_method(reg, "s.S", 3, "L", 1,
                                           noop_handler, NULL,
                                           NULL),
              PGF_OK);
    CHECK_INT(pgf_registry_method_kind(reg, "s.S", 3, "Any", 3),
              PGF_KIND_BIDI_STREAMING);
    CHECK_INT(pgf_registry_method_kind(reg, "s.S", 3, "U", 1), PGF_KIND_UNARY);
    CHECK_INT(pgf_registry_method_kind(reg, "s.S", 3, "C", 1),
              PGF_KIND_CLIENT_STREAMING);
    CHECK_INT(pgf_registry_method_kind(reg, "s.S", 3, "L", 1), PGF_KIND_UNARY);
    CHECK_INT(pgf_registry_method_kind(reg, "t.T", 3, "U", 1), PGF_ENOTFOUND);
    CHECK_INT(pgf_registry_method_kind(NULL, "s.S", 3, "U", 1), PGF_ENOTFOUND);
    CHECK_INT(pgf_registry_method_kind(reg, "s.S", 3, NULL, 5), PGF_ENOTFOUND);
    CHECK_INT(pgf_registry_register(reg, "s.S", (size_t)-1, NULL, 0,
                                    PGF_KIND_UNARY, noop_handler,
                                    NULL, NULL),
              PGF_EINVAL);
    pgf_registry_free(reg);
    CHECK_LIVE(base);
}

/* ----------------------------------------------- blocking, two threads */

typedef struct peer_host {
    pgf_call *call;
    int messages;           /* to push before the end */
    int pushed;
    int written;
    char last[16];
    size_t last_len;
    int nonblocking;        /* complete with the _nonblocking forms */
} peer_host;

/* Completions the _nonblocking forms refused (none should be). */
static int nonblocking_refused;

/* The host side runs on its own thread: it serves each event as a real
 * host would, later and elsewhere (here: a thread per event). */
typedef struct event_job {
    peer_host *ph;
    int event;
} event_job;

static void *serve_event(void *p) {
    event_job *j = p;
    peer_host *ph = j->ph;
    struct timespec ts = {0, 200000};
    nanosleep(&ts, NULL);
    if (j->event == PGF_EVENT_READ) {
        pgf_message *m = NULL;
        if (ph->pushed < ph->messages) {
            ph->pushed++;
            m = message("ping");
        }
        /* The handler waits in pgf_call_read_wait: an event thread may
         * complete its read. */
        if (!ph->nonblocking) {
            pgf_call_push_request(ph->call, m);
        } else if (pgf_call_push_request_nonblocking(ph->call, m) != PGF_OK) {
            /* Counted before the read completes: the test reads it after. */
            __atomic_fetch_add(&nonblocking_refused, 1, __ATOMIC_RELAXED);
            pgf_call_push_request(ph->call, m);
        }
    } else if (j->event == PGF_EVENT_WRITE) {
        const uint8_t *data;
        size_t len;
        pgf_release_fn release;
        void *ctx;
        CHECK_INT(pgf_call_take_write(ph->call, &data, &len, &release, &ctx,
                                      NULL),
                  PGF_OK);
        ph->last_len = len < sizeof(ph->last) ? len : sizeof(ph->last);
        memcpy(ph->last, data, ph->last_len);
        ph->written++;
        if (release)
            release(ctx);
        if (!ph->nonblocking) {
            pgf_call_write_done(ph->call, 1);
        } else if (pgf_call_write_done_nonblocking(ph->call, 1) != PGF_OK) {
            __atomic_fetch_add(&nonblocking_refused, 1, __ATOMIC_RELAXED);
            pgf_call_write_done(ph->call, 1);
        }
    }
    free(j);
    return NULL;
}

static void threaded_events(pgf_call *call, int event, void *data) {
    (void)call;
    event_job *j = malloc(sizeof(*j));
    CHECK(j != NULL);
    j->ph = data;
    j->event = event;
    pthread_t t;
    CHECK_INT(pthread_create(&t, NULL, serve_event, j), 0);
    pthread_detach(t);
}

static void blocking_bidi_across_threads(int nonblocking) {
    int64_t base[NKINDS];
    live_snapshot(base);
    released = 0;
    pgf_call *c = new_call("/s.S/M");
    peer_host ph = {c, 50, 0, 0, {0}, 0, nonblocking};
    CHECK_INT(pgf_call_set_stream(c, threaded_events, &ph), PGF_OK);
    int got = 0;
    for (;;) {
        pgf_message *m = NULL;
        int rc = pgf_call_read_wait(c, &m);
        if (rc == PGF_EOF)
            break;
        CHECK_INT(rc, PGF_OK);
        size_t len;
        const uint8_t *data = pgf_message_data(m, &len);
        /* Echo without a copy: the write releases the message. */
        CHECK_INT(pgf_call_write_wait(c, data, len,
                                      (pgf_release_fn)pgf_message_unref, m),
                  PGF_OK);
        got++;
    }
    CHECK_INT(got, 50);
    CHECK_INT(ph.written, 50);
    CHECK_MEM(ph.last, ph.last_len, "ping", 4);
    CHECK_INT(pgf_call_finish(c, PGF_STATUS_OK, NULL, 0), PGF_OK);
    pgf_call_unref(c);
    CHECK_INT(released, 50);
    CHECK_INT(__atomic_load_n(&nonblocking_refused, __ATOMIC_RELAXED), 0);
    CHECK_LIVE(base);
}

static void test_blocking_bidi_across_threads(void) {
    blocking_bidi_across_threads(0);
}

/* The same, the host completing every read and write with the _nonblocking
 * forms, which a blocking reader and writer accept. */
static void test_blocking_bidi_nonblocking_host(void) {
    blocking_bidi_across_threads(1);
}

/* The _nonblocking forms refuse a callback that may block (any but the
 * blocking forms' own, unless the handler is PGF_FLAG_NONBLOCKING) and
 * change nothing then; otherwise they are the plain forms. */
static void test_nonblocking_completions(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    released = 0;
    host h = {0, 0, 0};
    pgf_call *c = new_call("/s.S/M");
    CHECK_INT(pgf_call_set_stream(c, host_events, &h), PGF_OK);

    /* No read asked: as pgf_call_push_request, the message is released. */
    CHECK_INT(pgf_call_push_request_nonblocking(c, message("early")),
              PGF_ESTATE);
    CHECK_INT(released, 1);
    /* A callback read: refused, the message stays the caller's. */
    outcome r = {0, 0, NULL};
    CHECK_INT(pgf_call_read(c, on_read, &r), PGF_OK);
    pgf_message *m = message("one");
    CHECK_INT(pgf_call_push_request_nonblocking(c, m), PGF_EWOULDBLOCK);
    CHECK_INT(r.calls, 0);
    CHECK_INT(released, 1);
    CHECK_INT(pgf_call_push_request(c, m), PGF_OK);
    CHECK_INT(r.calls, 1);
    CHECK_INT(r.result, PGF_OK);
    check_message(r.msg, "one");
    pgf_message_unref(r.msg);

    /* No write taken: PGF_ESTATE, as pgf_call_write_done. */
    CHECK_INT(pgf_call_write_done_nonblocking(c, 1), PGF_ESTATE);
    outcome w = {0, 0, NULL};
    CHECK_INT(pgf_call_write(c, (const uint8_t *)"ab", 2, NULL, NULL,
                             on_write, &w),
              PGF_OK);
    const uint8_t *data;
    size_t len;
    pgf_release_fn release;
    void *ctx;
    CHECK_INT(pgf_call_take_write(c, &data, &len, &release, &ctx, NULL),
              PGF_OK);
    CHECK_INT(pgf_call_write_done_nonblocking(c, 1), PGF_EWOULDBLOCK);
    CHECK_INT(w.calls, 0);
    CHECK_INT(pgf_call_write_done(c, 1), PGF_OK);
    CHECK_INT(w.calls, 1);
    CHECK_INT(w.result, PGF_OK);

    /* Arguments. */
    CHECK_INT(pgf_call_push_request_nonblocking(NULL, message("x")),
              PGF_EINVAL);
    CHECK_INT(released, 3);
    CHECK_INT(pgf_call_push_request_nonblocking(NULL, NULL), PGF_EINVAL);
    CHECK_INT(pgf_call_write_done_nonblocking(NULL, 1), PGF_EINVAL);

    /* Cancelled: nothing outstanding, PGF_ESTATE. */
    pgf_call_cancel(c);
    CHECK_INT(pgf_call_push_request_nonblocking(c, NULL), PGF_ESTATE);
    CHECK_INT(pgf_call_finish(c, PGF_STATUS_CANCELLED, NULL, 0), PGF_OK);
    pgf_call_unref(c);
    CHECK_LIVE(base);
}

static void *cancel_later(void *p) {
    struct timespec ts = {0, 5000000};
    nanosleep(&ts, NULL);
    pgf_call_cancel(p);
    return NULL;
}

static void ignore_events(pgf_call *call, int event, void *data) {
    (void)call, (void)event, (void)data;
}

static void test_cancel_unblocks_waiters(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    pgf_call *c = new_call("/s.S/M");
    CHECK_INT(pgf_call_set_stream(c, ignore_events, NULL), PGF_OK);
    pthread_t t;
    CHECK_INT(pthread_create(&t, NULL, cancel_later, c), 0);
    pgf_message *m = NULL;
    CHECK_INT(pgf_call_read_wait(c, &m), PGF_ECANCELLED); /* never hangs */
    CHECK(m == NULL);
    pthread_join(t, NULL);
    CHECK_INT(pgf_call_write_wait(c, (const uint8_t *)"x", 1, NULL, NULL),
              PGF_ECANCELLED);
    pgf_call_unref(c);

    c = new_call("/s.S/M");
    CHECK_INT(pgf_call_set_stream(c, ignore_events, NULL), PGF_OK);
    CHECK_INT(pthread_create(&t, NULL, cancel_later, c), 0);
    /* A write the host never takes ends with the cancellation too. */
    CHECK_INT(pgf_call_write_wait(c, (const uint8_t *)"x", 1, NULL, NULL),
              PGF_ECANCELLED);
    pthread_join(t, NULL);
    pgf_call_unref(c);
    CHECK_LIVE(base);
}

/* A length no object can have: refused as the header says, the release run
 * once, nothing created or queued. */
static void test_huge_lengths_refused(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    static const uint8_t bytes[4] = "abc";
    const size_t huge = (size_t)PTRDIFF_MAX + 1;
    int before = released;
    CHECK(pgf_message_new(bytes, huge, count_release, NULL) == NULL);
    CHECK(pgf_message_new(bytes, SIZE_MAX, NULL, NULL) == NULL);
    pgf_call *c = new_call("/s.S/M");
    host h = {0, 0, 0};
    CHECK_INT(pgf_call_set_stream(c, host_events, &h), PGF_OK);
    outcome o = {0, 0, NULL};
    CHECK_INT(pgf_call_write(c, bytes, huge, count_release, NULL, on_write, &o),
              PGF_EINVAL);
    CHECK_INT(pgf_call_write_wait(c, bytes, huge, count_release, NULL),
              PGF_EINVAL);
    CHECK_INT(pgf_call_write_wait(NULL, bytes, 1, count_release, NULL),
              PGF_EINVAL);
    CHECK_INT(released - before, 4);
    CHECK_INT(o.calls, 0);
    CHECK_INT(h.writes, 0);
    pgf_call_unref(c);
    CHECK_LIVE(base);
}

typedef struct lone_reader {
    pgf_call *call;
    int waiting;
    int result;
} lone_reader;

static void *read_alone(void *p) {
    lone_reader *r = p;
    pgf_message *m = NULL;
    r->result = pgf_call_read_wait(r->call, &m);
    CHECK(m == NULL);
    return NULL;
}

/* The reader's read reached the host: its wait holds its reference now
 * (before, the caller's reference was the only one, and dropping it raced
 * with the reader taking its own). */
static void note_read(pgf_call *call, int event, void *data) {
    (void)call;
    if (event == PGF_EVENT_READ)
        __atomic_store_n(&((lone_reader *)data)->waiting, 1, __ATOMIC_RELEASE);
}

/* A thread waiting in pgf_call_read_wait whose caller's reference goes while
 * it waits (a handler that returned while a thread still reads): the wait
 * holds its own, ends PGF_ECANCELLED, and the call is freed after it. */
static void test_waiter_outlives_other_references(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    for (int i = 0; i < 50; i++) {
        pgf_call *c = new_call("/s.S/M");
        lone_reader r = {c, 0, 0};
        CHECK_INT(pgf_call_set_stream(c, note_read, &r), PGF_OK);
        pthread_t t;
        CHECK_INT(pthread_create(&t, NULL, read_alone, &r), 0);
        while (!__atomic_load_n(&r.waiting, __ATOMIC_ACQUIRE))
            sched_yield();
        if (i % 2) {
            struct timespec ts = {0, 200000};
            nanosleep(&ts, NULL);
        }
        CHECK_INT(pgf_call_finish(c, PGF_STATUS_OK, NULL, 0), PGF_OK);
        pgf_call_unref(c); /* the only reference but the waiter's */
        pthread_join(t, NULL);
        CHECK(r.result == PGF_ECANCELLED || r.result == PGF_ESTATE);
    }
    CHECK_LIVE(base);
}

/* A C streaming handler through the registry: counts the messages of a
 * client stream and answers the count as its one response. */
static void count_handler(void *data, pgf_call *call) {
    (void)data;
    int n = 0;
    pgf_message *m;
    while (pgf_call_read_wait(call, &m) == PGF_OK) {
        pgf_message_unref(m);
        n++;
    }
    static char answer[16];
    int len = snprintf(answer, sizeof(answer), "%d", n);
    pgf_call_set_response(call, (const uint8_t *)answer, (size_t)len, NULL,
                          NULL);
    pgf_call_finish(call, PGF_STATUS_OK, NULL, 0);
}

static void test_c_streaming_handler(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    pgf_registry *reg = pgf_registry_new();
    CHECK_INT(pgf_registry_register(reg, "s.S", 3, "Count", 5,
                                    PGF_KIND_CLIENT_STREAMING, count_handler,
                                    NULL, NULL),
              PGF_OK);
    pgf_call *c = new_call("/s.S/Count");
    peer_host ph = {c, 7, 0, 0, {0}, 0, 0};
    CHECK_INT(pgf_call_set_stream(c, threaded_events, &ph), PGF_OK);
    CHECK_INT(pgf_dispatch(reg, c), PGF_OK);
    CHECK_INT(pgf_call_status(c), PGF_STATUS_OK);
    const uint8_t *data;
    size_t len;
    pgf_call_response(c, &data, &len);
    CHECK_MEM(data, len, "7", 1);
    pgf_call_unref(c);
    pgf_registry_free(reg);
    CHECK_LIVE(base);
}

/* A handler that finishes its call from the read callback that a cancel
 * completes: its cancellation callback must not run after that finish (it
 * may have freed what the callback uses).  Found by tests/fuzz/fuzz_call. */
typedef struct finish_in_read {
    int reads, cancels;
} finish_in_read;

static void read_then_finish(pgf_call *call, int result, pgf_message *msg,
                             void *ud) {
    finish_in_read *f = ud;
    f->reads++;
    CHECK_INT(result, PGF_ECANCELLED);
    CHECK(msg == NULL);
    CHECK_INT(pgf_call_finish(call, PGF_STATUS_CANCELLED, NULL, 0), PGF_OK);
}

static void cancel_seen(pgf_call *call, void *ud) {
    finish_in_read *f = ud;
    f->cancels++;
    (void)call;
}

static void test_cancel_cb_not_after_finish(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    for (int with_write = 0; with_write < 2; with_write++) {
        host h = {0, 0, 0};
        pgf_call *c = new_call("/s.S/M");
        CHECK_INT(pgf_call_set_stream(c, host_events, &h), PGF_OK);
        finish_in_read f = {0, 0};
        outcome w = {0, 0, NULL};
        CHECK_INT(pgf_call_on_cancel(c, cancel_seen, &f), PGF_OK);
        CHECK_INT(pgf_call_read(c, read_then_finish, &f), PGF_OK);
        if (with_write)
            CHECK_INT(pgf_call_write(c, (const uint8_t *)"q", 1, NULL, NULL,
                                     on_write, &w),
                      PGF_OK);
        pgf_call_cancel(c);
        CHECK_INT(f.reads, 1);
        CHECK(pgf_call_is_finished(c));
        CHECK_INT(f.cancels, 0); /* never after the finish */
        CHECK_INT(w.calls, with_write);
        pgf_call_unref(c);
    }
    CHECK_LIVE(base);
}

/* A host that ends every read and write inside the handler's call (a
 * message it had received, a small one it copies). */
static void answer_at_once(pgf_call *call, int event, void *data) {
    (void)data;
    if (event == PGF_EVENT_READ) {
        pgf_call_push_request(call, message("ready"));
    } else if (event == PGF_EVENT_WRITE) {
        const uint8_t *bytes;
        size_t len;
        pgf_release_fn release;
        void *ctx;
        CHECK_INT(pgf_call_take_write(call, &bytes, &len, &release, &ctx, NULL), PGF_OK);
        if (release)
            release(ctx);
        CHECK_INT(pgf_call_write_done(call, 1), PGF_OK);
    }
}

/* What the hooks saw, and the thread they ran on. */
typedef struct hook_log {
    int before, after;
    int waiting;  /* between before and after */
    pthread_t thread;
} hook_log;

static void hook_before(void *arg) {
    hook_log *log = arg;
    CHECK(pthread_equal(log->thread, pthread_self()));
    CHECK_INT(__atomic_load_n(&log->waiting, __ATOMIC_ACQUIRE), 0);
    log->before++;
    __atomic_store_n(&log->waiting, 1, __ATOMIC_RELEASE);
}

static void hook_after(void *arg) {
    hook_log *log = arg;
    CHECK(pthread_equal(log->thread, pthread_self()));
    CHECK_INT(__atomic_load_n(&log->waiting, __ATOMIC_ACQUIRE), 1);
    log->after++;
    __atomic_store_n(&log->waiting, 0, __ATOMIC_RELEASE);
}

typedef struct cancel_job {
    pgf_call *call;
    hook_log *log;
} cancel_job;

/* Cancels the call once the caller is in its wait (its before hook ran). */
static void *cancel_when_waiting(void *p) {
    cancel_job *job = p;
    struct timespec ts = {0, 1000000};
    while (!__atomic_load_n(&job->log->waiting, __ATOMIC_ACQUIRE))
        nanosleep(&ts, NULL);
    pgf_call_cancel(job->call);
    return NULL;
}

/* The hooks run around a wait, on the waiting thread, once each, and not
 * at all when the host ends the read or write at once. */
static void test_wait_hooks(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    hook_log log = {0, 0, 0, pthread_self()};
    pgf_wait_hooks hooks = {hook_before, hook_after, &log};

    pgf_call *c = new_call("/s.S/M");
    CHECK_INT(pgf_call_set_stream(c, answer_at_once, NULL), PGF_OK);
    pgf_message *m = NULL;
    CHECK_INT(pgf_call_read_wait_hooked(c, &m, &hooks), PGF_OK);
    check_message(m, "ready");
    pgf_message_unref(m);
    CHECK_INT(pgf_call_write_wait_hooked(c, (const uint8_t *)"x", 1, NULL, NULL, &hooks),
              PGF_OK);
    CHECK_INT(log.before, 0);
    CHECK_INT(log.after, 0);
    pgf_call_unref(c);

    /* A host that answers from another thread: the caller waits. */
    c = new_call("/s.S/M");
    CHECK_INT(pgf_call_set_stream(c, ignore_events, NULL), PGF_OK);
    pthread_t t;
    cancel_job job = {c, &log};
    CHECK_INT(pthread_create(&t, NULL, cancel_when_waiting, &job), 0);
    m = NULL;
    CHECK_INT(pgf_call_read_wait_hooked(c, &m, &hooks), PGF_ECANCELLED);
    pthread_join(t, NULL);
    CHECK(m == NULL);
    CHECK_INT(log.before, 1);
    CHECK_INT(log.after, 1);
    pgf_call_unref(c);

    c = new_call("/s.S/M");
    CHECK_INT(pgf_call_set_stream(c, ignore_events, NULL), PGF_OK);
    job.call = c;
    CHECK_INT(pthread_create(&t, NULL, cancel_when_waiting, &job), 0);
    CHECK_INT(pgf_call_write_wait_hooked(c, (const uint8_t *)"x", 1, count_release, NULL,
                                         &hooks),
              PGF_ECANCELLED);
    pthread_join(t, NULL);
    CHECK_INT(log.before, 2);
    CHECK_INT(log.after, 2);
    /* Without hooks (NULL): as pgf_call_write_wait; on a cancelled call the
     * release runs and nothing waits. */
    int before_release = __atomic_load_n(&released, __ATOMIC_RELAXED);
    CHECK_INT(pgf_call_write_wait_hooked(c, (const uint8_t *)"x", 1, count_release, NULL,
                                         NULL),
              PGF_ECANCELLED);
    CHECK_INT(__atomic_load_n(&released, __ATOMIC_RELAXED), before_release + 1);
    pgf_call_unref(c);
    CHECK_LIVE(base);
}

int main(void) {
    int passed = 0;
    printf("test_stream: ABI %d, version %u\n", pgf_abi_version(),
           pgf_version_number());
    RUN_TEST(test_messages, passed);
    RUN_TEST(test_request_message_outlives_call, passed);
    RUN_TEST(test_unary_reads, passed);
    RUN_TEST(test_stream_reads, passed);
    RUN_TEST(test_stream_writes, passed);
    RUN_TEST(test_stream_write_release, passed);
    RUN_TEST(test_cancel_completes_outstanding, passed);
    RUN_TEST(test_cancel_leaves_taken_write_to_host, passed);
    RUN_TEST(test_finish_with_outstanding, passed);
    RUN_TEST(test_unref_drops_outstanding_write, passed);
    RUN_TEST(test_initial_metadata_event, passed);
    RUN_TEST(test_kinds, passed);
    RUN_TEST(test_blocking_bidi_across_threads, passed);
    RUN_TEST(test_blocking_bidi_nonblocking_host, passed);
    RUN_TEST(test_nonblocking_completions, passed);
    RUN_TEST(test_cancel_unblocks_waiters, passed);
    RUN_TEST(test_huge_lengths_refused, passed);
    RUN_TEST(test_waiter_outlives_other_references, passed);
    RUN_TEST(test_c_streaming_handler, passed);
    RUN_TEST(test_cancel_cb_not_after_finish, passed);
    RUN_TEST(test_wait_hooks, passed);
    printf("test_stream: %d passed (%ld checks)\n", passed, check_count);
    return 0;
}
