/* Streams on a call: pulled reads, back-pressured writes, initial metadata.
 * The protocol is described in pygrpc_ffi.h ("streams"); what a
 * cancellation, the finish or the last unref completes is in call.c. */
#include "internal.h"

#include <stdlib.h>

static int call_over(const pgf_call *c) { return c->finished || c->cancelled; }

int pgf_call_set_stream(pgf_call *call, pgf_stream_fn fn, void *host_data) {
    if (call == NULL || fn == NULL)
        return PGF_EINVAL;
    if (pgf__call_lock_unless(call, &call->dispatched) != PGF_OK)
        return PGF_ESTATE;
    call->stream_fn = fn;
    call->stream_data = host_data;
    pthread_mutex_unlock(&call->mu);
    return PGF_OK;
}

/* The callbacks of the blocking forms: they only signal the waiting
 * thread (a mutex held for a few instructions), so a host may run them on
 * its event threads. */
static void read_woken(pgf_call *call, int result, pgf_message *msg,
                       void *ud);
static void write_woken(pgf_call *call, int result, void *ud);

/* ---------------------------------------------------------------- reads */

int pgf_call_read(pgf_call *call, pgf_read_fn cb, void *user_data) {
    if (call == NULL || cb == NULL)
        return PGF_EINVAL;
    pthread_mutex_lock(&call->mu);
    if (call->read_pending) {
        pthread_mutex_unlock(&call->mu);
        return PGF_ESTATE;
    }
    if (call_over(call)) {
        pthread_mutex_unlock(&call->mu);
        return PGF_ECANCELLED;
    }
    /* A request set by the host is the whole request stream. */
    if (call->request_set || call->stream_fn == NULL) {
        int first = !call->request_read;
        call->request_read = 1;
        pgf_message *msg = NULL;
        if (first) {
            msg = call->request_msg
                      ? pgf_message_ref(call->request_msg)
                      /* lent bytes: valid until finish, like the request */
                      : pgf_message_new(call->request, call->request_len,
                                        NULL, NULL);
        }
        pthread_mutex_unlock(&call->mu);
        if (first && msg == NULL)
            return PGF_ENOMEM;
        cb(call, first ? PGF_OK : PGF_EOF, msg, user_data);
        return PGF_OK;
    }
    if (call->requests_ended) {
        pthread_mutex_unlock(&call->mu);
        cb(call, PGF_EOF, NULL, user_data);
        return PGF_OK;
    }
    call->read_pending = 1;
    call->read_cb = cb;
    call->read_ud = user_data;
    pgf__call_run_stream_fn(call, call->stream_fn, call->stream_data,
                            PGF_EVENT_READ);
    return PGF_OK;
}

/* Completes the outstanding read with msg; mu is held on entry and
 * released here. */
static int push_locked(pgf_call *call, pgf_message *msg) {
    void *ud = NULL;
    pgf_read_fn cb = pgf__call_take_read(call, &ud);
    if (cb != NULL && msg == NULL)
        call->requests_ended = 1;
    pthread_mutex_unlock(&call->mu);
    if (cb == NULL) {
        pgf_message_unref(msg);
        return PGF_ESTATE;
    }
    if (msg != NULL)
        pgf__metrics_message(&call->metrics, 0);
    cb(call, msg ? PGF_OK : PGF_EOF, msg, ud);
    return PGF_OK;
}

int pgf_call_push_request(pgf_call *call, pgf_message *msg) {
    if (call == NULL) {
        pgf_message_unref(msg);
        return PGF_EINVAL;
    }
    pthread_mutex_lock(&call->mu);
    return push_locked(call, msg);
}

int pgf_call_push_request_nonblocking(pgf_call *call, pgf_message *msg) {
    if (call == NULL) {
        pgf_message_unref(msg);
        return PGF_EINVAL;
    }
    pthread_mutex_lock(&call->mu);
    if (call->read_pending && call->read_cb != read_woken &&
        !pgf_call_nonblocking(call)) {
        pthread_mutex_unlock(&call->mu);
        return PGF_EWOULDBLOCK; /* msg is still the caller's */
    }
    return push_locked(call, msg);
}

