/* A plain C host running Python handlers through the pygrpc_ffi C ABI.
 *
 * It includes only pygrpc_ffi.h and links only libpygrpc_ffi.so: no
 * Python.h, no -lpython.  The library loads libpython at run time
 * (pgf_python_start), the host imports tests/c/host_handlers.py, which
 * registers its handlers into the default registry, and then dispatches
 * into them from many threads, synchronously and asynchronously, as a real
 * server would: taking every response payload and releasing it.
 *
 *   test_embed_host VENV SYS_PATH    (make -C tests/c test passes the repo's
 *                                     .venv and tests/c) */
#define _GNU_SOURCE /* syscall(SYS_gettid) */

#include "pygrpc_ffi.h"
#include "check.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef PGF_TEST_VENV
#define PGF_TEST_VENV ".venv"
#endif
#ifndef PGF_TEST_SYS_PATH
#define PGF_TEST_SYS_PATH "tests/c"
#endif

/* The handlers host_handlers.py registers. */
#define PY_HANDLERS 7

static pgf_registry *reg; /* pgf_default_registry() */

static long tid(void) { return (long)syscall(SYS_gettid); }

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits (at most 10 s) until live count `kind` equals want: the handler
 * release runs after the done callback, on the finishing thread. */
static void wait_live(int kind, int64_t want, int line) {
    double until = now_s() + 10;
    while (pgf_live_count(kind) != want && now_s() < until)
        sleep_ms(1);
    if (pgf_live_count(kind) != want)
        CHECK_FAIL_("(line %d) live count %d: %lld, want %lld", line, kind,
                    (long long)pgf_live_count(kind), (long long)want);
    CHECK_PASS_();
}

static pgf_call *new_call(const char *path) {
    pgf_call *c = pgf_call_new(path, strlen(path));
    if (c == NULL)
        CHECK_FAIL_("pgf_call_new(\"%s\") returned NULL", path);
    return c;
}

static const char *message(const pgf_call *c) {
    return pgf_call_status_message(c, NULL);
}

/* The first value of key in md, or NULL; *len set. */
static const uint8_t *md_find(const pgf_metadata *md, const char *key,
                              size_t *len) {
    for (size_t i = 0; i < pgf_metadata_count(md); i++) {
        const char *k;
        size_t kl;
        const uint8_t *v;
        CHECK_INT(pgf_metadata_get(md, i, &k, &kl, &v, len), PGF_OK);
        if (kl == strlen(key) && memcmp(k, key, kl) == 0)
            return v;
    }
    return NULL;
}

/* Dispatches a call synchronously and returns it, finished. */
static pgf_call *call_sync(const char *path, const void *req, size_t len) {
    pgf_call *c = new_call(path);
    CHECK_INT(pgf_call_set_request(c, req, len), PGF_OK);
    CHECK_INT(pgf_dispatch(reg, c), PGF_OK);
    CHECK_INT(pgf_call_is_finished(c), 1);
    return c;
}

/* Takes the response, as a host that sends it would, checks the bytes and
 * releases them. */
static void take_check_release(pgf_call *c, const void *want, size_t want_len) {
    const uint8_t *data;
    size_t len;
    pgf_release_fn release;
    void *ctx;
    CHECK_INT(pgf_call_take_response(c, &data, &len, &release, &ctx), PGF_OK);
    CHECK_MEM(data, len, want, want_len);
    if (want_len)
        CHECK(release != NULL);
    if (release)
        release(ctx);
}

/* ------------------------------------------------------------ start-up */

static void *stop_from_other_thread(void *p) {
    int *rc = p;
    *rc = pgf_python_stop();
    CHECK_CONTAINS(pgf_python_error(), "thread");
    return NULL;
}

static void test_not_started(const char *venv, const char *sys_path) {
    CHECK_INT(pgf_python_import("host_handlers"), PGF_ESTATE);
    CHECK_CONTAINS(pgf_python_error(), "pgf_python_start");
    CHECK_INT(pgf_python_stop(), PGF_ESTATE);
    CHECK(strlen(pgf_python_error()) > 0);
    /* libpython cannot be loaded: an error, no interpreter, and a later
     * start may still succeed. */
    CHECK_INT(setenv("PGF_LIBPYTHON", "/nonexistent/libpython3.so", 1), 0);
    CHECK_INT(pgf_python_start(venv, sys_path), PGF_EPYTHON);
    CHECK_CONTAINS(pgf_python_error(), "cannot load libpython");
    CHECK_CONTAINS(pgf_python_error(), "/nonexistent/libpython3.so");
    CHECK_INT(unsetenv("PGF_LIBPYTHON"), 0);
    CHECK_INT(pgf_python_import("host_handlers"), PGF_ESTATE);
    CHECK_INT(pgf_python_stop(), PGF_ESTATE);
    for (int k = 0; k < 5; k++)
        CHECK_INT(pgf_live_count(k), 0);
}

