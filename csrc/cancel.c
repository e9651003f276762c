/* Cancellation: the host marks a call cancelled, outstanding reads and
 * writes complete with PGF_ECANCELLED, and the handler's cancellation
 * callback runs once, never after the finish. */
#include "internal.h"

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
    pgf__call_take_cancelled(call, &ops);
    pgf_cancel_fn fn = call->cancel_fn;
    void *data = call->cancel_data;
    call->cancel_fn = NULL;
    if (fn) {
        /* finish waits for a running callback, so its data stays valid. */
        call->cancel_running = 1;
        call->cancel_thread = pthread_self();
    }
    pthread_mutex_unlock(&call->mu);
    pgf__call_run_cancelled(call, &ops);
    if (fn) {
        /* A read or write callback just run may have finished the call (on
         * this thread: a finish elsewhere waits for cancel_running), and no
         * cancellation callback runs after the finish. */
        if (!pgf__call_is_finished(call))
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
    if (pgf__call_lock_unless(call, &call->finished) != PGF_OK)
        return PGF_ESTATE;
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