/* A blocking operation's result, filled in by its callback. */
typedef struct waiter {
    int done;
    int result;
    pgf_message *msg;
} waiter;

static void wake(pgf_call *call, waiter *w, int result, pgf_message *msg) {
    pthread_mutex_lock(&call->mu);
    w->result = result;
    w->msg = msg;
    w->done = 1;
    pthread_cond_broadcast(&call->cv);
    pthread_mutex_unlock(&call->mu);
}

/* Waits until w is done; hooks (may be NULL) run around the wait only if
 * there is one. */
static void wait_for(pgf_call *call, waiter *w, const pgf_wait_hooks *hooks) {
    pthread_mutex_lock(&call->mu);
    if (w->done) {
        pthread_mutex_unlock(&call->mu);
        return;
    }
    int hooked = hooks != NULL && hooks->before != NULL && hooks->after != NULL;
    if (hooked) {  /* not under mu: the hook may wait for its own lock */
        pthread_mutex_unlock(&call->mu);
        hooks->before(hooks->arg);
        pthread_mutex_lock(&call->mu);
    }
    while (!w->done)
        pthread_cond_wait(&call->cv, &call->mu);
    pthread_mutex_unlock(&call->mu);
    if (hooked)
        hooks->after(hooks->arg);
}

static void read_woken(pgf_call *call, int result, pgf_message *msg,
                       void *ud) {
    wake(call, ud, result, msg);
}

int pgf_call_read_wait(pgf_call *call, pgf_message **msg) {
    return pgf_call_read_wait_hooked(call, msg, NULL);
}

int pgf_call_read_wait_hooked(pgf_call *call, pgf_message **msg,
                              const pgf_wait_hooks *hooks) {
    if (msg)
        *msg = NULL;
    if (call == NULL || msg == NULL)
        return PGF_EINVAL;
    waiter w = {0, 0, NULL};
    /* Our own reference: the call may finish, and every other reference
     * go, while this thread waits on its mutex. */
    pgf_call_ref(call);
    int rc = pgf_call_read(call, read_woken, &w);
    if (rc == PGF_OK) {
        wait_for(call, &w, hooks);
        *msg = w.msg;
        rc = w.result;
    }
    pgf_call_unref(call);
    return rc;
}

/* --------------------------------------------------------------- writes */

int pgf_call_write(pgf_call *call, const uint8_t *data, size_t len,
                   pgf_release_fn release, void *ctx, pgf_write_fn cb,
                   void *user_data) {
    if (call == NULL || cb == NULL || (data == NULL && len != 0) ||
        !pgf__len_ok(len)) {
        if (release)
            release(ctx);
        return PGF_EINVAL;
    }
    pgf_owned_buffer *owner = NULL;
    if (release != NULL) {
        owner = pgf__owned_buffer_new(release, ctx);
        if (owner == NULL)
            return PGF_ENOMEM;
    }
    pthread_mutex_lock(&call->mu);
    int rc = PGF_OK;
    if (call->stream_fn == NULL || call->write_state != PGF__WRITE_NONE ||
        call->finished)
        rc = PGF_ESTATE;
    else if (call->cancelled)
        rc = PGF_ECANCELLED;
    if (rc != PGF_OK) {
        pthread_mutex_unlock(&call->mu);
        if (owner)
            pgf__owned_buffer_release(owner);
        return rc;
    }
    call->write_state = PGF__WRITE_QUEUED;
    call->write_data = data;
    call->write_len = len;
    call->write_owner = owner;
    call->write_cb = cb;
    call->write_ud = user_data;
    __atomic_store_n(&call->initial_md_ready, 1, __ATOMIC_RELEASE);
    pgf__call_run_stream_fn(call, call->stream_fn, call->stream_data,
                            PGF_EVENT_WRITE);
    return PGF_OK;
}

