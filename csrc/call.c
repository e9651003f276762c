/* One RPC: request in, response out, status, cancellation, completion.
 * The stream operations on the same object live in stream.c. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

pgf_owned_buffer *pgf__owned_buffer_new(pgf_release_fn release, void *ctx) {
    pgf_owned_buffer *b = malloc(sizeof(*b));
    if (b == NULL) {
        if (release)
            release(ctx);
        return NULL;
    }
    b->release = release;
    b->ctx = ctx;
    pgf__live_add(PGF_LIVE_BUFFERS, 1);
    return b;
}

pgf_owned_buffer *pgf__owned_copy_new(const uint8_t *data, size_t len) {
    pgf_owned_buffer *b = malloc(sizeof(*b) + len);
    if (b == NULL)
        return NULL;
    b->release = NULL;
    b->ctx = NULL;
    if (len)
        memcpy(b->copy, data, len);
    pgf__live_add(PGF_LIVE_BUFFERS, 1);
    return b;
}

int pgf_release_never_blocks(pgf_release_fn release, void *ctx) {
    return release == pgf__owned_buffer_release && ctx != NULL &&
           ((const pgf_owned_buffer *)ctx)->release == NULL;
}

void pgf__owned_buffer_release(void *p) {
    pgf_owned_buffer *b = p;
    if (b->release)
        b->release(b->ctx);
    free(b);
    pgf__live_add(PGF_LIVE_BUFFERS, -1);
}


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

static void drop_response(pgf_call *c) {
    if (c->response_owner)
        pgf__owned_buffer_release(c->response_owner);
    c->response_owner = NULL;
    c->response = NULL;
    c->response_len = 0;
}

void pgf_call_unref(pgf_call *call) {
    if (call == NULL || !pgf__unref(&call->refs))
        return;
    pgf__stream_drop(call);
    drop_response(call);
    pgf_message_unref(call->request_msg);
    if (call->handler)
        pgf__handler_unref(call->handler);
    pgf_name_unref(call->service);
    pgf_name_unref(call->method);
    pgf__metadata_clear(&call->request_md);
    pgf__metadata_clear(&call->initial_md);
    pgf__metadata_clear(&call->trailing_md);
    free(call->path);
    free(call->peer);
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

/* ------------------------------------------------------------- request */

static int is_finished(const pgf_call *c) {
    return __atomic_load_n(&c->finished, __ATOMIC_ACQUIRE);
}

/* Request setters run before dispatch, under the lock like everything else
 * (a host may fill a call from several threads). */
int pgf_call_set_request(pgf_call *call, const uint8_t *data, size_t len) {
    if (call == NULL || (data == NULL && len != 0) || !pgf__len_ok(len))
        return PGF_EINVAL;
    pthread_mutex_lock(&call->mu);
    if (call->dispatched) {
        pthread_mutex_unlock(&call->mu);
        return PGF_ESTATE;
    }
    pgf_message *old = call->request_msg;
    call->request_msg = NULL;
    call->request = data;
    call->request_len = len;
    call->request_set = 1;
    pthread_mutex_unlock(&call->mu);
    pgf_message_unref(old);
    return PGF_OK;
}

int pgf_call_set_request_message(pgf_call *call, pgf_message *msg) {
    if (call == NULL || msg == NULL) {
        pgf_message_unref(msg);
        return PGF_EINVAL;
    }
    pthread_mutex_lock(&call->mu);
    if (call->dispatched) {
        pthread_mutex_unlock(&call->mu);
        pgf_message_unref(msg);
        return PGF_ESTATE;
    }
    pgf_message *old = call->request_msg;
    call->request_msg = msg;
    call->request = pgf_message_data(msg, &call->request_len);
    call->request_set = 1;
    pthread_mutex_unlock(&call->mu);
    pgf_message_unref(old);
    return PGF_OK;
}

pgf_message *pgf_call_request_message(const pgf_call *call) {
    return call ? pgf_message_ref(call->request_msg) : NULL;
}

