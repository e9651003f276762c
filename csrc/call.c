/* The call object: its lifetime, its lock, and the operations still
 * outstanding on it, which a cancellation, the finish or the last unref
 * completes.  What the host and the handler do with a call lives above:
 * request.c, response.c, stream.c, cancel.c, finish.c. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

pgf_call *pgf_call_new(const char *path, size_t path_len) {
    /* "/service/method": both parts non-empty, no further '/'. */
    if (path == NULL || path_len < 4 || !pgf__len_ok(path_len) || path[0] != '/')
        return NULL;
    const char *slash = memchr(path + 1, '/', path_len - 1);
    if (slash == NULL || slash == path + 1 || slash == path + path_len - 1)
        return NULL;
    if (memchr(slash + 1, '/', (size_t)(path + path_len - slash - 1)))
        return NULL;
    if (memchr(path, '\0', path_len))
        return NULL;

    pgf_call *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->path = malloc(path_len + 1);
    size_t service_len = (size_t)(slash - path - 1);
    c->service = pgf_name_new(path + 1, service_len);
    c->method = pgf_name_new(slash + 1, path_len - service_len - 2);
    if (c->path == NULL || c->service == NULL || c->method == NULL) {
        free(c->path);
        pgf_name_unref(c->service);
        pgf_name_unref(c->method);
        free(c);
        return NULL;
    }
    memcpy(c->path, path, path_len);
    c->path[path_len] = '\0';
    c->path_len = path_len;
    c->refs = 1;
    c->deadline = INT64_MAX;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    pgf__metadata_init(&c->request_md);
    pgf__metadata_init(&c->auth_md);
    pgf__metadata_init(&c->initial_md);
    pgf__metadata_init(&c->trailing_md);
    pgf__live_add(PGF_LIVE_CALLS, 1);
    return c;
}

pgf_call *pgf_call_ref(pgf_call *call) {
    if (call)
        pgf__ref(&call->refs);
    return call;
}

/* The last reference is gone: nobody can complete these any more. */
static void drop_outstanding(pgf_call *call) {
    pgf__cancelled_ops ops = {0};
    pgf__call_take_cancelled(call, &ops);
    if (call->write_state == PGF__WRITE_TAKEN) {
        ops.write_cb = call->write_cb;
        ops.write_ud = call->write_ud;
        call->write_state = PGF__WRITE_NONE;
    }
    pgf__call_run_cancelled(call, &ops);
}

void pgf_call_unref(pgf_call *call) {
    if (call == NULL || !pgf__unref(&call->refs))
        return;
    drop_outstanding(call);
    if (call->response_owner)
        pgf__owned_buffer_release(call->response_owner);
    pgf_message_unref(call->request_msg);
    if (call->handler)
        pgf__handler_unref(call->handler);
    pgf_name_unref(call->service);
    pgf_name_unref(call->method);
    pgf__metadata_clear(&call->request_md);
    pgf__metadata_clear(&call->auth_md);
    pgf__metadata_clear(&call->initial_md);
    pgf__metadata_clear(&call->trailing_md);
    free(call->path);
    free(call->peer);
    free(call->identity_key);
    free(call->message);
    free(call->details);
    pthread_mutex_destroy(&call->mu);
    pthread_cond_destroy(&call->cv);
    free(call);
    pgf__live_add(PGF_LIVE_CALLS, -1);
}

const pgf_name *pgf_call_service(const pgf_call *call) {
    return call ? call->service : NULL;
}

const pgf_name *pgf_call_method(const pgf_call *call) {
    return call ? call->method : NULL;
}

int pgf_call_nonblocking(const pgf_call *call) {
    return call ? __atomic_load_n(&call->nonblocking, __ATOMIC_ACQUIRE) : 0;
}

/* ------------------------------------------------- the host's stream_fn */

/* The stream_fn calls this thread is inside of, for one call (a host may
 * complete an operation inside its stream_fn, and the handler may finish
 * the call from that completion: finish must not wait for itself). */