static void test_start(const char *venv, const char *sys_path) {
    double t0 = now_s();
    int rc = pgf_python_start(venv, sys_path);
    if (rc != PGF_OK)
        CHECK_FAIL_("pgf_python_start(%s, %s): %s: %s", venv, sys_path,
                    pgf_strerror(rc), pgf_python_error());
    CHECK_STR(pgf_python_error(), "");
    printf("(%.0f ms) ", (now_s() - t0) * 1e3);
    /* Only the start thread may stop it. */
    pthread_t th;
    int stop_rc = 0;
    CHECK_INT(pthread_create(&th, NULL, stop_from_other_thread, &stop_rc), 0);
    CHECK_INT(pthread_join(th, NULL), 0);
    CHECK_INT(stop_rc, PGF_ESTATE);
}

static void test_import_failures(void) {
    CHECK_INT(pgf_python_import(NULL), PGF_EINVAL);
    CHECK(strlen(pgf_python_error()) > 0);
    CHECK_INT(pgf_python_import(""), PGF_EINVAL);

    printf("(the package logs the two tracebacks below: expected)\n");
    /* A missing module. */
    CHECK_INT(pgf_python_import("no_such_module_for_pgf_tests"), PGF_EPYTHON);
    const char *err = pgf_python_error();
    CHECK_CONTAINS(err, "no_such_module_for_pgf_tests");
    CHECK_CONTAINS(err, "ModuleNotFoundError");
    printf("\n    missing module: %s\n", err);

    /* A module that raises at import. */
    CHECK_INT(pgf_python_import("host_bad_module"), PGF_EPYTHON);
    err = pgf_python_error();
    CHECK_CONTAINS(err, "host_bad_module");
    CHECK_CONTAINS(err, "RuntimeError");
    CHECK_CONTAINS(err, "refuses to load");
    printf("    raising module: %s\n    ", err);

    /* Nothing registered, nothing leaked; the interpreter still works. */
    CHECK_INT(pgf_live_count(PGF_LIVE_HANDLERS), 0);
    CHECK_INT(pgf_live_count(PGF_LIVE_CALLS), 0);
    CHECK_INT(pgf_python_import("json"), PGF_OK);
    CHECK_STR(pgf_python_error(), "");
}

static int64_t names_registered; /* PGF_LIVE_NAMES with every handler in */

/* How many distinct files whose name contains `part` are mapped. */
static int mapped_files(const char *part, char *first, size_t first_cap) {
    FILE *f = fopen("/proc/self/maps", "r");
    CHECK(f != NULL);
    char line[4096], seen[8][1024];
    int n = 0;
    while (fgets(line, sizeof(line), f)) {
        char *path = strchr(line, '/');
        if (path == NULL || strstr(path, part) == NULL)
            continue;
        path[strcspn(path, "\n")] = '\0';
        int dup = 0;
        for (int i = 0; i < n; i++)
            dup |= strcmp(seen[i], path) == 0;
        if (!dup && n < 8)
            snprintf(seen[n++], sizeof(seen[0]), "%s", path);
    }
    fclose(f);
    if (n && first)
        snprintf(first, first_cap, "%s", seen[0]);
    return n;
}