int pgf_call_add_request_metadata(pgf_call *call,
                                  const char *key, size_t key_len,
                                  const uint8_t *value, size_t value_len) {
    if (call == NULL)
        return PGF_EINVAL;
    pthread_mutex_lock(&call->mu);
    int rc = call->dispatched ? PGF_ESTATE
                              : pgf__metadata_append(&call->request_md, key,
                                                     key_len, value,
                                                     value_len);
    pthread_mutex_unlock(&call->mu);
    return rc;
}

int pgf_call_add_request_metadata_list(pgf_call *call,
                                       const pgf_metadata_entry *entries,
                                       size_t count) {
    if (call == NULL)
        return PGF_EINVAL;
    pthread_mutex_lock(&call->mu);
    int rc = call->dispatched ? PGF_ESTATE
                              : pgf__metadata_append_list(&call->request_md,
                                                          entries, count);
    pthread_mutex_unlock(&call->mu);
    return rc;
}

int pgf_call_set_deadline(pgf_call *call, int64_t deadline_unix_ns) {
    if (call == NULL)
        return PGF_EINVAL;
    pthread_mutex_lock(&call->mu);
    int rc = PGF_ESTATE;
    if (!call->dispatched) {
        call->deadline = deadline_unix_ns;
        rc = PGF_OK;
    }
    pthread_mutex_unlock(&call->mu);
    return rc;
}

int pgf_call_set_peer(pgf_call *call, const char *peer, size_t len) {
    if (call == NULL || (peer == NULL && len != 0) || !pgf__len_ok(len))
        return PGF_EINVAL;
    char *p = malloc(len + 1);
    if (p == NULL)
        return PGF_ENOMEM;
    if (len)
        memcpy(p, peer, len);
    p[len] = '\0';
    pthread_mutex_lock(&call->mu);
    if (call->dispatched) {
        pthread_mutex_unlock(&call->mu);
        free(p);
        return PGF_ESTATE;
    }
    char *old = call->peer;
    call->peer = p;
    call->peer_len = len;
    pthread_mutex_unlock(&call->mu);
    free(old);
    return PGF_OK;
}

void pgf_call_request(const pgf_call *call, const uint8_t **data, size_t *len) {
    if (data)
        *data = call ? call->request : NULL;
    if (len)
        *len = call ? call->request_len : 0;
}

const pgf_metadata *pgf_call_request_metadata(const pgf_call *call) {
    return call ? &call->request_md : NULL;
}

int64_t pgf_call_deadline(const pgf_call *call) {
    return call ? call->deadline : INT64_MAX;
}

/* A stored string, or "" when there is none. */
static const char *string_or_empty(const char *s, size_t s_len, size_t *len) {
    if (len)
        *len = s ? s_len : 0;
    return s ? s : "";
}

const char *pgf_call_peer(const pgf_call *call, size_t *len) {
    return call ? string_or_empty(call->peer, call->peer_len, len)
                : string_or_empty(NULL, 0, len);
}

/* -------------------------------------------------------- cancellation */

void pgf_call_cancel(pgf_call *call) {
    if (call == NULL)
        return;
    pthread_mutex_lock(&call->mu);
    if (call->cancelled || call->finished) {
        pthread_mutex_unlock(&call->mu);
        return;
    }
    __atomic_store_n(&call->cancelled, 1, __ATOMIC_RELEASE);
    pgf__cancelled_ops ops = {0};
    pgf__stream_cancel_locked(call, &ops);
    pgf_cancel_fn fn = call->cancel_fn;
    void *data = call->cancel_data;
    call->cancel_fn = NULL;
    if (fn) {
        /* finish waits for a running callback, so its data stays valid. */
        call->cancel_running = 1;
        call->cancel_thread = pthread_self();
    }
    pthread_mutex_unlock(&call->mu);
    pgf__stream_cancel_run(call, &ops);
    if (fn) {
        /* A read or write callback just run may have finished the call (on
         * this thread: a finish elsewhere waits for cancel_running), and no
         * cancellation callback runs after the finish. */
        if (!is_finished(call))
            fn(call, data);
        pthread_mutex_lock(&call->mu);
        call->cancel_running = 0;
        pthread_cond_broadcast(&call->cv);
        pthread_mutex_unlock(&call->mu);
    }
}

