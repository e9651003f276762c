/* The bench's C loops, compiled into the bench-only cffi module _pgf_bench
 * (bench/build_native.py; never into the package).  Every loop runs on
 * pthreads of its own, as a host's threads would, while the Python thread
 * that started it waits in C without the GIL.
 *
 *   floor       calls a bare no-op extern "Python" callback
 *   c_shim      a full call through the registry into a C handler
 *   c_callback  the same, the C handler also calls the no-op callback
 *   python      a full call through the registry into a Python handler
 *
 * A full call: pgf_call_new, a request payload, 2 request metadata entries,
 * pgf_dispatch, check status and response length, pgf_call_unref (which
 * releases the response payload).  Included by cffi's set_source, after its
 * own definition of the extern "Python" function _bench_noop. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pygrpc_ffi.h"

static void _bench_noop(void *data, pgf_call *call);

enum { BENCH_FLOOR = 0, BENCH_DISPATCH = 1 };

typedef struct {
    int kind;
    const char *path;
    size_t path_len;
    const uint8_t *payload;
    size_t payload_len;
    long calls;
    long warmup;
    pthread_barrier_t *start;
    int64_t t0, t1;
    long errors;
} bench_job;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A new call to path with the request payload and 2 metadata entries, or
 * NULL.  The payload is handed over as a message, as hosts do for zero copy
 * into Python (it outlives every call: no release). */
static pgf_call *new_bench_call(const char *path, size_t path_len,
                                const uint8_t *payload, size_t payload_len) {
    pgf_call *c = pgf_call_new(path, path_len);
    if (c == NULL)
        return NULL;
    int bad = pgf_call_set_request_message(
                  c, pgf_message_new(payload, payload_len, NULL, NULL)) !=
              PGF_OK;
    bad |= pgf_call_add_request_metadata(c, "x-bench-user", 12,
                                         (const uint8_t *)"alice", 5) != PGF_OK;
    bad |= pgf_call_add_request_metadata(c, "x-bench-trace", 13,
                                         (const uint8_t *)"0123456789abcdef",
                                         16) != PGF_OK;
    if (bad) {
        pgf_call_unref(c);
        return NULL;
    }
    return c;
}

static int one_call(const bench_job *j) {
    pgf_call *c = new_bench_call(j->path, j->path_len, j->payload,
                                 j->payload_len);
    if (c == NULL)
        return 1;
    int bad = pgf_dispatch(pgf_default_registry(), c) != PGF_OK;
    const uint8_t *data;
    size_t len;
    pgf_call_response(c, &data, &len);
    bad |= pgf_call_status(c) != PGF_STATUS_OK || len != j->payload_len;
    pgf_call_unref(c);
    return bad;
}

static void run_n(bench_job *j, long n) {
    if (j->kind == BENCH_FLOOR) {
        for (long i = 0; i < n; i++)
            _bench_noop(NULL, NULL);
        return;
    }
    for (long i = 0; i < n; i++)
        j->errors += one_call(j);
}

static void *bench_thread(void *arg) {
    bench_job *j = arg;
    run_n(j, j->warmup);
    j->errors = 0;
    pthread_barrier_wait(j->start);
    j->t0 = now_ns();
    run_n(j, j->calls);
    j->t1 = now_ns();
    return NULL;
}

/* Runs `threads` threads of `calls` calls each (after `warmup` calls each)
 * and returns the wall time in ns from the first start to the last end;
 * *errors counts failed calls.  -1 if threads cannot be started. */