static void test_import_handlers(void) {
    CHECK_INT(pgf_python_import("host_handlers"), PGF_OK);
    CHECK_STR(pgf_python_error(), "");
    CHECK_INT(pgf_live_count(PGF_LIVE_HANDLERS), PY_HANDLERS);
    CHECK_INT(pgf_live_count(PGF_LIVE_CALLS), 0);
    CHECK_INT(pgf_live_count(PGF_LIVE_BUFFERS), 0);
    names_registered = pgf_live_count(PGF_LIVE_NAMES);
    CHECK_INT(names_registered, 2 * PY_HANDLERS);
    /* Importing it again is a no-op (the module is cached). */
    CHECK_INT(pgf_python_import("host_handlers"), PGF_OK);
    CHECK_INT(pgf_live_count(PGF_LIVE_HANDLERS), PY_HANDLERS);

    /* One shim per process: the cffi module the package imported uses the
     * very library this host linked (here, or its ASan twin). */
    char lib[1024];
    CHECK_INT(mapped_files("libpygrpc_ffi.so", lib, sizeof(lib)), 1);
    CHECK_INT(mapped_files("_native", NULL, 0), 1);
    CHECK_INT(mapped_files("libpython3", NULL, 0), 1); /* loaded at run time */
    CHECK_INT(pgf_registry_has_service(reg, "test.Echo", 9), 1);
    CHECK_INT(pgf_registry_has_method(reg, "test.Echo", 9, "Upper", 5), 1);
    static const char *const want[] = {"test.AsyncEcho", "test.Control",
                                       "test.Echo", "test.Raise",
                                       "test.Slow"};
    pgf_name *out[8];
    CHECK_INT(pgf_registry_list_services(reg, out, 8), 5);
    for (int i = 0; i < 5; i++) {
        CHECK_STR(pgf_name_str(out[i]), want[i]);
        pgf_name_unref(out[i]);
    }
}

/* ------------------------------------------------------- sync dispatch */

#define SYNC_THREADS 4
#define SYNC_CALLS 400

static void *sync_worker(void *p) {
    int id = (int)(intptr_t)p;
    size_t cap = 128 * 1024;
    uint8_t *buf = malloc(cap);
    CHECK(buf != NULL);
    char tag[32];
    for (int i = 0; i < SYNC_CALLS; i++) {
        /* Sizes from 0 to 128 KiB (gRPC C++ hands over larger requests
         * flattened; the shim never copies either way). */
        size_t len = (i % 97 == 0) ? cap : (size_t)((i * 37 + id) % 300);
        for (size_t j = 0; j < len; j++)
            buf[j] = (uint8_t)('a' + (j + (size_t)i + (size_t)id) % 26);
        int n = snprintf((char *)buf, len, "t%d-i%d", id, i);
        (void)n;
        pgf_call *c = new_call((i % 5 == 4) ? "/test.Echo/Upper"
                                            : "/test.Echo/Echo");
        CHECK_INT(pgf_call_set_request(c, buf, len), PGF_OK);
        int tagged = i % 3 == 0;
        if (tagged) {
            snprintf(tag, sizeof(tag), "tag-%d-%d", id, i);
            CHECK_INT(pgf_call_add_request_metadata(c, "x-tag", 5,
                                                    (const uint8_t *)tag,
                                                    strlen(tag)),
                      PGF_OK);
        }
        CHECK_INT(pgf_dispatch(reg, c), PGF_OK);
        if (pgf_call_status(c) != PGF_STATUS_OK)
            CHECK_FAIL_("call %d/%d: status %d: %s", id, i,
                        pgf_call_status(c), message(c));
        CHECK_PASS_();
        if (i % 5 == 4) {
            for (size_t j = 0; j < len; j++)
                if (buf[j] >= 'a' && buf[j] <= 'z')
                    buf[j] = (uint8_t)(buf[j] - 'a' + 'A');
        } else if (tagged) {
            size_t vl;
            const uint8_t *v = md_find(pgf_call_initial_metadata(c), "x-tag",
                                       &vl);
            CHECK(v != NULL);
            CHECK_MEM(v, vl, tag, strlen(tag));
            char lenbuf[32];
            snprintf(lenbuf, sizeof(lenbuf), "%zu", len);
            v = md_find(pgf_call_trailing_metadata(c), "x-len", &vl);
            CHECK(v != NULL);
            CHECK_MEM(v, vl, lenbuf, strlen(lenbuf));
        }
        take_check_release(c, buf, len);
        pgf_call_unref(c);
    }
    free(buf);
    return NULL;
}

static void test_sync_threads(void) {
    double t0 = now_s();
    pthread_t th[SYNC_THREADS];
    for (int i = 0; i < SYNC_THREADS; i++)
        CHECK_INT(pthread_create(&th[i], NULL, sync_worker,
                                 (void *)(intptr_t)i),
                  0);
    for (int i = 0; i < SYNC_THREADS; i++)
        CHECK_INT(pthread_join(th[i], NULL), 0);
    printf("(%d calls, %.0f ms) ", SYNC_THREADS * SYNC_CALLS,
           (now_s() - t0) * 1e3);
    CHECK_INT(pgf_live_count(PGF_LIVE_CALLS), 0);
    CHECK_INT(pgf_live_count(PGF_LIVE_BUFFERS), 0);
}