int pgf_call_is_cancelled(const pgf_call *call) {
    return call ? __atomic_load_n(&call->cancelled, __ATOMIC_ACQUIRE) : 0;
}

int pgf_call_on_cancel(pgf_call *call, pgf_cancel_fn fn, void *user_data) {
    if (call == NULL)
        return PGF_EINVAL;
    pthread_mutex_lock(&call->mu);
    if (call->finished) {
        pthread_mutex_unlock(&call->mu);
        return PGF_ESTATE;
    }
    if (call->cancelled) {
        if (fn == NULL) {
            pthread_mutex_unlock(&call->mu);
            return PGF_OK;
        }
        /* As in pgf_call_cancel: a racing finish waits for fn.  One callback
         * runs at a time (the marker is one thread's), except when a
         * callback itself calls this on its own thread. */
        while (call->cancel_running &&
               !pthread_equal(call->cancel_thread, pthread_self()))
            pthread_cond_wait(&call->cv, &call->mu);
        if (call->finished) {
            pthread_mutex_unlock(&call->mu);
            return PGF_ESTATE;
        }
        int was_running = call->cancel_running;
        call->cancel_running = 1;
        call->cancel_thread = pthread_self();
        pthread_mutex_unlock(&call->mu);
        fn(call, user_data);
        pthread_mutex_lock(&call->mu);
        call->cancel_running = was_running;
        pthread_cond_broadcast(&call->cv);
        pthread_mutex_unlock(&call->mu);
        return PGF_OK;
    }
    call->cancel_fn = fn;
    call->cancel_data = user_data;
    pthread_mutex_unlock(&call->mu);
    return PGF_OK;
}

/* ------------------------------------------------------------ response */

/* Makes owner's bytes data[0..len) the call's response, releasing an
 * earlier one; PGF_ESTATE (owner released) once the call is finished. */
static int install_response(pgf_call *call, const uint8_t *data, size_t len,
                            pgf_owned_buffer *owner) {
    pthread_mutex_lock(&call->mu);
    if (call->finished) {
        pthread_mutex_unlock(&call->mu);
        pgf__owned_buffer_release(owner);
        return PGF_ESTATE;
    }
    pgf_owned_buffer *old = call->response_owner;
    call->response = data;
    call->response_len = len;
    call->response_owner = owner;
    pthread_mutex_unlock(&call->mu);
    if (old)
        pgf__owned_buffer_release(old);
    return PGF_OK;
}

int pgf_call_set_response(pgf_call *call, const uint8_t *data, size_t len,
                          pgf_release_fn release, void *ctx) {
    if (call == NULL || (data == NULL && len != 0) || !pgf__len_ok(len)) {
        if (release)
            release(ctx);
        return PGF_EINVAL;
    }
    pgf_owned_buffer *owner = pgf__owned_buffer_new(release, ctx);
    if (owner == NULL)
        return PGF_ENOMEM;
    return install_response(call, data, len, owner);
}

int pgf_call_set_response_copy(pgf_call *call, const uint8_t *data,
                               size_t len) {
    if (call == NULL || (data == NULL && len != 0) || !pgf__len_ok(len))
        return PGF_EINVAL;
    pgf_owned_buffer *owner = pgf__owned_copy_new(data, len);
    if (owner == NULL)
        return PGF_ENOMEM;
    return install_response(call, owner->copy, len, owner);
}

#define DETAILS_KEY "grpc-status-details-bin"
#define DETAILS_KEY_LEN (sizeof(DETAILS_KEY) - 1)

static int add_response_md(pgf_call *call, pgf_metadata *md,
                           const char *key, size_t key_len,
                           const uint8_t *value, size_t value_len) {
    if (call == NULL)
        return PGF_EINVAL;
    int rc = pgf_metadata_validate(key, key_len, value, value_len);
    if (rc != PGF_OK)
        return rc;
    pthread_mutex_lock(&call->mu);
    /* Initial metadata is frozen once the host may be sending it. */
    int frozen = call->finished ||
                 (md == &call->initial_md && call->initial_md_ready);
    /* Trailers share their budget with the status details. */
    size_t reserved = md == &call->trailing_md && call->details_len
                          ? pgf__md_wire_size(DETAILS_KEY, DETAILS_KEY_LEN,
                                              call->details_len)
                          : 0;
    rc = frozen ? PGF_ESTATE
                : pgf__metadata_append_bounded(md, reserved, key, key_len,
                                               value, value_len);
    pthread_mutex_unlock(&call->mu);
    return rc;
}