int pgf_call_take_write(pgf_call *call, const uint8_t **data, size_t *len,
                        pgf_release_fn *release, void **ctx,
                        unsigned *flags) {
    if (call == NULL || data == NULL || len == NULL || release == NULL ||
        ctx == NULL)
        return PGF_EINVAL;
    *data = NULL;
    *len = 0;
    *release = NULL;
    *ctx = NULL;
    if (flags)
        *flags = 0;
    pthread_mutex_lock(&call->mu);
    if (call->write_state != PGF__WRITE_QUEUED) {
        pthread_mutex_unlock(&call->mu);
        return PGF_ENOTFOUND;
    }
    call->write_state = PGF__WRITE_TAKEN;
    *data = call->write_data;
    *len = call->write_len;
    if (call->write_owner) {
        *release = pgf__owned_buffer_release;
        *ctx = call->write_owner;
        call->write_owner = NULL;
    }
    pthread_mutex_unlock(&call->mu);
    return PGF_OK;
}

/* Completes the write taken; mu is held on entry and released here. */
static int write_done_locked(pgf_call *call, int ok) {
    if (call->write_state != PGF__WRITE_TAKEN) {
        pthread_mutex_unlock(&call->mu);
        return PGF_ESTATE;
    }
    call->write_state = PGF__WRITE_NONE;
    pgf_write_fn cb = call->write_cb;
    void *ud = call->write_ud;
    call->write_cb = NULL;
    call->write_ud = NULL;
    call->write_data = NULL;
    call->write_len = 0;
    pthread_mutex_unlock(&call->mu);
    if (ok)
        pgf__metrics_message(&call->metrics, 1);
    cb(call, ok ? PGF_OK : PGF_ECANCELLED, ud);
    return PGF_OK;
}

int pgf_call_write_done(pgf_call *call, int ok) {
    if (call == NULL)
        return PGF_EINVAL;
    pthread_mutex_lock(&call->mu);
    return write_done_locked(call, ok);
}

int pgf_call_write_done_nonblocking(pgf_call *call, int ok) {
    if (call == NULL)
        return PGF_EINVAL;
    pthread_mutex_lock(&call->mu);
    if (call->write_state == PGF__WRITE_TAKEN && call->write_cb != write_woken &&
        !pgf_call_nonblocking(call)) {
        pthread_mutex_unlock(&call->mu);
        return PGF_EWOULDBLOCK;
    }
    return write_done_locked(call, ok);
}

static void write_woken(pgf_call *call, int result, void *ud) {
    wake(call, ud, result, NULL);
}

int pgf_call_write_wait(pgf_call *call, const uint8_t *data, size_t len,
                        pgf_release_fn release, void *ctx) {
    return pgf_call_write_wait_hooked(call, data, len, release, ctx, NULL);
}

int pgf_call_write_wait_hooked(pgf_call *call, const uint8_t *data,
                               size_t len, pgf_release_fn release, void *ctx,
                               const pgf_wait_hooks *hooks) {
    if (call == NULL) {
        if (release)
            release(ctx);
        return PGF_EINVAL;
    }
    waiter w = {0, 0, NULL};
    pgf_call_ref(call); /* as in pgf_call_read_wait */
    int rc = pgf_call_write(call, data, len, release, ctx, write_woken, &w);
    if (rc == PGF_OK) {
        wait_for(call, &w, hooks);
        rc = w.result;
    }
    pgf_call_unref(call);
    return rc;
}

/* ----------------------------------------------------- initial metadata */

int pgf_call_send_initial_metadata(pgf_call *call) {
    if (call == NULL)
        return PGF_EINVAL;
    pthread_mutex_lock(&call->mu);
    int already = call->initial_md_ready;
    __atomic_store_n(&call->initial_md_ready, 1, __ATOMIC_RELEASE);
    pgf_stream_fn fn = call->finished ? NULL : call->stream_fn;
    if (!already && fn)
        pgf__call_run_stream_fn(call, fn, call->stream_data,
                                PGF_EVENT_INITIAL_METADATA);
    else
        pthread_mutex_unlock(&call->mu);
    return PGF_OK;
}

int pgf_call_initial_metadata_ready(const pgf_call *call) {
    return call ? __atomic_load_n(&call->initial_md_ready, __ATOMIC_ACQUIRE)
                : 0;
}
