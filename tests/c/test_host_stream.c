/* What a host may rely on when it serves a stream (no Python): host_data
 * given to pgf_call_set_stream may be freed once the done callback ran,
 * because pgf_call_finish waits for a stream_fn call in progress on another
 * thread; and a stream_fn that completes an operation inline, whose
 * callback finishes the call and drops the handler's last reference, neither
 * deadlocks nor touches freed memory; and pgf_dispatch_nonblocking runs
 * only handlers registered with PGF_FLAG_NONBLOCKING (or none) on the
 * caller's thread.
 *
 * Build: make -C tests/c test (or test-asan). */
#include "pygrpc_ffi.h"
#include "check.h"

#include <pthread.h>
#include <stdint.h>
#include <time.h>

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static pgf_call *new_call(const char *path) {
    pgf_call *c = pgf_call_new(path, strlen(path));
    if (c == NULL)
        CHECK_FAIL_("pgf_call_new(\"%s\") returned NULL", path);
    return c;
}

/* ------------------------------------ finish waits for a stream_fn elsewhere */

typedef struct slow_host {
    int in_fn;      /* set when the stream_fn started */
    int fn_done;    /* set just before the stream_fn returns */
    int done_saw;   /* fn_done as the done callback saw it, -1: not run */
} slow_host;

static void slow_events(pgf_call *call, int event, void *data) {
    (void)call;
    slow_host *h = data;
    if (event != PGF_EVENT_WRITE)
        return;
    __atomic_store_n(&h->in_fn, 1, __ATOMIC_SEQ_CST);
    sleep_ms(150); /* the finish on the other thread must wait for this */
    __atomic_store_n(&h->fn_done, 1, __ATOMIC_SEQ_CST);
}

static void slow_done(pgf_call *call, void *data) {
    (void)call;
    slow_host *h = data;
    h->done_saw = __atomic_load_n(&h->fn_done, __ATOMIC_SEQ_CST);
}

static void ignore_write(pgf_call *call, int result, void *ud) {
    (void)call, (void)result, (void)ud;
}

static void *writer_thread(void *arg) {
    pgf_call *c = arg;
    static const uint8_t bytes[] = "w";
    CHECK_INT(pgf_call_write(c, bytes, 1, NULL, NULL, ignore_write, NULL),
              PGF_OK);
    return NULL;
}

static void keep_handler(void *data, pgf_call *call) {
    (void)data, (void)call; /* finished later, by the test */
}

static void test_finish_waits_for_stream_fn_on_another_thread(void) {
    pgf_registry *reg = pgf_registry_new();
    CHECK_INT(pgf_registry_register(reg, "s.S", 3, NULL, 0,
                                    PGF_KIND_BIDI_STREAMING, keep_handler,
                                    NULL, NULL),
              PGF_OK);
    slow_host h = {0, 0, -1};
    pgf_call *c = new_call("/s.S/M");
    CHECK_INT(pgf_call_set_stream(c, slow_events, &h), PGF_OK);
    CHECK_INT(pgf_dispatch_async(reg, c, slow_done, &h), PGF_OK);
    pthread_t t;
    CHECK_INT(pthread_create(&t, NULL, writer_thread, c), 0);
    while (!__atomic_load_n(&h.in_fn, __ATOMIC_SEQ_CST))
        sleep_ms(1);
    CHECK_INT(pgf_call_finish(c, PGF_STATUS_OK, NULL, 0), PGF_OK);
    CHECK_INT(h.done_saw, 1); /* done ran only after the stream_fn returned */
    CHECK_INT(pthread_join(t, NULL), 0);
    /* The write was taken by nobody: freed with the call, callback once. */
    pgf_call_unref(c);
    pgf_registry_free(reg);
}

/* -------------------- a stream_fn that completes the write on its own thread */

typedef struct inline_handler {
    int finished;
} inline_handler;

static void finish_on_write(pgf_call *call, int result, void *ud) {
    inline_handler *ih = ud;
    CHECK_INT(result, PGF_OK);
    CHECK_INT(pgf_call_finish(call, PGF_STATUS_OK, NULL, 0), PGF_OK);
    ih->finished = 1;
    pgf_call_unref(call); /* the handler's own reference, its last use */
}

static void inline_events(pgf_call *call, int event, void *data) {
    (void)data;
    if (event != PGF_EVENT_WRITE)
        return;
    const uint8_t *bytes;
    size_t len;
    pgf_release_fn release;
    void *ctx;
    CHECK_INT(pgf_call_take_write(call, &bytes, &len, &release, &ctx, NULL),
              PGF_OK);
    CHECK_INT(len, 2);
    CHECK(release == NULL); /* borrowed */
    CHECK_INT(pgf_call_write_done(call, 1), PGF_OK);
}

static void writing_handler(void *data, pgf_call *call) {
    static const uint8_t bytes[] = "hi";
    pgf_call_ref(call);
    CHECK_INT(pgf_call_write(call, bytes, 2, NULL, NULL, finish_on_write,
                             data),
              PGF_OK);
}