/* ------------------------------------------------------------- errors */

static void test_errors(void) {
    printf("(a RuntimeError traceback follows: expected)\n");
    /* ValueError -> INVALID_ARGUMENT, with its text. */
    pgf_call *c = call_sync("/test.Raise/Any", "42", 2);
    CHECK_INT(pgf_call_status(c), PGF_STATUS_INVALID_ARGUMENT);
    CHECK_STR(message(c), "bad input 42");
    take_check_release(c, "", 0);
    pgf_call_unref(c);
    /* Anything unmapped -> INTERNAL, without the exception's text. */
    c = call_sync("/test.Raise/Internal", "", 0);
    CHECK_INT(pgf_call_status(c), PGF_STATUS_INTERNAL);
    CHECK(strstr(message(c), "secret") == NULL);
    pgf_call_unref(c);
    /* NotImplementedError -> UNIMPLEMENTED. */
    c = call_sync("/test.Control/Nope", "", 0);
    CHECK_INT(pgf_call_status(c), PGF_STATUS_UNIMPLEMENTED);
    pgf_call_unref(c);
    /* No handler: the shim answers. */
    c = call_sync("/no.Such/Thing", "", 0);
    CHECK_INT(pgf_call_status(c), PGF_STATUS_UNIMPLEMENTED);
    CHECK_STR(message(c), "unknown service no.Such");
    pgf_call_unref(c);
    /* The service keeps serving after its handler raised. */
    c = call_sync("/test.Echo/Echo", "still here", 10);
    CHECK_INT(pgf_call_status(c), PGF_STATUS_OK);
    take_check_release(c, "still here", 10);
    pgf_call_unref(c);
    CHECK_INT(pgf_live_count(PGF_LIVE_CALLS), 0);
    CHECK_INT(pgf_live_count(PGF_LIVE_BUFFERS), 0);
}

/* ------------------------------------------------------ async dispatch */

typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
} waiter;

static void waiter_init(waiter *w) {
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->done = 0;
}

static void waiter_add(waiter *w) {
    pthread_mutex_lock(&w->mu);
    w->done++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static int waiter_count(waiter *w) {
    pthread_mutex_lock(&w->mu);
    int n = w->done;
    pthread_mutex_unlock(&w->mu);
    return n;
}

static void waiter_wait(waiter *w, int n) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 20;
    pthread_mutex_lock(&w->mu);
    while (w->done < n)
        if (pthread_cond_timedwait(&w->cv, &w->mu, &until) == ETIMEDOUT)
            CHECK_FAIL_("%d of %d calls finished in 20 s", w->done, n);
    pthread_mutex_unlock(&w->mu);
}

static void waiter_destroy(waiter *w) {
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
}

/* One asynchronous call: its request bytes live here until done. */
typedef struct pending {
    waiter *w;
    long dispatch_tid;
    int want_status;
    char request[64];
    size_t request_len;
    char want[80];
    size_t want_len;
    int check_thread;           /* compare the x-thread trailer */
    int status;                 /* for the test to read when it keeps it */
    int keep;                   /* don't free: the test reads it */
} pending;

static void on_done(pgf_call *call, void *ud) {
    pending *p = ud;
    int st = pgf_call_status(call);
    if (st != p->want_status)
        CHECK_FAIL_("async call \"%s\": status %d (%s), want %d", p->request,
                    st, message(call), p->want_status);
    CHECK_PASS_();
    p->status = st;
    CHECK_INT(pgf_call_is_finished(call), 1);
    if (st == PGF_STATUS_OK) {
        CHECK(tid() != p->dispatch_tid); /* finished elsewhere */
        if (p->check_thread) {
            /* The handler ran on the thread that completes the call. */
            size_t vl;
            const uint8_t *v = md_find(pgf_call_trailing_metadata(call),
                                       "x-thread", &vl);
            CHECK(v != NULL);
            char me[32];
            snprintf(me, sizeof(me), "%ld", tid());
            CHECK_MEM(v, vl, me, strlen(me));
        }
        take_check_release(call, p->want, p->want_len);
    }
    /* The host's reference: a real async host drops it here. */
    pgf_call_unref(call);
    waiter *w = p->w;
    if (!p->keep)
        free(p);
    waiter_add(w);
}