int pgf_call_add_initial_metadata(pgf_call *call,
                                  const char *key, size_t key_len,
                                  const uint8_t *value, size_t value_len) {
    return add_response_md(call, call ? &call->initial_md : NULL, key,
                           key_len, value, value_len);
}

int pgf_call_add_trailing_metadata(pgf_call *call,
                                   const char *key, size_t key_len,
                                   const uint8_t *value, size_t value_len) {
    return add_response_md(call, call ? &call->trailing_md : NULL, key,
                           key_len, value, value_len);
}

int pgf_call_set_status_details(pgf_call *call,
                                const uint8_t *data, size_t len) {
    if (call == NULL || (data == NULL && len != 0) || !pgf__len_ok(len))
        return PGF_EINVAL;
    uint8_t *copy = NULL;
    if (len) {
        copy = malloc(len);
        if (copy == NULL)
            return PGF_ENOMEM;
        memcpy(copy, data, len);
    }
    pthread_mutex_lock(&call->mu);
    if (call->finished) {
        pthread_mutex_unlock(&call->mu);
        free(copy);
        return PGF_ESTATE;
    }
    size_t have = call->trailing_md.wire_size;
    if (len && (have > PGF_MAX_RESPONSE_METADATA ||
                pgf__md_wire_size(DETAILS_KEY, DETAILS_KEY_LEN, len) >
                    PGF_MAX_RESPONSE_METADATA - have)) {
        pthread_mutex_unlock(&call->mu);
        free(copy);
        return PGF_EMETADATA; /* the trailers would not reach the client */
    }
    free(call->details);
    call->details = copy;
    call->details_len = len;
    pthread_mutex_unlock(&call->mu);
    return PGF_OK;
}

int pgf_call_set_compress_response(pgf_call *call, int enable) {
    if (call == NULL)
        return PGF_EINVAL;
    pthread_mutex_lock(&call->mu);
    int rc = PGF_ESTATE;
    if (!call->finished) {
        call->compress = enable != 0;
        rc = PGF_OK;
    }
    pthread_mutex_unlock(&call->mu);
    return rc;
}

int pgf_call_compress_response(const pgf_call *call) {
    return call ? call->compress : 0;
}

int pgf_call_reset_response(pgf_call *call) {
    if (call == NULL)
        return PGF_EINVAL;
    pthread_mutex_lock(&call->mu);
    if (call->finished) {
        pthread_mutex_unlock(&call->mu);
        return PGF_ESTATE;
    }
    pgf_owned_buffer *old = call->response_owner;
    call->response_owner = NULL;
    call->response = NULL;
    call->response_len = 0;
    if (!call->initial_md_ready) /* else it is on its way already */
        pgf__metadata_clear(&call->initial_md);
    pgf__metadata_clear(&call->trailing_md);
    free(call->details);
    call->details = NULL;
    call->details_len = 0;
    call->compress = 0;
    pthread_mutex_unlock(&call->mu);
    if (old)
        pgf__owned_buffer_release(old);
    return PGF_OK;
}

/* ---------------------------------------------------------- completion */