static void test_stream_fn_completing_inline_may_end_the_call(void) {
    int64_t calls = pgf_live_count(PGF_LIVE_CALLS);
    inline_handler ih = {0};
    pgf_registry *reg = pgf_registry_new();
    CHECK_INT(pgf_registry_register(reg, "s.S", 3, NULL, 0,
                                    PGF_KIND_SERVER_STREAMING,
                                    writing_handler, &ih, NULL),
              PGF_OK);
    pgf_call *c = new_call("/s.S/M");
    CHECK_INT(pgf_call_set_stream(c, inline_events, NULL), PGF_OK);
    CHECK_INT(pgf_dispatch_async(reg, c, NULL, NULL), PGF_OK);
    pgf_call_unref(c); /* the host's: the handler's is the last one now */
    CHECK_INT(ih.finished, 1);
    CHECK_INT(pgf_live_count(PGF_LIVE_CALLS), calls);
    pgf_registry_free(reg);
}

/* ----------------------------------------- nonblocking handlers, inline */

static int ran;

static void finishing_handler(void *data, pgf_call *call) {
    (void)data;
    ran++;
    pgf_call_finish(call, PGF_STATUS_OK, NULL, 0);
}

static void test_dispatch_nonblocking_runs_only_nonblocking_handlers(void) {
    int64_t calls = pgf_live_count(PGF_LIVE_CALLS);
    int64_t handlers = pgf_live_count(PGF_LIVE_HANDLERS);
    pgf_registry *reg = pgf_registry_new();
    CHECK_INT(pgf_registry_register(reg, "c.Fast", 6, NULL, 0,
                                    PGF_KIND_BIDI_STREAMING |
                                        PGF_FLAG_NONBLOCKING,
                                    finishing_handler, NULL, NULL),
              PGF_OK);
    CHECK_INT(pgf_registry_register(reg, "c.Slow", 6, NULL, 0,
                                    PGF_KIND_BIDI_STREAMING, finishing_handler,
                                    NULL, NULL),
              PGF_OK);
    CHECK_INT(pgf_registry_register(reg, "c.Bad", 5, NULL, 0, 0x200,
                                    finishing_handler, NULL, NULL),
              PGF_EINVAL);
    /* The kind is reported without the flag. */
    CHECK_INT(pgf_registry_method_kind(reg, "c.Fast", 6, "M", 1),
              PGF_KIND_BIDI_STREAMING);
    ran = 0;

    /* A blocking handler is refused, and the call is left as it was. */
    pgf_call *slow = new_call("/c.Slow/M");
    CHECK_INT(pgf_dispatch_nonblocking(reg, slow, NULL, NULL),
              PGF_EWOULDBLOCK);
    CHECK_INT(ran, 0);
    CHECK_INT(pgf_call_is_finished(slow), 0);
    CHECK(strcmp(pgf_strerror(PGF_EWOULDBLOCK), "unknown error") != 0);
    CHECK_INT(pgf_dispatch_async(reg, slow, NULL, NULL), PGF_OK);
    CHECK_INT(ran, 1);
    CHECK_INT(pgf_call_nonblocking(slow), 0);
    pgf_call_unref(slow);

    /* A nonblocking one runs here, and the call says so. */
    pgf_call *fast = new_call("/c.Fast/M");
    CHECK_INT(pgf_call_nonblocking(fast), 0);
    CHECK_INT(pgf_dispatch_nonblocking(reg, fast, NULL, NULL), PGF_OK);
    CHECK_INT(ran, 2);
    CHECK_INT(pgf_call_nonblocking(fast), 1);
    CHECK_INT(pgf_dispatch_nonblocking(reg, fast, NULL, NULL), PGF_ESTATE);
    pgf_call_unref(fast);

    /* No handler: UNIMPLEMENTED at once. */
    pgf_call *none = new_call("/c.None/M");
    CHECK_INT(pgf_dispatch_nonblocking(reg, none, NULL, NULL), PGF_OK);
    CHECK_INT(pgf_call_is_finished(none), 1);
    CHECK_INT(pgf_call_status(none), PGF_STATUS_UNIMPLEMENTED);
    CHECK_INT(pgf_call_nonblocking(none), 0);
    pgf_call_unref(none);

    CHECK_INT(pgf_dispatch_nonblocking(NULL, NULL, NULL, NULL), PGF_EINVAL);
    CHECK_INT(pgf_call_nonblocking(NULL), 0);
    pgf_registry_free(reg);
    CHECK_INT(pgf_live_count(PGF_LIVE_CALLS), calls);
    CHECK_INT(pgf_live_count(PGF_LIVE_HANDLERS), handlers);
}

int main(void) {
    test_finish_waits_for_stream_fn_on_another_thread();
    test_stream_fn_completing_inline_may_end_the_call();
    test_dispatch_nonblocking_runs_only_nonblocking_handlers();
    printf("test_host_stream: %ld checks passed\n", check_count);
    return 0;
}