static int64_t bench_run(int kind, const char *path, size_t payload_len,
                         long calls, long warmup, int threads, long *errors) {
    uint8_t *payload = malloc(payload_len ? payload_len : 1);
    bench_job *jobs = calloc((size_t)threads, sizeof(*jobs));
    pthread_t *tids = calloc((size_t)threads, sizeof(*tids));
    pthread_barrier_t start;
    int64_t wall = -1;
    *errors = 0;
    if (payload == NULL || jobs == NULL || tids == NULL ||
        pthread_barrier_init(&start, NULL, (unsigned)threads) != 0)
        goto out;
    for (size_t i = 0; i < payload_len; i++)
        payload[i] = (uint8_t)(i * 31u + 7u);
    int started = 0;
    for (int i = 0; i < threads; i++) {
        jobs[i] = (bench_job){kind, path, strlen(path), payload, payload_len,
                              calls, warmup, &start, 0, 0, 0};
        if (pthread_create(&tids[i], NULL, bench_thread, &jobs[i]) != 0)
            break;
        started++;
    }
    if (started < threads) {
        /* Unreachable in practice; the started threads would block on the
         * barrier forever, so give up loudly. */
        abort();
    }
    int64_t t0 = INT64_MAX, t1 = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(tids[i], NULL);
        t0 = jobs[i].t0 < t0 ? jobs[i].t0 : t0;
        t1 = jobs[i].t1 > t1 ? jobs[i].t1 : t1;
        *errors += jobs[i].errors;
    }
    pthread_barrier_destroy(&start);
    wall = t1 - t0;
out:
    free(payload);
    free(jobs);
    free(tids);
    return wall;
}

/* ------------------------------------------------------------ C handlers */

static void no_release(void *ctx) { (void)ctx; }

/* Answers with the request's own bytes (valid until the call is freed). */
static void c_echo(void *data, pgf_call *call) {
    const uint8_t *req;
    size_t len;
    if (data != NULL)
        _bench_noop(NULL, call);
    pgf_call_request(call, &req, &len);
    if (len)
        pgf_call_set_response(call, req, len, no_release, NULL);
    pgf_call_finish(call, PGF_STATUS_OK, "", 0);
}

/* Registers c_echo for `service` in the default registry; with_callback
 * makes it call the no-op extern "Python" callback too. */
static int bench_register_c(const char *service, int with_callback) {
    static int marker;
    return pgf_registry_register_service(pgf_default_registry(), service,
                                         strlen(service), c_echo,
                                         with_callback ? &marker : NULL,
                                         NULL);
}

/* ------------------------------------------------------------ streams */

/* A host that serves a stream inline from C, as fast as the shim allows:
 * each read is answered at once with the next static message (lent, no
 * release), each write is taken and completed at once.  Measures what a
 * streaming handler costs per message, without a network. */
typedef struct bench_stream_host {
    long messages;   /* request messages to send before the end */
    long pushed;
    long written;
    size_t payload_len;
    const uint8_t *payload;
} bench_stream_host;

static void bench_stream_events(pgf_call *call, int event, void *data) {
    bench_stream_host *h = data;
    if (event == PGF_EVENT_READ) {
        if (h->pushed < h->messages) {
            h->pushed++;
            pgf_call_push_request(call, pgf_message_new(h->payload,
                                                        h->payload_len, NULL,
                                                        NULL));
        } else {
            pgf_call_push_request(call, NULL);
        }
    } else if (event == PGF_EVENT_WRITE) {
        const uint8_t *d;
        size_t len;
        pgf_release_fn release;
        void *ctx;
        if (pgf_call_take_write(call, &d, &len, &release, &ctx, NULL) ==
            PGF_OK) {
            h->written++;
            if (release)
                release(ctx);
            pgf_call_write_done(call, 1);
        }
    }
}

/* One bidi call of `messages` messages into `path`; returns the wall time
 * in ns, or -1 if the call failed or answered another number of messages.
 * Runs the dispatch on a pthread of its own, as a host's worker would. */
typedef struct stream_job {
    const char *path;
    bench_stream_host host;
    int status;
    int64_t t0, t1;
} stream_job;

static void *stream_thread(void *arg) {
    stream_job *j = arg;
    pgf_call *c = pgf_call_new(j->path, strlen(j->path));
    j->status = -1;
    if (c == NULL)
        return NULL;
    pgf_call_set_stream(c, bench_stream_events, &j->host);
    j->t0 = now_ns();
    pgf_dispatch(pgf_default_registry(), c);
    j->t1 = now_ns();
    j->status = pgf_call_status(c);
    pgf_call_unref(c);
    return NULL;
}