int pgf_call_finish(pgf_call *call, int code, const char *msg, size_t len) {
    if (call == NULL)
        return PGF_EINVAL;
    /* A valid call always finishes: no message rather than none at all. */
    if (msg == NULL || !pgf__len_ok(len))
        len = 0;
    len = pgf__status_message_fit(msg, len); /* bounded, as sent */
    if (code < 0 || code > 16)
        code = PGF_STATUS_UNKNOWN;
    /* No allocation for the common OK without a message. */
    char *copy = len ? malloc(len + 1) : NULL;
    if (copy == NULL) {
        /* Still finish: a call must never hang for want of a message. */
        len = 0;
    } else {
        memcpy(copy, msg, len);
        copy[len] = '\0';
    }
    pthread_mutex_lock(&call->mu);
    if (call->finished) {
        pthread_mutex_unlock(&call->mu);
        free(copy);
        return PGF_ESTATE;
    }
    /* No callback of a cancellation, and no stream_fn call (its host_data
     * may be freed once done ran), may still run on another thread. */
    while ((call->cancel_running &&
            !pthread_equal(call->cancel_thread, pthread_self())) ||
           pgf__stream_fn_elsewhere(call))
        pthread_cond_wait(&call->cv, &call->mu);
    if (call->finished) { /* another thread finished it meanwhile */
        pthread_mutex_unlock(&call->mu);
        free(copy);
        return PGF_ESTATE;
    }
    call->status = code;
    call->message = copy;
    call->message_len = copy ? len : 0;
    call->cancel_fn = NULL;
    void *read_ud = NULL;
    pgf_read_fn read_cb = pgf__stream_take_read(call, &read_ud);
    __atomic_store_n(&call->initial_md_ready, 1, __ATOMIC_RELEASE);
    pgf_done_fn done = call->done;
    void *done_data = call->done_data;
    int dispatched = call->dispatched;
    int response_set = call->response_owner != NULL;
    pgf_handler *h = call->handler;
    call->handler = NULL;
    __atomic_store_n(&call->finished, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&call->cv);
    pthread_mutex_unlock(&call->mu);

    pgf__metrics_finish(call, code, response_set);
    if (read_cb)
        read_cb(call, PGF_ECANCELLED, NULL, read_ud);
    if (done)
        done(call, done_data);
    /* The registration may go now that its call is over. */
    if (h)
        pgf__handler_unref(h);
    if (dispatched)
        pgf_call_unref(call); /* the dispatch's own reference */
    return PGF_OK;
}

int pgf_call_is_finished(const pgf_call *call) {
    return call ? is_finished(call) : 0;
}

int pgf_call_status(const pgf_call *call) {
    return call && is_finished(call) ? call->status : PGF_STATUS_UNKNOWN;
}

const char *pgf_call_status_message(const pgf_call *call, size_t *len) {
    return call ? string_or_empty(call->message, call->message_len, len)
                : string_or_empty(NULL, 0, len);
}

void pgf_call_status_details(const pgf_call *call,
                             const uint8_t **data, size_t *len) {
    if (data)
        *data = call ? call->details : NULL;
    if (len)
        *len = call ? call->details_len : 0;
}

const pgf_metadata *pgf_call_initial_metadata(const pgf_call *call) {
    return call ? &call->initial_md : NULL;
}

const pgf_metadata *pgf_call_trailing_metadata(const pgf_call *call) {
    return call ? &call->trailing_md : NULL;
}

void pgf_call_response(const pgf_call *call, const uint8_t **data,
                       size_t *len) {
    if (data)
        *data = call ? call->response : NULL;
    if (len)
        *len = call ? call->response_len : 0;
}

int pgf_call_take_response(pgf_call *call, const uint8_t **data, size_t *len,
                           pgf_release_fn *release, void **ctx) {
    if (call == NULL || data == NULL || len == NULL || release == NULL ||
        ctx == NULL)
        return PGF_EINVAL;
    pthread_mutex_lock(&call->mu);
    *data = call->response;
    *len = call->response_len;
    if (call->response_owner) {
        *release = pgf__owned_buffer_release;
        *ctx = call->response_owner;
    } else {
        *release = NULL;
        *ctx = NULL;
    }
    call->response_owner = NULL;
    call->response = NULL;
    call->response_len = 0;
    pthread_mutex_unlock(&call->mu);
    return PGF_OK;
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

int pgf_call_nonblocking(const pgf_call *call) {
    return call ? __atomic_load_n(&call->nonblocking, __ATOMIC_ACQUIRE) : 0;
}

void pgf__call_wait(pgf_call *call) {
    pthread_mutex_lock(&call->mu);
    while (!call->finished)
        pthread_cond_wait(&call->cv, &call->mu);
    pthread_mutex_unlock(&call->mu);
}
