/* Dispatch: finds a call's handler in a registry, starts the call and runs
 * the handler on this thread (or finishes the call as UNIMPLEMENTED). */
#include "internal.h"

#include <stdio.h>

static void finish_unimplemented(pgf_call *call, int service_known) {
    const pgf_name *svc = pgf_call_service(call);
    const pgf_name *method = pgf_call_method(call);
    char msg[512];
    int n;
    if (service_known)
        n = snprintf(msg, sizeof(msg), "unknown method %s for service %s",
                     pgf_name_str(method), pgf_name_str(svc));
    else
        n = snprintf(msg, sizeof(msg), "unknown service %s",
                     pgf_name_str(svc));
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(msg))
        n = sizeof(msg) - 1;
    pgf_call_finish(call, PGF_STATUS_UNIMPLEMENTED, msg, (size_t)n);
}

/* Dispatches call; with nonblocking_only, only to a PGF_FLAG_NONBLOCKING
 * handler (or none). */
static int dispatch(pgf_registry *reg, pgf_call *call, pgf_done_fn done,
                    void *user_data, int nonblocking_only) {
    if (reg == NULL || call == NULL)
        return PGF_EINVAL;
    const pgf_name *svc = pgf_call_service(call);
    const pgf_name *method = pgf_call_method(call);
    int known = 0;
    pgf_handler *h = pgf__registry_lookup(reg, pgf_name_str(svc),
                                          pgf_name_len(svc),
                                          pgf_name_str(method),
                                          pgf_name_len(method), &known);
    if (nonblocking_only && h != NULL && !h->nonblocking) {
        pgf__handler_unref(h);
        return PGF_EWOULDBLOCK;
    }
    int rc = pgf__call_begin_dispatch(call, done, user_data);
    if (rc != PGF_OK) {
        pgf__handler_unref(h);
        return rc;
    }
    /* The request is set before dispatch, never after: read unlocked. */
    pgf__metrics_begin(&call->metrics, call->path, call->path_len,
                       h ? h->kind : -1, h != NULL && h->by_name,
                       call->request_set);
    if (h == NULL) {
        finish_unimplemented(call, known);
        return PGF_OK;
    }
    /* The call drops its reference (the lookup's) at finish; this one keeps
     * the handler data alive until fn has returned, even if fn finishes the
     * call. */
    pgf__handler_ref(h);
    pgf__call_set_handler(call, h);
    h->fn(h->data, call);
    pgf__handler_unref(h);
    return PGF_OK;
}

int pgf_dispatch_async(pgf_registry *reg, pgf_call *call, pgf_done_fn done,
                       void *user_data) {
    return dispatch(reg, call, done, user_data, 0);
}

int pgf_dispatch_nonblocking(pgf_registry *reg, pgf_call *call,
                             pgf_done_fn done, void *user_data) {
    return dispatch(reg, call, done, user_data, 1);
}

int pgf_dispatch(pgf_registry *reg, pgf_call *call) {
    int rc = pgf_dispatch_async(reg, call, NULL, NULL);
    if (rc != PGF_OK)
        return rc;
    pgf__call_wait(call);
    return PGF_OK;
}
