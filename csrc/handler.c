/* Handler registrations: refcounted, so that a registration outlives its
 * unregistering while calls still use it, and its data is released once. */
#include "internal.h"

#include <stdlib.h>

pgf_handler *pgf__handler_new(pgf_handler_fn fn, void *data,
                              pgf_release_fn release, int kind) {
    pgf_handler *h = malloc(sizeof(*h));
    if (h == NULL)
        return NULL;
    h->refs = 1;
    h->fn = fn;
    h->data = data;
    h->release = release;
    h->kind = kind & ~PGF_FLAG_NONBLOCKING;
    h->nonblocking = (kind & PGF_FLAG_NONBLOCKING) != 0;
    h->by_name = 0;
    pgf__live_add(PGF_LIVE_HANDLERS, 1);
    return h;
}

void pgf__handler_ref(pgf_handler *h) { pgf__ref(&h->refs); }

void pgf__handler_unref(pgf_handler *h) {
    if (h && pgf__unref(&h->refs)) {
        if (h->release)
            h->release(h->data);
        free(h);
        pgf__live_add(PGF_LIVE_HANDLERS, -1);
    }
}