static int64_t bench_stream(const char *path, size_t payload_len,
                            long messages) {
    uint8_t *payload = calloc(1, payload_len ? payload_len : 1);
    stream_job j = {path, {messages, 0, 0, payload_len, payload}, -1, 0, 0};
    pthread_t t;
    int64_t wall = -1;
    if (payload != NULL && pthread_create(&t, NULL, stream_thread, &j) == 0) {
        pthread_join(t, NULL);
        if (j.status == PGF_STATUS_OK && j.host.written == messages)
            wall = j.t1 - j.t0;
    }
    free(payload);
    return wall;
}

/* ------------------------------------------------------- pipelined calls */

/* One thread dispatches `calls` calls with pgf_dispatch_async, as a host's
 * thread does, keeping up to `depth` of them in flight: their done callbacks
 * (on whichever thread finishes them) free a slot.  Measures what a call
 * costs when the dispatching thread does not wait for each answer. */
typedef struct pipeline {
    pthread_mutex_t lock;
    pthread_cond_t freed;
    long in_flight;
    long low_water;
    long errors;
    size_t payload_len;
} pipeline;

static void pipeline_done(pgf_call *call, void *data) {
    pipeline *p = data;
    const uint8_t *resp;
    size_t len;
    pgf_call_response(call, &resp, &len);
    int bad = pgf_call_status(call) != PGF_STATUS_OK || len != p->payload_len;
    pgf_call_unref(call);
    pthread_mutex_lock(&p->lock);
    p->errors += bad;
    p->in_flight--;
    /* The dispatching thread refills half the window at a time, as a host
     * with many calls arriving would: one wake-up per depth/2 answers. */
    if (p->in_flight <= p->low_water)
        pthread_cond_signal(&p->freed);
    pthread_mutex_unlock(&p->lock);
}

static int pipeline_call(pipeline *p, const char *path, size_t path_len,
                         const uint8_t *payload) {
    pgf_call *c = new_bench_call(path, path_len, payload, p->payload_len);
    if (c == NULL)
        return 1;
    pthread_mutex_lock(&p->lock);
    p->in_flight++;
    pthread_mutex_unlock(&p->lock);
    if (pgf_dispatch_async(pgf_default_registry(), c, pipeline_done, p) !=
        PGF_OK) {
        pgf_call_unref(c);
        pthread_mutex_lock(&p->lock);
        p->in_flight--;
        pthread_mutex_unlock(&p->lock);
        return 1;
    }
    return 0;
}

typedef struct pipeline_job {
    const char *path;
    size_t payload_len;
    long calls;
    long depth;
    long errors;
    int64_t wall;
} pipeline_job;

static void *pipeline_thread(void *arg) {
    pipeline_job *j = arg;
    pipeline p = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0,
                  j->depth / 2, 0, j->payload_len};
    uint8_t *payload = calloc(1, j->payload_len ? j->payload_len : 1);
    size_t path_len = strlen(j->path);
    long failed = 0;
    if (payload == NULL) {
        j->errors = j->calls;
        return NULL;
    }
    int64_t t0 = now_ns();
    for (long i = 0; i < j->calls; i++) {
        pthread_mutex_lock(&p.lock);
        if (p.in_flight >= j->depth)
            while (p.in_flight > p.low_water)
                pthread_cond_wait(&p.freed, &p.lock);
        pthread_mutex_unlock(&p.lock);
        failed += pipeline_call(&p, j->path, path_len, payload);
    }
    pthread_mutex_lock(&p.lock);
    while (p.in_flight > 0)
        pthread_cond_wait(&p.freed, &p.lock);
    pthread_mutex_unlock(&p.lock);
    j->wall = now_ns() - t0;
    j->errors = failed + p.errors;
    free(payload);
    return NULL;
}

/* Wall time in ns of `calls` pipelined calls (see above); -1 if the thread
 * cannot start.  *errors counts failed calls. */
static int64_t bench_pipeline(const char *path, size_t payload_len, long calls,
                              long depth, long *errors) {
    pipeline_job j = {path, payload_len, calls, depth > 0 ? depth : 1, 0, -1};
    pthread_t t;
    if (pthread_create(&t, NULL, pipeline_thread, &j) != 0)
        return -1;
    pthread_join(t, NULL);
    *errors = j.errors;
    return j.wall;
}