static pending *start_async(waiter *w, const char *path, const char *req,
                            const char *want, int want_status) {
    pending *p = calloc(1, sizeof(*p));
    CHECK(p != NULL);
    p->w = w;
    p->dispatch_tid = tid();
    p->want_status = want_status;
    p->request_len = (size_t)snprintf(p->request, sizeof(p->request), "%s",
                                      req);
    p->want_len = (size_t)snprintf(p->want, sizeof(p->want), "%s", want);
    pgf_call *c = new_call(path);
    CHECK_INT(pgf_call_set_request(c, (const uint8_t *)p->request,
                                   p->request_len),
              PGF_OK);
    CHECK_INT(pgf_dispatch_async(reg, c, on_done, p), PGF_OK);
    return p;
}

#define ASYNC_THREADS 2
#define ASYNC_CALLS 150

static void *async_worker(void *arg) {
    waiter *w = arg;
    char req[32];
    for (int i = 0; i < ASYNC_CALLS; i++) {
        snprintf(req, sizeof(req), "a%ld-%d", tid(), i);
        pending *p = start_async(w, "/test.AsyncEcho/Echo", req, req,
                                 PGF_STATUS_OK);
        (void)p; /* freed by on_done */
        if (i % 50 == 0)
            sleep_ms(1);
    }
    return NULL;
}

static void test_async(void) {
    waiter w;
    waiter_init(&w);
    double t0 = now_s();
    /* Completion comes from the Python event-loop thread: on_done checks
     * that it runs on the thread the async handler ran on, not the
     * dispatching one. */
    pthread_t th[ASYNC_THREADS];
    for (int i = 0; i < ASYNC_THREADS; i++)
        CHECK_INT(pthread_create(&th[i], NULL, async_worker, &w), 0);
    for (int i = 0; i < ASYNC_THREADS; i++)
        CHECK_INT(pthread_join(th[i], NULL), 0);
    /* The dispatching threads are gone; the calls may still be running. */
    waiter_wait(&w, ASYNC_THREADS * ASYNC_CALLS);
    int n = ASYNC_THREADS * ASYNC_CALLS;
    wait_live(PGF_LIVE_CALLS, 0, __LINE__);
    CHECK_INT(pgf_live_count(PGF_LIVE_BUFFERS), 0); /* all taken, released */

    /* An async handler that raises. */
    start_async(&w, "/test.AsyncEcho/Fail", "7", "", PGF_STATUS_INVALID_ARGUMENT);
    waiter_wait(&w, ++n);
    printf("(%d calls, %.0f ms) ", n, (now_s() - t0) * 1e3);

    /* Cancelled from the host while the handler waits: CANCELLED. */
    pending *p = calloc(1, sizeof(*p));
    CHECK(p != NULL);
    p->w = &w;
    p->keep = 1;
    p->want_status = PGF_STATUS_CANCELLED;
    p->dispatch_tid = tid();
    pgf_call *c = new_call("/test.Slow/Cancel");
    pgf_call_ref(c); /* one for on_done to drop, one kept here */
    CHECK_INT(pgf_dispatch_async(reg, c, on_done, p), PGF_OK);
    sleep_ms(20);
    CHECK_INT(waiter_count(&w), n); /* the gate is closed */
    CHECK_INT(pgf_call_is_finished(c), 0);
    pgf_call_cancel(c);
    waiter_wait(&w, ++n);
    CHECK_INT(p->status, PGF_STATUS_CANCELLED);
    CHECK_INT(pgf_call_is_cancelled(c), 1);
    pgf_call_unref(c); /* on_done dropped the other reference */
    free(p);

    waiter_destroy(&w);
    /* The Python side drops its own reference just after finishing. */
    wait_live(PGF_LIVE_CALLS, 0, __LINE__);
    CHECK_INT(pgf_live_count(PGF_LIVE_BUFFERS), 0);
}

/* ------------------------------------ unregistering while in flight */

#define SLOW_CALLS 8