static __thread const pgf_call *fn_call;
static __thread int fn_depth;

void pgf__call_run_stream_fn(pgf_call *call, pgf_stream_fn fn,
                             void *host_data, int event) {
    call->stream_fn_running++;
    pgf_call_ref(call);
    pthread_mutex_unlock(&call->mu);
    const pgf_call *saved_call = fn_call;
    int saved_depth = fn_depth;
    if (fn_call != call) {
        fn_call = call;
        fn_depth = 0;
    }
    fn_depth++;
    fn(call, event, host_data);
    fn_call = saved_call;
    fn_depth = saved_depth;
    pthread_mutex_lock(&call->mu);
    if (--call->stream_fn_running == 0)
        pthread_cond_broadcast(&call->cv);
    pthread_mutex_unlock(&call->mu);
    pgf_call_unref(call);
}

int pgf__call_stream_fn_elsewhere(const pgf_call *call) {
    int mine = fn_call == call ? fn_depth : 0;
    return call->stream_fn_running > mine;
}

/* ------------------------------------------------ outstanding operations */

pgf_read_fn pgf__call_take_read(pgf_call *call, void **ud) {
    if (!call->read_pending)
        return NULL;
    call->read_pending = 0;
    *ud = call->read_ud;
    pgf_read_fn cb = call->read_cb;
    call->read_cb = NULL;
    call->read_ud = NULL;
    return cb;
}

/* With mu held: takes a write the host has not taken yet. */
static pgf_write_fn take_queued_write(pgf_call *call, void **ud,
                                      pgf_owned_buffer **owner) {
    if (call->write_state != PGF__WRITE_QUEUED)
        return NULL;
    call->write_state = PGF__WRITE_NONE;
    *ud = call->write_ud;
    *owner = call->write_owner;
    pgf_write_fn cb = call->write_cb;
    call->write_owner = NULL;
    call->write_cb = NULL;
    call->write_ud = NULL;
    call->write_data = NULL;
    call->write_len = 0;
    return cb;
}

void pgf__call_take_cancelled(pgf_call *call, pgf__cancelled_ops *ops) {
    ops->read_cb = pgf__call_take_read(call, &ops->read_ud);
    ops->write_cb = take_queued_write(call, &ops->write_ud, &ops->write_owner);
}

void pgf__call_run_cancelled(pgf_call *call, pgf__cancelled_ops *ops) {
    if (ops->read_cb)
        ops->read_cb(call, PGF_ECANCELLED, NULL, ops->read_ud);
    if (ops->write_owner)
        pgf__owned_buffer_release(ops->write_owner);
    if (ops->write_cb)
        ops->write_cb(call, PGF_ECANCELLED, ops->write_ud);
}

/* ------------------------------------------------------------ dispatch */

int pgf__call_begin_dispatch(pgf_call *call, pgf_done_fn done, void *ud) {
    pthread_mutex_lock(&call->mu);
    if (call->dispatched || call->finished) {
        pthread_mutex_unlock(&call->mu);
        return PGF_ESTATE;
    }
    /* Dropped by pgf_call_finish; taken before another thread can see
     * `dispatched` and finish the call. */
    pgf_call_ref(call);
    call->dispatched = 1;
    call->done = done;
    call->done_data = ud;
    pthread_mutex_unlock(&call->mu);
    return PGF_OK;
}

void pgf__call_set_handler(pgf_call *call, pgf_handler *h) {
    pthread_mutex_lock(&call->mu);
    call->handler = h;
    __atomic_store_n(&call->nonblocking, h->nonblocking, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&call->mu);
}

void pgf__call_wait(pgf_call *call) {
    pthread_mutex_lock(&call->mu);
    while (!call->finished)
        pthread_cond_wait(&call->cv, &call->mu);
    pthread_mutex_unlock(&call->mu);
}
