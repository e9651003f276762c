/* The finish: a call completes exactly once, with its status; an
 * outstanding read is completed, the done callback runs, and the call drops
 * its registration and the dispatch's reference. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

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
    if (pgf__call_lock_unless(call, &call->finished) != PGF_OK) {
        free(copy);
        return PGF_ESTATE;
    }
    /* No callback of a cancellation, and no stream_fn call (its host_data
     * may be freed once done ran), may still run on another thread. */
    while ((call->cancel_running &&
            !pthread_equal(call->cancel_thread, pthread_self())) ||
           pgf__call_stream_fn_elsewhere(call))
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
    pgf_read_fn read_cb = pgf__call_take_read(call, &read_ud);
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

    pgf__metrics_finish(&call->metrics, code, response_set);
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
    return call ? pgf__call_is_finished(call) : 0;
}