static void test_unregister_in_flight(void) {
    waiter w;
    waiter_init(&w);
    char req[16], want[32];
    for (int i = 0; i < SLOW_CALLS; i++) {
        snprintf(req, sizeof(req), "w%d", i);
        snprintf(want, sizeof(want), "slow:w%d", i);
        start_async(&w, "/test.Slow/Work", req, want, PGF_STATUS_OK);
    }
    CHECK_INT(pgf_live_count(PGF_LIVE_CALLS), SLOW_CALLS);
    CHECK_INT(pgf_live_count(PGF_LIVE_HANDLERS), PY_HANDLERS);

    /* Unregistered from C while its calls wait for the gate. */
    CHECK_INT(pgf_registry_unregister_service(reg, "test.Slow", 9), PGF_OK);
    CHECK_INT(pgf_registry_has_service(reg, "test.Slow", 9), 0);
    CHECK_INT(pgf_live_count(PGF_LIVE_HANDLERS), PY_HANDLERS); /* in use */
    CHECK_INT(pgf_live_count(PGF_LIVE_NAMES),
              names_registered - 2 + 2 * SLOW_CALLS);
    CHECK_INT(waiter_count(&w), 0);

    /* Later calls find no handler. */
    pgf_call *c = call_sync("/test.Slow/Work", "late", 4);
    CHECK_INT(pgf_call_status(c), PGF_STATUS_UNIMPLEMENTED);
    CHECK_STR(message(c), "unknown service test.Slow");
    pgf_call_unref(c);
    CHECK_INT(pgf_registry_unregister_service(reg, "test.Slow", 9),
              PGF_ENOTFOUND);

    /* Open the gate: the calls in flight finish normally, and then the
     * registration is released. */
    c = call_sync("/test.Control/OpenGate", "", 0);
    CHECK_INT(pgf_call_status(c), PGF_STATUS_OK);
    take_check_release(c, "open", 4);
    pgf_call_unref(c);
    waiter_wait(&w, SLOW_CALLS);
    wait_live(PGF_LIVE_HANDLERS, PY_HANDLERS - 1, __LINE__);
    wait_live(PGF_LIVE_CALLS, 0, __LINE__);
    CHECK_INT(pgf_live_count(PGF_LIVE_NAMES), names_registered - 2);
    waiter_destroy(&w);
}

/* ---------------------------------------------------------------- end */

static void test_live_counts(void) {
    CHECK_INT(pgf_live_count(PGF_LIVE_CALLS), 0);
    CHECK_INT(pgf_live_count(PGF_LIVE_BUFFERS), 0);
    CHECK_INT(pgf_live_count(PGF_LIVE_HANDLERS), PY_HANDLERS - 1);
    CHECK_INT(pgf_live_count(PGF_LIVE_NAMES), names_registered - 2);
    CHECK_INT(pgf_live_count(PGF_LIVE_REGISTRIES), 0);
}

static void test_stop(void) {
    CHECK_INT(pgf_python_stop(), PGF_OK);
    CHECK_STR(pgf_python_error(), "");
    /* The package let go of every registration while it could still run
     * their release functions: no handler points into a dead interpreter. */
    for (int k = 0; k < 5; k++)
        CHECK_INT(pgf_live_count(k), 0);
    CHECK_INT(pgf_registry_list_services(reg, NULL, 0), 0);
    CHECK_INT(pgf_python_stop(), PGF_ESTATE); /* once */
}

int main(int argc, char **argv) {
    const char *venv = argc > 1 ? argv[1] : PGF_TEST_VENV;
    const char *sys_path = argc > 2 ? argv[2] : PGF_TEST_SYS_PATH;
    int passed = 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("test_embed_host: venv %s, sys_path %s\n", venv, sys_path);
    reg = pgf_default_registry();
    CHECK(reg != NULL);

    printf("  %-40s", "test_not_started");
    test_not_started(venv, sys_path);
    printf("ok\n");
    passed++;
    printf("  %-40s", "test_start");
    test_start(venv, sys_path);
    printf("ok\n");
    passed++;
    RUN_TEST(test_import_failures, passed);
    RUN_TEST(test_import_handlers, passed);
    RUN_TEST(test_sync_threads, passed);
    RUN_TEST(test_errors, passed);
    RUN_TEST(test_async, passed);
    RUN_TEST(test_unregister_in_flight, passed);
    RUN_TEST(test_live_counts, passed);
    RUN_TEST(test_stop, passed);
    printf("test_embed_host: %d passed, 0 failed (%ld checks)\n", passed,
           check_count);
    return 0;
}
